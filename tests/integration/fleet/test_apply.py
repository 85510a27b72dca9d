"""fleet apply on the session's three stand-in VMs, against the sandbox they can reach.

One fleet is converged per module (six runners over three hosts, one of them shared by two
hosts, shell and docker executors); every scenario starts from it, changes something, and ends
converged again. At the end the fleet's runners are deleted from GitLab and their entries
removed from the hosts' config.toml, so the VMs are left as they were found.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.fleet.model import marker
from provisioner.runner_config import ConfigDocument, RunnerRef
from tests.conftest import RUNNERCTL, run_runnerctl
from tests.helpers import wait_for_pipeline
from tests.integration.conftest import RunningSandbox
from tests.integration.fleet.vms import edit_config, remove_entries
from tests.integration.hostlab import Lab, VmHost, docker, install_runnerctl
from tests.integration.sandbox_runner.conftest import API_ONLY

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.sandbox, pytest.mark.slow]

FLEET_TOML = """\
[fleet]
name = "{name}"
gitlab_url = "{url}"
ssh_user = "ops"
vars_file = "{vars_file}"

[fleet.defaults]
locked = true
run_untagged = false

[[hosts]]
name = "vm-a"
address = "{a}"

[[hosts]]
name = "vm-b"
address = "{b}"

[[hosts]]
name = "vm-c"
address = "{c}"

[[runners]]
name = "{p}-shared"
hosts = ["vm-a", "vm-b"]
executor = "shell"
tags = ["{p}-shared"]
{shared_rotation}
[[runners]]
name = "{p}-a-shell"
host = "vm-a"
executor = "shell"
tags = ["{p}-a"]

[[runners]]
name = "{p}-a-docker"
host = "vm-a"
executor = "docker"
tags = ["{p}-a-docker"]
[runners.docker]
image = "alpine:3.20"

[[runners]]
name = "{p}-b-docker"
host = "vm-b"
executor = "docker"
tags = ["{p}-b-docker"]
[runners.docker]
image = "alpine:3.20"
pull_policy = ["if-not-present"]

[[runners]]
name = "{p}-c-shell"
host = "vm-c"
executor = "shell"
scope = "group:{group}"
tags = ["{p}-c"]
[runners.config]
environment = ["FLEET_HOST=vm-c"]

[[runners]]
name = "{p}-c-docker"
host = "vm-c"
executor = "docker"
tags = ["{p}-c-docker"]
paused = true
[runners.docker]
image = "alpine:3.20"
"""

HOSTS = {"vm-a": 0, "vm-b": 1, "vm-c": 2}
LAYOUT = {
    "vm-a": {"shared", "a-shell", "a-docker"},
    "vm-b": {"shared", "b-docker"},
    "vm-c": {"c-shell", "c-docker"},
}


@dataclass
class FleetLab:
    """The fleet under test: its files, the sandbox and the VMs."""

    lab: Lab
    sandbox: Any
    root: Path
    name: str
    prefix: str
    group: Any
    token_file: Path
    first: tuple[int, dict[str, Any], str, float] | None = None

    @property
    def path(self) -> Path:
        return self.root / "FLEET.toml"

    def write(self, *, shared_rotation: str = "") -> None:
        self.path.write_text(
            FLEET_TOML.format(
                name=self.name,
                url=self.sandbox.url,
                vars_file=self.lab.vars_file,
                a=self.lab.hosts[0].ip,
                b=self.lab.hosts[1].ip,
                c=self.lab.hosts[2].ip,
                p=self.prefix,
                group=self.group.full_path,
                shared_rotation=shared_rotation,
            )
        )

    def host(self, name: str) -> VmHost:
        return self.lab.hosts[HOSTS[name]]

    def args(self) -> list[str]:
        return [
            str(self.path),
            "--gitlab-url",
            self.sandbox.url,
            "--token-file",
            str(self.token_file),
            *self.lab.ssh_args(),
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITLAB_", "CI_"))}
        env["HOME"] = str(self.lab.home)
        env["XDG_STATE_HOME"] = str(self.root / "state")
        return env

    def plan(self, *extra: str) -> dict[str, Any]:
        proc = run_runnerctl("fleet", "plan", *self.args(), *extra, "-o", "json", env=self.env())
        assert proc.returncode in (0, 2), proc.stdout + proc.stderr
        document: dict[str, Any] = json.loads(proc.stdout)
        return document

    def apply(self, *extra: str) -> tuple[int, dict[str, Any], str]:
        argv = ["fleet", "apply", *self.args(), "--auto-approve", *extra, "-o", "json"]
        proc = run_runnerctl(*argv, env=self.env(), timeout=600)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.returncode, json.loads(proc.stdout), proc.stderr

    def gitlab(self) -> Any:
        return self.sandbox.gitlab()

    def owned(self) -> dict[str, Any]:
        """This fleet's runners in GitLab, by short name."""
        found: dict[str, Any] = {}
        for item in self.gitlab().runners_all.list(get_all=True):
            runner = self.gitlab().runners.get(item.id)
            note = runner.maintenance_note or ""
            if note.startswith(marker(self.name, "")):
                found[runner.description.removeprefix(f"{self.prefix}-")] = runner
        return found

    def entries(self, host: str) -> dict[str, dict[str, Any]]:
        """The fleet's entries in a host's config.toml, by short name (as root reads it)."""
        text = self.host(host).sh("cat /etc/gitlab-runner/config.toml 2>/dev/null || true")
        import tomllib

        runners = tomllib.loads(text).get("runners", []) if text else []
        return {
            r["name"].removeprefix(f"{self.prefix}-"): r
            for r in runners
            if str(r.get("name", "")).startswith(f"{self.prefix}-")
        }


