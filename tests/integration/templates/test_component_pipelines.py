"""The python-release component and runnerctl's own `.gitlab-ci.yml`, run on the sandbox by
the stand-in runner.

1. The component project is published into the sandbox (a tag, as a catalog release), a small
   consumer project includes it with ``include: component`` and its pipeline runs green on a
   docker-executor runner with the job image: the package and its signatures land in the
   registries and verify here, client-side, as a consumer would.
2. runnerctl's own repository is pushed into the sandbox and its `.gitlab-ci.yml` runs on a
   shell-executor runner on this host (the job image cannot reach an index here, the host can):
   lint, unit tests, build, sign, verify, publish and consumer verify all green. The Docker
   jobs (integration, e2e) are left out with RUNNERCTL_INTEGRATION=skip: they are this suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner import __version__ as provisioner_version
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigDocument, ConfigStore
from provisioner.smoke.signing import find_cosign, generate_key_pair, python_verify
from provisioner.smoke.template import template_files

ROOT = Path(__file__).resolve().parents[3]
TERMINAL = {"success", "failed", "canceled", "skipped"}
TEST_COMMAND = (
    "PYTHONPATH=src python -m pytest --junitxml=report.xml --cov=runnerctl_smoke "
    "--cov-report=term --cov-report=xml:coverage.xml"
)

pytestmark = [pytest.mark.docker, pytest.mark.sandbox, pytest.mark.slow]


def _register(
    sandbox: Any,
    config: Path,
    *,
    executor: Executor,
    tag: str,
    environment: list[str] | None = None,
) -> None:
    api = GitLabAPI.from_settings(ConnectionSettings(url=sandbox.url, token=sandbox.root_token))
    request = RegisterRequest(
        name=f"component-{executor.value}-{tag}",
        scope=parse_scope("instance"),
        gitlab_url=sandbox.url,
        executor=ExecutorConfig(executor, docker=DockerOptions(image="runnerctl/python:3.11")),
        tags=(tag,),
    )
    store = ConfigStore(config)
    register(request, gitlab=api, store=store)

    def tune(doc: ConfigDocument) -> None:
        doc.set_global("check_interval", 1)
        for table in doc.runner_tables():
            if environment is not None:
                table["environment"] = environment
            if executor is Executor.DOCKER:
                table["docker"]["network_mode"] = "host"

    store.update(tune)


def _keys(project: Any) -> str:
    pair = generate_key_pair()
    project.variables.create(
        {"key": "COSIGN_PRIVATE_KEY", "value": pair.private_pem, "variable_type": "file"}
    )
    project.variables.create(
        {"key": "COSIGN_PUBLIC_KEY", "value": pair.public_pem, "variable_type": "file"}
    )
    project.variables.create({"key": "COSIGN_PASSWORD", "value": pair.password, "masked": True})
    return pair.public_pem


def _follow(project: Any, pipeline_id: int, timeout: float) -> tuple[str, dict[str, str], str]:
    """Wait for the pipeline; return its status, job statuses and the failed jobs' traces."""
    deadline = time.monotonic() + timeout
    pipeline = project.pipelines.get(pipeline_id)
    while pipeline.status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(2)
        pipeline = project.pipelines.get(pipeline_id)
    jobs = {job.name: job.status for job in pipeline.jobs.list(get_all=True)}
    traces = ""
    for job in pipeline.jobs.list(get_all=True):
        if job.status == "failed":
            trace = project.jobs.get(job.id).trace().decode(errors="replace")
            traces += f"--- {job.name}\n" + "\n".join(trace.splitlines()[-150:]) + "\n"
    return pipeline.status, jobs, traces


def _check_published(project: Any, api: GitLabAPI, name: str, public: str) -> str:
    """The newest version of ``name`` is in both registries and its signatures verify."""
    packages = project.packages.list(package_name=name, get_all=True)
    versions = {p.version for p in packages if p.package_type == "pypi"}
    assert len(versions) == 1, versions
    version = versions.pop()
    assert ("generic", version) in {(p.package_type, p.version) for p in packages}
    dists = [f for f in api.pypi_files(project.id, name) if f"-{version}" in f.filename]
    assert sorted(f.filename.rsplit(".", 1)[-1] for f in dists) == ["gz", "whl"]
    for dist in dists:
        blob = api.download_url(dist.url)
        for ext in ("sig", "bundle"):
            signature = api.download_generic(project.id, name, version, f"{dist.filename}.{ext}")
            assert signature is not None
            assert python_verify(public, blob, signature)
            assert not python_verify(public, blob + b"x", signature)
    assert api.download_generic(project.id, name, version, "cosign.pub") == public.encode()
    return version


