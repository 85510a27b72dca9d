"""``resource_group`` in the sandbox's CI processing and in a pipeline's composite status."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.sandbox.ci import CiConfigError, load_pipeline
from provisioner.sandbox.pipelines import composite_status


def _load(text: str, variables: dict[str, str] | None = None) -> Any:
    return load_pipeline(text, ref="main", variables=variables or {}, read_file=lambda _: None)


def test_the_group_name_is_kept_and_its_variables_expanded() -> None:
    spec = _load(
        "variables: {TARGET: prod}\n"
        "apply: {script: [x], resource_group: fleet-$TARGET}\n"
        "deploy: {script: [x], resource_group: '${CI_COMMIT_REF_NAME}'}\n"
        "lint: {script: [x]}\n",
        {"CI_COMMIT_REF_NAME": "main"},
    )
    assert spec.job("apply").resource_group == "fleet-prod"
    assert spec.job("deploy").resource_group == "main"
    assert spec.job("lint").resource_group is None


def test_a_group_that_is_not_a_string_is_a_config_error() -> None:
    with pytest.raises(CiConfigError) as caught:
        _load("apply: {script: [x], resource_group: [a, b]}\n")
    assert caught.value.message == "jobs:apply:resource_group config should be a string"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["waiting_for_resource"], "waiting_for_resource"),
        (["waiting_for_resource", "success"], "waiting_for_resource"),
        (["waiting_for_resource", "pending"], "pending"),
        (["waiting_for_resource", "running"], "running"),
    ],
)
def test_a_waiting_job_makes_the_pipeline_wait(statuses: list[str], expected: str) -> None:
    jobs = [{"status": s, "allow_failure": 0} for s in statuses]
    assert composite_status(jobs) == expected  # type: ignore[arg-type]