def _cleanup(fl: FleetLab) -> None:
    """Delete the fleet's runners and drop their entries from every host."""
    owned = fl.owned()
    ids = {r.id for r in owned.values()}
    for host in fl.lab.hosts:
        with contextlib.suppress(Exception):
            remove_entries(fl.lab, host, ids)
    for runner in owned.values():
        with contextlib.suppress(Exception):
            fl.gitlab().runners.delete(runner.id)


@pytest.fixture(scope="module")
def fleet(
    lab: Lab, bridge_sandbox: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetLab]:
    root = tmp_path_factory.mktemp("fleet")
    token_file = root / "token"
    token_file.write_text(bridge_sandbox.root_token)
    token_file.chmod(0o600)
    sandbox = RunningSandbox(
        bridge_sandbox.url, bridge_sandbox.root_token, bridge_sandbox.data_dir, bridge_sandbox
    )
    gl = sandbox.gitlab()
    name = f"itest{os.getpid()}"
    group = gl.groups.create({"name": f"{name}-g", "path": f"{name}-g"})
    fl = FleetLab(lab, sandbox, root, name, f"f{os.getpid()}", group, token_file)
    fl.write()
    # The stand-in gitlab-runner of each host runs its jobs (and contacts GitLab) with runnerctl.
    for vm in HOSTS:
        if fl.host(vm).sh("command -v runnerctl || true", check=False) == "":
            install_runnerctl(fl.host(vm), root)
    started = time.monotonic()
    code, result, err = fl.apply()
    fl.first = (code, result, err, time.monotonic() - started)
    try:
        yield fl
    finally:
        _cleanup(fl)


def _kinds(plan: dict[str, Any]) -> list[str]:
    return sorted(a["id"] for a in plan["actions"])


# --------------------------------------------------------------------------- converge


def test_apply_converges_six_runners_over_three_hosts(fleet: FleetLab) -> None:
    assert fleet.first is not None
    code, result, err, _seconds = fleet.first
    assert code == 0, err + json.dumps(result, indent=1)
    assert result["converged"] is True
    created = sorted(a["runner"] for a in result["actions"] if a["kind"] == "create-runner")
    assert created == sorted(f"{fleet.prefix}-{n}" for n in set().union(*LAYOUT.values()))
    assert {a["status"] for a in result["actions"]} == {"ok"}

    owned = fleet.owned()
    assert set(owned) == set().union(*LAYOUT.values())
    assert owned["c-docker"].paused is True
    assert owned["c-shell"].runner_type == "group_type"
    for host, names in LAYOUT.items():
        entries = fleet.entries(host)
        assert set(entries) == names, host
        for short, entry in entries.items():
            assert entry["id"] == owned[short].id
            assert entry["url"] == fleet.sandbox.url
    assert fleet.entries("vm-a")["shared"]["token"] == fleet.entries("vm-b")["shared"]["token"]
    assert fleet.entries("vm-b")["b-docker"]["docker"]["image"] == "alpine:3.20"
    assert fleet.entries("vm-c")["c-shell"]["environment"] == ["FLEET_HOST=vm-c"]
    # Nothing secret in what apply printed.
    assert "glrt-" not in json.dumps(result) + err


