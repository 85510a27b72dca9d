"""``runnerctl sandbox runner`` as a user runs it: a separate process, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib

import pytest

from provisioner.secrets import contains_secret
from tests.conftest import RUNNERCTL as RUNNERCTL_PATH
from tests.conftest import run_runnerctl
from tests.helpers import wait_until
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox

RUNNERCTL = str(RUNNERCTL_PATH)


def _env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "CI_"))}
    env.update(COLUMNS="200", RUNNERCTL_CACHE=str(lab.tmp / "cache"))
    return env


def _run(lab: Lab, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_runnerctl(*args, env=_env(lab), timeout=timeout)


def test_invalid_config_is_refused_with_exit_3(lab: Lab) -> None:
    config = lab.config()
    config.write_text(
        'concurrent = "four"\n\n[[runners]]\n  name = "x"\n  url = "http://127.0.0.1:9"\n'
        '  token = "glrt-t1_notarealtoken0000"\n  executor = "shell"\n'
    )
    before = config.read_bytes()
    result = _run(lab, "sandbox", "runner", "--config", str(config), "--once")
    assert result.returncode == 3, result.stderr
    assert "is not a valid gitlab-runner config" in result.stderr
    assert "concurrent" in result.stderr
    assert "Hint: fix it, then check with: runnerctl config validate" in result.stderr
    assert config.read_bytes() == before
    assert not contains_secret(result.stdout + result.stderr)


def test_privileged_docker_is_refused_with_exit_3(lab: Lab) -> None:
    config = lab.config()
    lab.register(config, executor="docker", tags=("never-used",), docker={"privileged": True})
    result = _run(lab, "sandbox", "runner", "--config", str(config), "--once")
    assert result.returncode == 3
    assert "privileged = true is refused" in result.stderr
    assert "this machine cannot run privileged containers" in result.stderr


def test_invalid_token_leaves_that_runner_idle_while_the_other_works(lab: Lab) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("cli")
    good = lab.register(config, tags=(tag,))
    bad = lab.register(config, tags=(tag,))
    # The runner is deleted in GitLab: its token in config.toml no longer verifies.
    entry = next(r for r in tomllib.loads(config.read_text())["runners"] if r["name"] == bad)
    lab.gl.runners.delete(entry["id"])
    short = str(entry["token"]).removeprefix("glrt-")[:8]
    project = lab.project(f"hello:\n  tags: [{tag}]\n  script: [echo hello from the cli]\n")
    pipeline = lab.run_pipeline(project)
    result = _run(
        lab,
        "--output",
        "json",
        "sandbox",
        "runner",
        "--config",
        str(config),
        "--max-jobs",
        "1",
        "--work-dir",
        str(lab.tmp / "work"),
    )
    assert result.returncode == 0, result.stderr
    assert f"ERROR: Verifying runner... is not valid  runner={short}" in result.stderr
    assert "Verifying runner... is valid" in result.stderr
    doc = json.loads(result.stdout)
    assert [(j["name"], j["runner"], j["status"]) for j in doc["jobs"]] == [
        ("hello", good, "success")
    ]
    assert doc["idle_runners"] == [bad]
    assert lab.wait_pipeline(project, pipeline.id).status == "success"
    assert not contains_secret(result.stdout + result.stderr)


def test_sigterm_twice_aborts_the_running_job_as_a_system_failure(lab: Lab) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("sigterm")
    lab.register(config, tags=(tag,))
    ci = (
        f"ticker:\n  tags: [{tag}]\n  script:\n"
        '    - for i in $(seq 1 120); do echo "tick $i"; sleep 1; done\n'
    )
    project = lab.project(ci)
    pipeline = lab.run_pipeline(project)
    proc = subprocess.Popen(
        [
            RUNNERCTL,
            "sandbox",
            "runner",
            "--config",
            str(config),
            "--work-dir",
            str(lab.tmp / "work"),
        ],
        env=_env(lab),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = lab.jobs(project, pipeline.id)["ticker"]

        def ticked() -> bool:
            if "tick 2" in lab.trace(project, job):
                return True
            assert proc.poll() is None, proc.communicate()
            return False

        wait_until(ticked, timeout=60, interval=0.3, message="the job never started")
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert proc.poll() is None, "the first SIGTERM must let the running job go on"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received: not taking new jobs" in err
    assert "SIGTERM received again: aborting running jobs" in err
    assert "failed (runner_system_failure)" in out
    job = project.jobs.get(job.id)
    assert job.status == "failed"
    assert job.failure_reason == "runner_system_failure"
    assert "ERROR: Job failed (system failure): aborted: terminated" in lab.trace(project, job)
