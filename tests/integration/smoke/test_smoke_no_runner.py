"""``runnerctl smoke`` when no runner has the tag: exit 7 with GitLab's stuck-job text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from provisioner.secrets import contains_secret
from tests.conftest import run_runnerctl

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def test_wrong_tag_times_out_with_the_stuck_job_message(sandbox: Any, tmp_path: Path) -> None:
    project = f"root/{sandbox.unique('smoke-stuck')}"
    junit = tmp_path / "smoke.xml"
    proc = run_runnerctl(
        "smoke",
        "--gitlab-url",
        sandbox.url,
        "--project",
        project,
        "--tag",
        "no-such-runner-tag",
        "--timeout",
        "4s",
        "--junit",
        str(junit),
        env={**os.environ, "GITLAB_TOKEN": sandbox.root_token},
        timeout=300,
    )
    assert proc.returncode == 7, proc.stderr
    assert (
        "Error: No runner picked up the job 'test' within 4 s. This job is stuck because you "
        "don't have any active runners online or available with any of these tags assigned "
        "to them: no-such-runner-tag"
    ) in proc.stderr
    assert "Hint: Start the runner registered with this tag" in proc.stderr
    assert not contains_secret(proc.stdout + proc.stderr)
    suite = ET.parse(junit).getroot()  # noqa: S314 - our own file
    failure = suite.find("testcase[@name='test']/failure")
    assert failure is not None
    assert "no runner picked up" in failure.get("message", "").lower()
    # The pipeline was cancelled so a runner coming online later does not pick it up.
    gl = sandbox.gitlab()
    (pipeline,) = gl.projects.get(project).pipelines.list()
    assert pipeline.status == "canceled"
    # The key pair went into CI/CD variables: private key and public key as files, password masked.
    variables = {v.key: v for v in gl.projects.get(project).variables.list()}
    assert variables["COSIGN_PRIVATE_KEY"].variable_type == "file"
    assert variables["COSIGN_PUBLIC_KEY"].variable_type == "file"
    assert variables["COSIGN_PASSWORD"].masked is True