def test_a_second_apply_plans_and_does_nothing(fleet: FleetLab) -> None:
    plan = fleet.plan()
    assert plan["actions"] == [], plan["actions"]
    code, result, _err = fleet.apply()
    assert code == 0
    assert result["actions"] == []
    assert result["converged"] is True


def test_the_runners_run_jobs(fleet: FleetLab) -> None:
    jobs = {
        "on-a": f"{fleet.prefix}-a",
        "on-c": f"{fleet.prefix}-c",
        "on-shared": f"{fleet.prefix}-shared",
    }
    ci = API_ONLY + "".join(
        f"{job}:\n  tags: [{tag}]\n  script:\n"
        f'    - echo "{job} ran on $(hostname) FLEET_HOST=$FLEET_HOST"\n'
        for job, tag in jobs.items()
    )
    project = fleet.sandbox.new_project(group=fleet.group, files={".gitlab-ci.yml": ci})
    pipeline = project.pipelines.create({"ref": "main"})

    wait_for_pipeline(
        pipeline,
        timeout=180,
        context=lambda: fleet.host("vm-a").sh(
            "tail -20 /var/log/gitlab-runner-standin.log", check=False
        ),
    )
    traces = {
        job.name: project.jobs.get(job.id).trace().decode()
        for job in pipeline.jobs.list(get_all=True)
    }
    assert pipeline.status == "success", traces
    assert "on-a ran on vm-a" in traces["on-a"]
    assert "on-c ran on vm-c FLEET_HOST=vm-c" in traces["on-c"]
    assert "on-shared ran on vm-" in traces["on-shared"]


# --------------------------------------------------------------------------- drift


def test_drift_is_planned_exactly_and_repaired(fleet: FleetLab) -> None:
    owned = fleet.owned()
    shared = owned["shared"].id
    token = fleet.entries("vm-a")["shared"]["token"]
    remove_entries(fleet.lab, fleet.host("vm-b"), {shared})
    b_docker = fleet.gitlab().runners.get(owned["b-docker"].id)
    b_docker.paused = True
    b_docker.save()
    c_shell = fleet.gitlab().runners.get(owned["c-shell"].id)
    c_shell.tag_list = [f"{fleet.prefix}-c", "hand-added"]
    c_shell.save()

    plan = fleet.plan()

    p = fleet.prefix
    assert _kinds(plan) == sorted(
        [
            f"update-runner:{p}-b-docker",
            f"update-runner:{p}-c-shell",
            f"write-entry:{p}-shared@vm-b",
        ]
    )
    by_id = {a["id"]: a for a in plan["actions"]}
    assert by_id[f"update-runner:{p}-b-docker"]["changes"] == {
        "paused": {"from": True, "to": False}
    }
    assert by_id[f"update-runner:{p}-c-shell"]["changes"]["tags"]["to"] == [f"{p}-c"]

    code, result, err = fleet.apply()

    assert code == 0, err + json.dumps(result, indent=1)
    # The entry came back with the token vm-a holds: no reset was needed.
    assert fleet.entries("vm-b")["shared"]["token"] == token
    assert fleet.entries("vm-b")["shared"]["id"] == shared
    assert fleet.gitlab().runners.get(owned["b-docker"].id).paused is False
    assert fleet.gitlab().runners.get(owned["c-shell"].id).tag_list == [f"{p}-c"]
    assert fleet.plan()["actions"] == []


# --------------------------------------------------------------------------- ownership


def test_unmarked_runner_is_untouched_and_an_owned_stray_is_deleted(fleet: FleetLab) -> None:
    gl = fleet.gitlab()
    p = fleet.prefix
    unmarked = gl.user.runners.create(
        {"runner_type": "instance_type", "description": "someone-elses", "tag_list": [f"{p}-a"]}
    )
    stray = gl.user.runners.create(
        {
            "runner_type": "instance_type",
            "description": f"{p}-retired",
            "tag_list": ["old"],
            "maintenance_note": marker(fleet.name, f"{p}-retired"),
        }
    )
    before = gl.runners.get(unmarked.id).attributes
    try:
        plan = fleet.plan()
        assert _kinds(plan) == [f"delete-runner:{p}-retired"]
        assert [u["runner_id"] for u in plan["unmanaged"]] == [unmarked.id]

        code, result, err = fleet.apply()

        assert code == 0, err + json.dumps(result, indent=1)
        with pytest.raises(Exception, match="404"):
            gl.runners.get(stray.id)
        after = gl.runners.get(unmarked.id).attributes
        assert {k: after[k] for k in ("description", "tag_list", "paused", "maintenance_note")} == {
            k: before[k] for k in ("description", "tag_list", "paused", "maintenance_note")
        }
    finally:
        gl.runners.delete(unmarked.id)


