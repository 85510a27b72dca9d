"""Jobs that fail for real in the sandbox, run by the stand-in runner, then doctored.

Each test makes one failure happen (nothing is written by hand into a log), runs
``runnerctl doctor JOB --output json`` and asserts the category, the quoted line (verbatim in
the job's clean log) and, where a probe applies, that the probe confirms the finding.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioner.doctor.matcher import clean_log_lines
from provisioner.sandbox_runner import RunnerHandle
from tests.conftest import Cli
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox

Start = Callable[..., RunnerHandle]
HELPER = (
    "git -c credential.helper="
    """'!f() { echo username=gitlab-ci-token; echo "password=$TOKEN"; }; f'"""
)


def _failed_job(lab: Lab, runner_of: Start, config: Path, ci: str, name: str, **kw: Any) -> Any:
    project = lab.project(ci)
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True, **kw)
    assert handle.wait(120)
    job = lab.jobs(project, pipeline.id)[name]
    assert job.status == "failed", lab.trace(project, job)
    return project, job


def _doctor(cli: Cli, lab: Lab, project: Any, job: Any, *extra: str) -> dict[str, Any]:
    code, out, err = cli(
        "doctor",
        f"{project.path_with_namespace}#{job.id}",
        "--output",
        "json",
        *extra,
        env={"GITLAB_URL": lab.sandbox.url, "GITLAB_TOKEN": lab.sandbox.root_token},
    )
    assert code == 10, err
    document: dict[str, Any] = json.loads(out)
    log = lab.trace(project, job)
    capture = os.environ.get("DOCTOR_CAPTURE")
    if capture:  # real logs for the unit tier's fixtures (tests/unit/doctor/data/fixtures)
        Path(capture, f"{document['findings'][0]['id']}.log").write_text(log)
    clean = set(clean_log_lines(log))
    for finding in document["findings"]:
        assert finding["evidence"]["text"] in clean  # verbatim in the clean log
        assert clean_log_lines(log)[finding["evidence"]["line"] - 1] == finding["evidence"]["text"]
    return document


def test_clone_refused_by_the_job_token_allowlist(lab: Lab, runner_of: Start, cli: Cli) -> None:
    other = lab.sandbox.new_project(visibility="private", files={"secret.txt": "no\n"})
    config = lab.config()
    tag = lab.sandbox.unique("doc-allowlist")
    lab.register(config, tags=(tag,))
    ci = f"""
clone-other:
  tags: [{tag}]
  script:
    - export TOKEN="$CI_JOB_TOKEN"
    - {HELPER} clone "$CI_SERVER_URL/{other.path_with_namespace}.git" other
"""
    project, job = _failed_job(lab, runner_of, config, ci, "clone-other")
    document = _doctor(cli, lab, project, job)
    best = document["findings"][0]
    assert best["id"] == "job-token-not-allowlisted"
    assert best["category"] == "clone/auth"
    assert best["confidence"] == "matched"
    assert best["evidence"]["text"].startswith(
        "remote: Authentication by CI/CD job token not allowed from"
    )
    assert document["job"]["failure_reason"] == "script_failure"


def test_clone_url_that_does_not_resolve_is_confirmed_by_the_dns_probe(
    lab: Lab, runner_of: Start, cli: Cli
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-dns")
    lab.register(config, tags=(tag,), runner={"clone_url": "http://nonexistent.invalid"})
    ci = f"job:\n  tags: [{tag}]\n  script: [echo never]\n"
    project, job = _failed_job(lab, runner_of, config, ci, "job")
    document = _doctor(cli, lab, project, job, "--config", str(config))
    best = document["findings"][0]
    assert best["id"] == "could-not-resolve-host"
    assert best["category"] == "DNS/network"
    assert "Could not resolve host: nonexistent.invalid" in best["evidence"]["text"]
    assert best["confidence"] == "probe-confirmed"
    assert any(
        p["probe"] == "dns@host" and p["confirms"] and "nonexistent.invalid" in p["evidence"]
        for p in best["probes"]
    )
    verify = [p for p in document["probes"] if p["probe"] == "verify@host"]
    assert verify[0]["verdict"] == "pass"  # the runner's token is fine: not a token problem
    assert "glrt-" not in json.dumps(document)


def test_dubious_ownership_in_the_build_directory(lab: Lab, runner_of: Start, cli: Cli) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-dubious")
    lab.register(config, tags=(tag,))
    ci = f"""
