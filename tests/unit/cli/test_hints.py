"""Hints lead somewhere that exists: a command that ships, a URL GitLab and the sandbox serve."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from provisioner.smoke import SmokeStatus
from provisioner.smoke.service import pipeline_api_url
from tests.conftest import Cli
from tests.helpers import smoke_result

FAILED = smoke_result(
    status=SmokeStatus.FAILED,
    project="ops/ci/runnerctl-smoke",
    pipeline_id=42,
    message="job sign failed",
    failing_job="sign",
)


def test_pipeline_api_url_is_the_rest_jobs_list() -> None:
    assert pipeline_api_url(FAILED) == (
        "https://gitlab.example/api/v4/projects/ops%2Fci%2Frunnerctl-smoke/pipelines/42/jobs"
    )


def test_failed_smoke_points_at_the_api_not_at_a_command_that_does_not_exist(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("provisioner.smoke.run_smoke", lambda *_a, **_k: FAILED)
    gitlab = SimpleNamespace(settings=SimpleNamespace(url="https://gitlab.example"))
    app = AppContext(factories=Factories(gitlab=lambda _settings: gitlab))  # type: ignore[arg-type,return-value]
    env: dict[str, Any] = {"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": "x" * 20}

    code, out, err = cli("smoke", "--tag", "t", env=env, app=app)

    assert code == 7
    assert "runnerctl doctor" not in out + err
    assert err.splitlines()[-2:] == [
        "Error: job sign failed",
        'Hint: List the jobs of pipeline #42: curl -H "Authorization: Bearer $GITLAB_TOKEN" '
        "https://gitlab.example/api/v4/projects/ops%2Fci%2Frunnerctl-smoke/pipelines/42/jobs ; "
        "a job's whole log is at /api/v4/projects/ID/jobs/JOB_ID/trace.",
    ]
    assert out.splitlines()[1:3] == [
        "Pipeline: https://gitlab.example/ops/ci/runnerctl-smoke/-/pipelines/42",
        "  jobs (API): "
        "https://gitlab.example/api/v4/projects/ops%2Fci%2Frunnerctl-smoke/pipelines/42/jobs",
    ]