# --------------------------------------------------------------------------- rotation


def test_rotating_the_shared_token_reaches_both_hosts_and_both_managers(fleet: FleetLab) -> None:
    shared = fleet.owned()["shared"]
    old = fleet.entries("vm-a")["shared"]["token"]
    fleet.write(shared_rotation='token_rotation = { every = "1s" }\n')
    time.sleep(2)
    try:
        plan = fleet.plan()
        assert _kinds(plan) == [f"rotate-token:{fleet.prefix}-shared"]
        started = time.time()

        code, result, err = fleet.apply()

        assert code == 0, err + json.dumps(result, indent=1)
        (action,) = result["actions"]
        assert action["detail"] == "every manager reconnected"
    finally:
        fleet.write()
    a, b = fleet.entries("vm-a")["shared"], fleet.entries("vm-b")["shared"]
    assert a["token"] == b["token"] != old
    managers = fleet.gitlab().http_get(f"/runners/{shared.id}/managers")
    systems = {
        fleet.host(h).sh("cat /etc/gitlab-runner/.runner_system_id") for h in ("vm-a", "vm-b")
    }
    recent = {
        m["system_id"]
        for m in managers
        if m["contacted_at"] and _epoch(m["contacted_at"]) >= int(started) - 1
    }
    assert systems <= recent, managers
    assert fleet.plan()["actions"] == []


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- a host cut off


def test_a_host_cut_mid_apply_fails_alone_and_the_rerun_converges(fleet: FleetLab) -> None:
    owned = fleet.owned()
    p = fleet.prefix
    remove_entries(fleet.lab, fleet.host("vm-a"), {owned["shared"].id})

    def drift(doc: ConfigDocument) -> None:
        doc.update_runner(RunnerRef(id=owned["c-shell"].id), {"environment": ["FLEET_HOST=x"]})

    edit_config(fleet.lab, fleet.host("vm-c"), drift)
    runner = fleet.gitlab().runners.get(owned["shared"].id)
    runner.paused = True
    runner.save()
    victim = fleet.host("vm-c")
    # One host at a time, vm-a before vm-c. The test holds vm-a's config.toml lock, so the
    # apply waits there; vm-c is paused while it waits and the lock is released only then:
    # vm-c is cut off before the apply reaches it, whatever the machine's load.
    holder = subprocess.Popen(
        ["docker", "exec", "-i", fleet.host("vm-a").container, "flock",
         "/etc/gitlab-runner/config.toml.lock", "sh", "-c", "echo locked; exec cat >/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdin is not None
    assert holder.stdout.readline().strip() == "locked"
    argv = [str(RUNNERCTL), "fleet", "apply", *fleet.args(), "--auto-approve", "--parallel", "1"]
    argv += ["-o", "json"]
    paused = False
    try:
        with subprocess.Popen(
            argv, env=fleet.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stderr is not None
            err_lines = []
            try:
                for line in proc.stderr:
                    err_lines.append(line)
                    # GitLab's part is done; vm-a's write waits for the lock: cut vm-c off.
                    if not paused and f"update-runner:{p}-shared" in line:
                        docker("pause", victim.container)
                        paused = True
                        holder.stdin.close()  # vm-a's write may go on
                out = proc.stdout.read() if proc.stdout else ""
                code = proc.wait(timeout=300)
            finally:
                if paused:
                    docker("unpause", victim.container)
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(timeout=60)
    assert paused, "".join(err_lines)
    assert code == 12, "".join(err_lines) + out
    result = json.loads(out)
    status = {a["id"]: a["status"] for a in result["actions"]}
    assert status == {
        f"update-runner:{p}-shared": "ok",
        f"write-entry:{p}-shared@vm-a": "ok",
        f"write-entry:{p}-c-shell@vm-c": "failed",
    }
    assert result["converged"] is False
    assert fleet.entries("vm-a")["shared"]["id"] == owned["shared"].id
    assert fleet.entries("vm-c")["c-shell"]["environment"] == ["FLEET_HOST=x"]

    code, result, err = fleet.apply()

    assert code == 0, err + json.dumps(result, indent=1)
    assert [a["id"] for a in result["actions"]] == [f"write-entry:{p}-c-shell@vm-c"]
    assert fleet.entries("vm-c")["c-shell"]["environment"] == ["FLEET_HOST=vm-c"]
    assert fleet.plan()["actions"] == []