job:
  tags: [{tag}]
  script:
    - mkdir foreign && git -C foreign init -q && chown -R nobody foreign
    - git -C foreign status
"""
    project, job = _failed_job(lab, runner_of, config, ci, "job")
    best = _doctor(cli, lab, project, job)["findings"][0]
    assert best["id"] == "dubious-ownership"
    assert best["category"] == "permissions"
    assert best["evidence"]["text"].startswith("fatal: detected dubious ownership in repository")


def test_shell_executor_user_without_docker_socket_access(
    lab: Lab, runner_of: Start, cli: Cli
) -> None:
    user = "nobody"
    builds = Path(tempfile.mkdtemp(prefix="runnerctl-doctor-builds-"))
    builds.chmod(0o755)
    try:
        config = lab.config()
        tag = lab.sandbox.unique("doc-socket")
        lab.register(config, tags=(tag,), runner={"builds_dir": str(builds)})
        ci = f"job:\n  tags: [{tag}]\n  script: [id -un, docker info]\n"
        project, job = _failed_job(lab, runner_of, config, ci, "job", user=user)
        document = _doctor(cli, lab, project, job, "--config", str(config), "--job-user", user)
    finally:
        shutil.rmtree(builds, ignore_errors=True)
    best = document["findings"][0]
    assert best["id"] == "docker-sock-permission-denied"
    assert best["category"] == "permissions"
    assert best["confidence"] == "probe-confirmed"
    socket_probe = next(p for p in best["probes"] if p["probe"] == "docker_socket@host")
    assert socket_probe["confirms"]
    assert f"cannot be used by {user}" in socket_probe["evidence"]


def _docker(**extra: object) -> dict[str, object]:
    return {"network_mode": "host", **extra}


def test_apt_as_the_non_root_ci_user(lab: Lab, runner_of: Start, cli: Cli, job_image: str) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-apt")
    lab.register(config, executor="docker", tags=(tag,), docker=_docker(user="ci"))
    ci = f"apt:\n  tags: [{tag}]\n  script: [id -un, apt-get install -y jq]\n"
    project, job = _failed_job(lab, runner_of, config, ci, "apt")
    best = _doctor(cli, lab, project, job)["findings"][0]
    assert best["id"] == "apt-not-root"
    assert best["category"] == "permissions"
    assert "(13: Permission denied)" in best["evidence"]["text"]


def test_python_missing_from_the_image(
    lab: Lab, runner_of: Start, cli: Cli, job_image: str
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-python")
    lab.register(config, executor="docker", tags=(tag,), docker=_docker())
    ci = f"job:\n  tags: [{tag}]\n  image: runnerctl/base:bookworm\n  script: [python --version]\n"
    project, job = _failed_job(lab, runner_of, config, ci, "job")
    document = _doctor(cli, lab, project, job, "--config", str(config))
    best = document["findings"][0]
    assert best["id"] == "command-not-found"
    assert best["category"] == "config"
    assert best["evidence"]["text"].endswith("python: command not found")
    # The docker executor is also probed from a throwaway container on the runner's network.
    probes = {p["probe"]: p for p in document["probes"]}
    assert probes["dns@container"]["verdict"] == "pass"
    assert probes["tcp@container"]["verdict"] == "pass"
    assert probes["dns@host"]["verdict"] == "pass"


def test_missing_image_with_pull_policy_never(
    lab: Lab, runner_of: Start, cli: Cli, job_image: str
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("doc-never")
    lab.register(config, executor="docker", tags=(tag,), docker=_docker(pull_policy=["never"]))
    ci = f'job:\n  tags: [{tag}]\n  image: runnerctl/absent:0\n  script: ["true"]\n'
    project, job = _failed_job(lab, runner_of, config, ci, "job")
    document = _doctor(cli, lab, project, job)
    best = document["findings"][0]
    assert best["id"] == "image-not-present-pull-never"
    assert best["category"] == "image pull"
    assert 'failed to pull image "runnerctl/absent:0"' in best["evidence"]["text"]
    # The generic wrapper on the same line does not appear beside the specific finding.
    assert "job-system-failure" not in [f["id"] for f in document["findings"]]
