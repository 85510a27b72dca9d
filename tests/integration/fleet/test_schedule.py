"""End to end from a pipeline schedule: the generated .gitlab-ci.yml applies FLEET.toml.

A sandbox with a fast schedule clock (bound where the VMs reach it) holds a project with
FLEET.toml and the `.gitlab-ci.yml` that `runnerctl fleet ci` prints; the SSH key, known_hosts
and the GitLab token are CI/CD variables. A stand-in runner on this machine (shell executor)
takes the scheduled pipeline's `fleet-apply` job, which runs `runnerctl fleet apply`; the fleet
(one runner on vm-b) converges. The runner and its entry are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.fleet.ci import CiOptions, ci_config
from provisioner.fleet.model import marker
from provisioner.runner_config import ConfigDocument, ConfigStore, RunnerRef
from tests.conftest import run_runnerctl
from tests.helpers import wait_for_pipeline, wait_until
from tests.integration.conftest import RunningSandbox
from tests.integration.fleet.vms import remove_entries
from tests.integration.hostlab import Lab

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.sandbox, pytest.mark.slow]

FLEET = """\
[fleet]
name = "{name}"
gitlab_url = "{url}"
ssh_user = "ops"

[[hosts]]
name = "vm-b"
address = "{b}"

[[runners]]
name = "{name}-build"
host = "vm-b"
executor = "shell"
tags = ["{name}-build"]
"""


@pytest.fixture(scope="module")
def fast_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """A sandbox the VMs reach whose cron minute lasts half a second."""
    from provisioner.docker_api import DockerAPI
    from provisioner.sandbox import start_background

    gateway = DockerAPI.from_env().bridge_gateway()
    data = tmp_path_factory.mktemp("fast-sandbox")
    handle = start_background(data, host=gateway, port=0, schedule_tick=0.5)
    try:
        yield RunningSandbox(handle.url, handle.root_token, data, handle)
    finally:
        handle.stop()


def test_a_schedule_runs_fleet_apply_and_the_fleet_converges(
    lab: Lab, fast_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    name = f"sched{os.getpid()}"
    gl = fast_sandbox.gitlab()
    vm_b = lab.hosts[1]
    ci = ci_config(CiOptions(tags=(f"{name}-ci",)))
    fleet_toml = FLEET.format(name=name, url=fast_sandbox.url, b=vm_b.ip)
    project = fast_sandbox.new_project(files={"FLEET.toml": fleet_toml, ".gitlab-ci.yml": ci})
    remove_entries(lab, vm_b, set())  # known_hosts learns vm-b's key (the job checks it strictly)
    for key, value, kind, masked in (
        ("GITLAB_TOKEN", fast_sandbox.root_token, "env_var", True),
        ("FLEET_SSH_KEY", lab.key.read_text(), "file", False),
        ("FLEET_KNOWN_HOSTS", lab.known_hosts.read_text(), "file", False),
    ):
        project.variables.create(
            {"key": key, "value": value, "variable_type": kind, "masked": masked}
        )
    # The stand-in runner that takes the fleet jobs runs here, on this machine.
    config = tmp_path / "config.toml"
    token_file = tmp_path / "token"
    token_file.write_text(fast_sandbox.root_token)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "CI_"))}
    env["HOME"] = str(lab.home)
    registered = run_runnerctl(
        "register", "--executor", "shell", "--scope", "instance", "--name", f"{name}-ci",
        "--tag", f"{name}-ci", "--gitlab-url", fast_sandbox.url, "--token-file", str(token_file),
        "--config", str(config), env=env,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    bin_dir = Path(sys.executable).parent

    def tune(doc: ConfigDocument) -> None:
        doc.set_global("check_interval", 1)
        path = f"PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin"  # runnerctl for the job
        doc.update_runner(RunnerRef(name=f"{name}-ci"), {"environment": [path]})

    ConfigStore(config).update(tune)
    from provisioner.sandbox_runner import start_background as start_runner

    runner = start_runner(config, work_dir=tmp_path / "work")
    try:
        schedule = project.pipelineschedules.create(
            {"description": "fleet", "ref": "main", "cron": "* * * * *"}
        )
        pipelines: list[Any] = []

        def fired() -> bool:
            pipelines[:] = project.pipelines.list(source="schedule", get_all=True)
            return bool(pipelines)

        wait_until(fired, timeout=60, interval=0.5, message="the schedule never fired")
        schedule.active = False  # one scheduled run is enough
        schedule.save()
        first = project.pipelines.get(min(p.id for p in pipelines))

        wait_for_pipeline(first, timeout=300)
        (job,) = first.jobs.list(get_all=True)
        trace = project.jobs.get(job.id).trace().decode()
        assert job.name == "fleet-apply"
        assert first.status == "success", trace
        assert "converged" in trace
        assert fast_sandbox.root_token not in trace
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            project.pipelineschedules.delete(schedule.id)

    owned = [
        r
        for r in (gl.runners.get(i.id) for i in gl.runners_all.list(get_all=True))
        if (r.maintenance_note or "") == marker(name, f"{name}-build")
    ]
    assert len(owned) == 1
    text = vm_b.sh("cat /etc/gitlab-runner/config.toml")
    entries = [r for r in tomllib.loads(text).get("runners", []) if r.get("id") == owned[0].id]
    try:
        assert [e["name"] for e in entries] == [f"{name}-build"]
        assert entries[0]["url"] == fast_sandbox.url
    finally:
        remove_entries(lab, vm_b, {owned[0].id})
