"""Successful jobs on both executors: doctor must find nothing in their logs.

The jobs print what real jobs print and what a naive classifier would trip on: git's clone
output, warnings, pytest's verbose output whose test names say "error", "permission denied",
"not found" and "no space left", pip's freeze, and docker-executor preparation lines. With
``DOCTOR_CAPTURE`` set to a directory, the logs are also saved there; the unit tier keeps such
a capture in tests/unit/doctor/data/success so the false-positive check runs without servers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.sandbox_runner import RunnerHandle
from tests.conftest import Cli
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox

TESTS = """
import pytest


def test_error_message_is_shown():
    assert "error" in "an error"


def test_permission_denied_is_reported_to_the_user():
    assert "Permission denied"


@pytest.mark.parametrize("word", ["not found", "no space left", "fatal", "killed"])
def test_words_that_look_like_failures(word):
    print(f"checking {word}")
    assert word


def test_warning_is_only_a_warning():
    import warnings

    with pytest.warns(UserWarning):
        warnings.warn("WARNING: this is fine", UserWarning)
"""

SHELL = """
stages: [build, test]
build:
  stage: build
  tags: [@TAG@]
  script:
    - git log -1 --format='%H %s'
    - 'echo "WARNING: this job only warns" >&2'
    - mkdir -p dist && echo artifact > dist/out.txt
    - ls -la dist
  artifacts:
    paths: [dist/]
test:
  stage: test
  tags: [@TAG@]
  script:
    - cat dist/out.txt
    - @PYTHON@ -m pytest -v -p no:cacheprovider tests/
    - @PYTHON@ -m pip --version
"""

DOCKER = """
job:
  tags: [@TAG@]
  script:
    - python3 --version
    - python3 -m pip list --format=freeze | head -5
    - id -un
    - echo "errors=0 failures=0"
"""


def _run(lab: Lab, runner_of: Callable[..., RunnerHandle], config: Path, ci: str) -> list[str]:
    project = lab.project(ci, files={"tests/test_words.py": TESTS})
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(180)
    traces = []
    for name, job in lab.jobs(project, pipeline.id).items():
        log = lab.trace(project, job)
        assert job.status == "success", f"{name}: {log}"
        traces.append(log)
    return traces


def _assert_clean(cli: Cli, traces: list[str], tmp_path: Path, label: str) -> None:
    capture = os.environ.get("DOCTOR_CAPTURE")
    for index, log in enumerate(traces):
        path = tmp_path / f"{label}-{index}.log"
        path.write_text(log)
        if capture:
            Path(capture, path.name).write_text(log)
        code, out, err = cli("doctor", "--log", str(path), "--output", "json")
        assert code == 0, (err, out)
        assert json.loads(out)["findings"] == []


def test_successful_shell_jobs_have_no_findings(
    lab: Lab, runner_of: Callable[..., RunnerHandle], cli: Cli, tmp_path: Path
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-ok-shell")
    lab.register(config, tags=(tag,))
    ci = SHELL.replace("@TAG@", tag).replace("@PYTHON@", sys.executable)
    traces = _run(lab, runner_of, config, ci)
    assert any("test_permission_denied_is_reported_to_the_user PASSED" in t for t in traces)
    _assert_clean(cli, traces, tmp_path, "shell")


def test_successful_docker_jobs_have_no_findings(
    lab: Lab, runner_of: Callable[..., RunnerHandle], cli: Cli, tmp_path: Path, job_image: str
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-ok-docker")
    lab.register(config, executor="docker", tags=(tag,), docker={"network_mode": "host"})
    traces = _run(lab, runner_of, config, DOCKER.replace("@TAG@", tag))
    assert any("Using docker image" in t for t in traces)
    _assert_clean(cli, traces, tmp_path, "docker")
