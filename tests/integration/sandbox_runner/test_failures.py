"""Clone failures surface with git's own stderr, as they would under gitlab-runner."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.sandbox_runner import RunnerHandle
from provisioner.secrets import contains_secret
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox

Start = Callable[..., RunnerHandle]

# Jobs clone the way CI scripts should: the token reaches git through a credential helper that
# reads $CI_JOB_TOKEN, never through a URL in argv.
HELPER = (
    "git -c credential.helper="
    """'!f() { echo username=gitlab-ci-token; echo "password=$TOKEN"; }; f'"""
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_clone_url_fails_in_get_sources_with_gits_message(
    lab: Lab, runner_of: Start
) -> None:
    port = _closed_port()
    config = lab.config()
    tag = lab.sandbox.unique("clone-url")
    lab.register(config, tags=(tag,), runner={"clone_url": f"http://127.0.0.1:{port}"})
    project = lab.project(f"job:\n  tags: [{tag}]\n  script: [echo never]\n")
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["job"]
    assert job.status == "failed"
    assert job.failure_reason == "script_failure"
    log = lab.trace(project, job)
    url = f"http://127.0.0.1:{port}/{project.path_with_namespace}.git/"
    assert f"fatal: unable to access '{url}': Failed to connect to 127.0.0.1 port {port}" in log
    assert "ERROR: Job failed: exit code 128" in log
    assert "$ echo never" not in log


def test_job_token_of_another_project_is_refused_by_git(lab: Lab, runner_of: Start) -> None:
    other = lab.sandbox.new_project(visibility="private", files={"secret.txt": "no\n"})
    config = lab.config()
    tag = lab.sandbox.unique("other-project")
    lab.register(config, tags=(tag,))
    ci = f"""
clone-other:
  tags: [{tag}]
  script:
    - export TOKEN="$CI_JOB_TOKEN"
    - {HELPER} clone "$CI_SERVER_URL/{other.path_with_namespace}.git" other
"""
    project = lab.project(ci)
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["clone-other"]
    assert job.status == "failed"
    assert job.failure_reason == "script_failure"
    log = lab.trace(project, job)
    source, target = project.path_with_namespace, other.path_with_namespace
    assert (
        f"remote: Authentication by CI/CD job token not allowed from {source} to {target}." in log
    )
    url = f"{lab.sandbox.url}/{target}.git/"
    assert f"fatal: unable to access '{url}': The requested URL returned error: 403" in log
    assert "ERROR: Job failed: exit code 128" in log


def test_revoked_job_token_is_refused_by_git(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("revoked")
    lab.register(config, tags=(tag,))
    ci = f"""
stages: [first, second]
keep-token:
  stage: first
  tags: [{tag}]
  script: [printf %s "$CI_JOB_TOKEN" > old-token]
  artifacts:
    paths: [old-token]
reuse-token:
  stage: second
  tags: [{tag}]
  script:
    - export TOKEN="$(cat old-token)"
    - {HELPER} clone "$CI_SERVER_URL/$CI_PROJECT_PATH.git" again
"""
    project = lab.project(ci)
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    jobs = lab.jobs(project, pipeline.id)
    assert jobs["keep-token"].status == "success"
    job = jobs["reuse-token"]
    assert job.status == "failed"
    assert job.failure_reason == "script_failure"
    log = lab.trace(project, job)
    assert "remote: HTTP Basic: Access denied." in log
    assert "fatal: Authentication failed for" in log
    assert not contains_secret(log)  # the old token is masked by its glcbt- prefix
    assert "ERROR: Job failed: exit code 128" in log


def test_the_job_token_never_appears_in_the_argv_of_git(
    lab: Lab, runner_of: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``git`` shim first on PATH records every argv the runner's git processes get."""
    real_git = shutil.which("git")
    assert real_git is not None
    shims = tmp_path / "shims"
    shims.mkdir()
    record = tmp_path / "git-argv.log"
    shim = shims / "git"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "git $*" >> {record}\nexec {real_git} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    config = lab.config()
    tag = lab.sandbox.unique("argv")
    lab.register(config, tags=(tag,))
    project = lab.project(f"job:\n  tags: [{tag}]\n  script: [git log -1 --format=%H]\n")
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["job"]
    assert job.status == "success"
    argv = record.read_text()
    assert "fetch origin --no-recurse-submodules +refs/pipelines/" in argv
    assert f"checkout -f -q {job.pipeline['sha']}" in argv
    assert f"remote add origin {lab.sandbox.url}/{project.path_with_namespace}.git" in argv
    assert "glcbt-" not in argv
    assert not contains_secret(argv)
