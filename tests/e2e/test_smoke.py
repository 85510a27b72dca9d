"""``runnerctl smoke`` end to end: a sandbox GitLab, runners registered by runnerctl into a
config.toml, the stand-in runner executing the jobs (docker and shell executors), and the
smoke CLI following the pipeline and checking what it published.

Asserted: every stage green, the registry contents, the signatures verified client-side; a
wheel altered after signing fails verify, publish never runs, exit 7 and JUnit naming verify;
a runner with another tag never picks the jobs up (GitLab's stuck-job text, exit 7).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigDocument, ConfigStore
from provisioner.secrets import contains_secret
from provisioner.smoke.service import STAGES
from provisioner.smoke.signing import cosign_verify, python_verify
from tests.conftest import run_runnerctl

VENV_BIN = str(Path(sys.executable).parent)
CHECKS = ["pypi registry", "generic registry", "local verification", "altered copy rejected"]

pytestmark = [pytest.mark.docker, pytest.mark.sandbox, pytest.mark.slow]


@dataclass
class Lab:
    url: str
    token: str
    tmp: Path

    def api(self) -> GitLabAPI:
        return GitLabAPI.from_settings(ConnectionSettings(url=self.url, token=self.token))

    def gitlab(self) -> Any:
        import gitlab

        return gitlab.Gitlab(self.url, private_token=self.token)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from provisioner.sandbox import start_background

    root = tmp_path_factory.mktemp("smoke-e2e")
    handle = start_background(root / "gitlab", port=0)
    try:
        yield Lab(handle.url, handle.root_token, root)
    finally:
        handle.stop()


def _register(
    lab: Lab,
    config: Path,
    *,
    executor: Executor,
    tag: str,
    environment: list[str] | None = None,
    pip_cache_volume: str | None = None,
) -> None:
    request = RegisterRequest(
        name=f"smoke-e2e-{executor.value}",
        scope=parse_scope("instance"),
        gitlab_url=lab.url,
        executor=ExecutorConfig(
            executor,
            docker=DockerOptions(image="runnerctl/python:3.11", pip_cache_volume=pip_cache_volume),
        ),
        tags=(tag,),
    )
    store = ConfigStore(config)
    register(request, gitlab=lab.api(), store=store)

    def tune(doc: ConfigDocument) -> None:
        doc.set_global("check_interval", 1)
        for table in doc.runner_tables():
            if environment is not None:
                table["environment"] = environment
            if executor is Executor.DOCKER:
                # Job containers reach the sandbox on 127.0.0.1 (what the runner docs advise).
                table["docker"]["network_mode"] = "host"

    store.update(tune)


@pytest.fixture(scope="module")
def docker_runner(lab: Lab) -> Iterator[str]:
    from provisioner.docker_api import DockerAPI
    from provisioner.images.build import ensure_job_image
    from provisioner.sandbox_runner import start_background

    docker = DockerAPI.from_env()
    ensure_job_image("3.11", docker=docker)
    volume = f"runnerctl-e2e-smoke-{uuid.uuid4().hex[:8]}"
    config = lab.tmp / "docker-config.toml"
    tag = "smoke-e2e-docker"
    _register(lab, config, executor=Executor.DOCKER, tag=tag, pip_cache_volume=volume)
    handle = start_background(config, work_dir=lab.tmp / "docker-work")
    try:
        yield tag
    finally:
        handle.stop(force=True, timeout=30)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)


def _smoke(lab: Lab, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = run_runnerctl(
        "--output",
        "json",
        "smoke",
        "--gitlab-url",
        lab.url,
        *args,
        env={**os.environ, "GITLAB_TOKEN": lab.token},
        timeout=1200,
    )
    assert not contains_secret(proc.stdout + proc.stderr)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _junit(path: Path) -> dict[str, str]:
    """testcase name -> "ok" | "failure" | "skipped"."""
    suite = ET.parse(path).getroot()  # noqa: S314 - our own file
    return {
        str(case.get("name")): next(
            (child.tag for child in case if child.tag in ("failure", "skipped")), "ok"
        )
        for case in suite
    }


def _assert_green(lab: Lab, result: dict[str, Any], junit: Path) -> None:
    assert result["status"] == "passed", result["message"]
    assert [(s["name"], s["status"]) for s in result["stages"]] == [
        (stage, "success") for stage in STAGES
    ]
    assert all(s["seconds"] is not None for s in result["stages"])
    assert [c["name"] for c in result["checks"] if c["passed"]] == CHECKS
    assert result["time_to_green"] > 0
    assert _junit(junit) == {**dict.fromkeys(STAGES, "ok"), **dict.fromkeys(CHECKS, "ok")}

    # The registries, looked at independently of runnerctl smoke.
    gl = lab.gitlab()
    project = gl.projects.get(result["project"])
    name, version = result["package_name"], result["version"]
    kinds = {(p.package_type, p.version) for p in project.packages.list(package_name=name)}
    assert ("pypi", version) in kinds
    assert ("generic", version) in kinds
    api = lab.api()
    dists = [f for f in api.pypi_files(project.id, name) if f"-{version}" in f.filename]
    assert sorted(f.filename.rsplit(".", 1)[-1] for f in dists) == ["gz", "whl"]
    public = project.variables.get("COSIGN_PUBLIC_KEY").value
    for dist in dists:
        blob = api.download_url(dist.url)
        sig = api.download_generic(project.id, name, version, f"{dist.filename}.sig")
        bundle = api.download_generic(project.id, name, version, f"{dist.filename}.bundle")
        assert sig is not None
        assert bundle is not None
        assert python_verify(public, blob, sig)
        assert python_verify(public, blob, bundle)
        path = lab.tmp / dist.filename
        path.write_bytes(blob)
        (lab.tmp / "x.sig").write_bytes(sig)
        assert cosign_verify(public, path, signature=lab.tmp / "x.sig")[0]
    assert api.download_generic(project.id, name, version, "cosign.pub") == public.encode()


def test_smoke_pipeline_is_green_on_a_docker_executor_runner(lab: Lab, docker_runner: str) -> None:
    junit = lab.tmp / "docker.xml"
    rc, result, stderr = _smoke(lab, "--tag", docker_runner, "--junit", str(junit))
    assert rc == 0, stderr
    assert result["project"] == "root/runnerctl-smoke"
    assert result["key_created"] is True
    _assert_green(lab, result, junit)

    # A second run reuses the key pair and the pushed project, and gets a new version.
    rc, again, stderr = _smoke(lab, "--tag", docker_runner, "--junit", str(junit), "--keep", "1")
    assert rc == 0, stderr
    assert (again["key_created"], again["pushed"]) == (False, False)
    assert again["version"] != result["version"]
    assert again["deleted_versions"] == [result["version"]]
    gl = lab.gitlab()
    versions = {p.version for p in gl.projects.get(again["project"]).packages.list()}
    assert versions == {again["version"]}


def test_wheel_altered_after_signing_fails_verify_and_is_never_published(
    lab: Lab, docker_runner: str
) -> None:
    junit = lab.tmp / "tampered.xml"
    rc, result, stderr = _smoke(
        lab,
        "--project",
        "root/smoke-tampered",
        "--tag",
        docker_runner,
        "--variable",
        "SMOKE_TAMPER=wheel-after-sign",
        "--junit",
        str(junit),
    )
    assert rc == 7, stderr
    assert result["status"] == "failed"
    assert result["failing_job"] == "verify"
    stages = {s["name"]: s["status"] for s in result["stages"]}
    assert stages["sign"] == "success"
    assert stages["verify"] == "failed"
    assert {stages[s] for s in ("publish", "publish_signatures", "consumer_verify")} == {"skipped"}
    assert "invalid signature" in result["trace_tail"]
    assert "Error: Pipeline #" in stderr
    assert "job 'verify' (verify) failed" in stderr
    cases = _junit(junit)
    assert [name for name, state in cases.items() if state == "failure"] == ["verify"]
    assert cases["publish"] == "skipped"
    project = lab.gitlab().projects.get("root/smoke-tampered")
    assert project.packages.list() == []


def test_runner_with_another_tag_never_picks_the_jobs_up(lab: Lab, docker_runner: str) -> None:
    junit = lab.tmp / "stuck.xml"
    rc, result, stderr = _smoke(
        lab,
        "--project",
        "root/smoke-stuck",
        "--tag",
        f"not-{docker_runner}",
        "--timeout",
        "6s",
        "--junit",
        str(junit),
    )
    assert rc == 7, stderr
    assert result["status"] == "timed_out"
    assert (
        "No runner picked up the job 'test' within 6 s. This job is stuck because you don't "
        "have any active runners online or available with any of these tags assigned to them: "
        f"not-{docker_runner}"
    ) in stderr
    assert _junit(junit)["test"] == "failure"


def test_smoke_pipeline_is_green_on_a_shell_executor_runner(lab: Lab) -> None:
    from provisioner.sandbox_runner import start_background

    config = lab.tmp / "shell-config.toml"
    tag = "smoke-e2e-shell"
    # Shell jobs run on this host: python3 -m venv, build, twine, pytest-cov and cosign come
    # from the project's virtualenv.
    environment = [f"PATH={VENV_BIN}:/usr/local/bin:/usr/bin:/bin", f"VIRTUAL_ENV={VENV_BIN[:-4]}"]
    _register(lab, config, executor=Executor.SHELL, tag=tag, environment=environment)
    handle = start_background(config, work_dir=lab.tmp / "shell-work")
    try:
        junit = lab.tmp / "shell.xml"
        rc, result, stderr = _smoke(
            lab, "--project", "root/smoke-shell", "--tag", tag, "--junit", str(junit)
        )
    finally:
        handle.stop(force=True, timeout=30)
    assert rc == 0, stderr
    _assert_green(lab, result, junit)
