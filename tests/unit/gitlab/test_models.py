"""Typed statuses: GitLab's strings parse to enums, and unknown values do not crash."""

from __future__ import annotations

import pytest

from provisioner.gitlab.models import (
    FailureReason,
    Job,
    JobStatus,
    Pipeline,
    PipelineStatus,
    RunnerStatus,
)
from provisioner.gitlab.pipelines import _job, _pipeline


@pytest.mark.parametrize("raw", ["success", "SUCCESS", "Success"])
def test_rest_and_graphql_spellings_parse(raw: str) -> None:
    assert PipelineStatus.parse(raw) is PipelineStatus.SUCCESS
    assert JobStatus.parse(raw) is JobStatus.SUCCESS


def test_values_gitlab_adds_later_are_unknown() -> None:
    assert PipelineStatus.parse("warp_speed") is PipelineStatus.UNKNOWN
    assert JobStatus.parse(None) is JobStatus.UNKNOWN
    assert FailureReason.parse("quantum_failure") is FailureReason.UNKNOWN
    assert RunnerStatus.parse("hibernating") is RunnerStatus.UNKNOWN


def test_finished_pipelines() -> None:
    finished = {s for s in PipelineStatus if s.finished}
    assert finished == {
        PipelineStatus.SUCCESS,
        PipelineStatus.FAILED,
        PipelineStatus.CANCELED,
        PipelineStatus.SKIPPED,
    }


def test_parsed_answers_carry_enums() -> None:
    job = _job(
        {
            "id": 5,
            "name": "test",
            "stage": "test",
            "status": "failed",
            "failure_reason": "script_failure",
        }
    )
    assert job.status is JobStatus.FAILED
    assert job.failure_reason is FailureReason.SCRIPT_FAILURE
    assert _job({"id": 6, "status": "success", "failure_reason": None}).failure_reason is None
    pipeline = _pipeline({"id": 1, "iid": 1, "status": "running", "web_url": "u"})
    assert pipeline.status is PipelineStatus.RUNNING


def test_strings_given_to_the_dataclasses_become_enums() -> None:
    # Fakes and older callers pass strings; statuses still compare equal to them.
    job = Job(1, "n", "s", "running", failure_reason="runner_system_failure")  # type: ignore[arg-type]
    assert job.status is JobStatus.RUNNING
    assert job.status == "running"
    assert job.failure_reason is FailureReason.RUNNER_SYSTEM_FAILURE
    assert Pipeline(1, 1, "canceled", "u").status is PipelineStatus.CANCELED  # type: ignore[arg-type]
    assert f"{JobStatus.SUCCESS:<9}|" == "success  |"