@pytest.fixture(scope="module")
def docker_runner(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from provisioner.docker_api import DockerAPI
    from provisioner.images.build import ensure_job_image
    from provisioner.sandbox_runner import start_background

    ensure_job_image("3.11", docker=DockerAPI.from_env())
    work = tmp_path_factory.mktemp("component-docker")
    tag = f"component-{uuid.uuid4().hex[:6]}"
    _register(sandbox, work / "config.toml", executor=Executor.DOCKER, tag=tag)
    handle = start_background(work / "config.toml", work_dir=work / "builds")
    try:
        yield tag
    finally:
        handle.stop(force=True, timeout=30)


def test_a_consumer_includes_the_published_component_and_runs_green(
    sandbox: Any, docker_runner: str
) -> None:
    component = sandbox.new_project(
        name="python-release",
        files={
            "templates/python-release.yml": (ROOT / "templates" / "python-release.yml").read_text(),
            "README.md": (ROOT / "templates" / "README.md").read_text(),
        },
    )
    component.tags.create({"tag_name": "1.0.0", "ref": "main", "message": "release 1.0.0"})
    package = {
        path: text
        for path, text in template_files().items()
        if path in {"pyproject.toml", "README.md"} or path.startswith(("src/", "tests/"))
    }
    consumer_ci = f"""\
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      when: never
    - when: always
include:
  - component: $CI_SERVER_FQDN/{component.path_with_namespace}/python-release@~latest
    inputs:
      runner_tags: [{docker_runner}]
      test_command: {TEST_COMMAND}
"""
    consumer = sandbox.new_project(
        name="consumer", files={**package, ".gitlab-ci.yml": consumer_ci}
    )
    public = _keys(consumer)
    pipeline = consumer.pipelines.create({"ref": "main"})
    status, jobs, traces = _follow(consumer, pipeline.id, timeout=900)
    assert status == "success", f"{jobs}\n{traces}"
    assert jobs == dict.fromkeys(
        [
            "test",
            "build",
            "sign",
            "verify",
            "publish",
            "publish_signatures",
            "consumer_verify",
        ],
        "success",
    )
    api = GitLabAPI.from_settings(ConnectionSettings(url=sandbox.url, token=sandbox.root_token))
    version = _check_published(consumer, api, consumer.path, public)
    assert version.endswith(f".dev{consumer.pipelines.get(pipeline.id).iid}")
    test_job = next(j for j in consumer.jobs.list(get_all=True) if j.name == "test")
    # (GitLab lists the Cobertura report as file_type `cobertura`; the sandbox names it
    # `coverage_report`, after the artifacts:reports key.)
    reports = {a["file_type"] for a in test_job.attributes["artifacts"]}
    assert {"junit", "coverage_report"} <= reports
    trace = consumer.jobs.get(test_job.id).trace().decode(errors="replace")
    assert re.search(r"^TOTAL.*\s(\d+%)$", trace, re.MULTILINE), trace[-2000:]

    # include: project with ref and file resolves the same file at the tag.
    by_project = sandbox.new_project(
        name="by-project",
        files={
            **package,
            ".gitlab-ci.yml": (
                "include:\n"
                f"  - project: {component.path_with_namespace}\n"
                "    ref: 1.0.0\n"
                "    file: templates/python-release.yml\n"
                "    inputs: {signing: none, publish: none}\n"
            ),
        },
    )
    other = by_project.pipelines.create({"ref": "main"})
    names = {job.name for job in other.jobs.list(get_all=True)}
    assert names == {"test", "build"}
    other.cancel()


def _ci_venv(where: Path) -> Path:
    """A virtualenv with what the shell jobs need from their Python (the host's indexes)."""
    venv = where / "ci-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "build",
            "wheel",
            "setuptools>=77",
            "twine",
            "cryptography",
            "packaging",
        ],
        check=True,
        timeout=600,
    )
    return venv / "bin"


def _push_worktree(sandbox: Any, project: Any, where: Path) -> None:
    """Push this repository's HEAD to the project's main branch (token through askpass)."""
    askpass = where / "askpass.sh"
    askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$SANDBOX_GIT_PASSWORD"\n')
    askpass.chmod(0o700)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(where),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": str(askpass),
        "SANDBOX_GIT_PASSWORD": sandbox.root_token,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    url = f"{sandbox.url}/{project.path_with_namespace}.git".replace("://", "://root@", 1)
    proc = subprocess.run(
        ["git", "-c", "credential.helper=", "push", "-q", url, "HEAD:refs/heads/main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_runnerctls_own_pipeline_runs_on_the_stand_in_runner(sandbox: Any, tmp_path: Path) -> None:
    from provisioner.sandbox_runner import start_background

    bin_dir = _ci_venv(tmp_path)
    cosign_dir = str(Path(find_cosign()).parent)
    tag = f"runnerctl-{uuid.uuid4().hex[:6]}"
    environment = [
        f"PATH={bin_dir}:{cosign_dir}:/usr/local/bin:/usr/bin:/bin",
        f"VIRTUAL_ENV={bin_dir.parent}",
    ]
    _register(
        sandbox, tmp_path / "config.toml", executor=Executor.SHELL, tag=tag, environment=environment
    )
    project = sandbox.new_project(name="runnerctl")
    _push_worktree(sandbox, project, tmp_path)
    # The unit tests read GitLab's reference data from ../shared/reference next to the
    # checkout (the project's working layout); this host provides it there, as a runner host
    # of runnerctl's own CI must (.gitlab-ci.yml says so).
    token = tomllib.loads((tmp_path / "config.toml").read_text())["runners"][0]["token"]
    namespace = tmp_path / "builds" / "builds" / token.removeprefix("glrt-")[:8] / "0" / "root"
    namespace.mkdir(parents=True)
    (namespace / "shared").symlink_to((ROOT / ".." / "shared").resolve())
    public = _keys(project)
    handle = start_background(tmp_path / "config.toml", work_dir=tmp_path / "builds")
    try:
        pipeline = project.pipelines.create(
            {
                "ref": "main",
                "variables": [
                    {"key": "RUNNERCTL_CI_TAG", "value": tag},
                    {"key": "RUNNERCTL_INTEGRATION", "value": "skip"},
                ],
            }
        )
        status, jobs, traces = _follow(project, pipeline.id, timeout=1500)
    finally:
        handle.stop(force=True, timeout=30)
    assert status == "success", f"{jobs}\n{traces}"
    assert jobs == dict.fromkeys(
        [
            "lint",
            "test",
            "build",
            "sign",
            "verify",
            "publish",
            "publish_signatures",
            "consumer_verify",
        ],
        "success",
    )
    api = GitLabAPI.from_settings(ConnectionSettings(url=sandbox.url, token=sandbox.root_token))
    version = _check_published(project, api, "runnerctl", public)
    assert version.startswith(f"{provisioner_version}.dev")
