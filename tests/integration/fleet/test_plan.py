"""`fleet plan` against the sandbox and the session's VMs: each host read once, nothing written."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from provisioner.fleet.model import marker
from tests.conftest import run_runnerctl
from tests.integration.conftest import RunningSandbox
from tests.integration.hostlab import Lab

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.sandbox]


def _runner(gl: Any, description: str, note: str | None, tags: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "runner_type": "instance_type",
        "description": description,
        "tag_list": tags,
    }
    if note is not None:
        body["maintenance_note"] = note
    created: dict[str, Any] = gl.http_post("/user/runners", post_data=body)
    return created


def test_plan_reads_each_host_once_and_writes_nothing(
    sandbox: RunningSandbox, lab: Lab, tmp_path: Path
) -> None:
    gl = sandbox.gitlab()
    fleet_name = sandbox.unique("plan").replace("-", ".")
    # Names and tags of this test alone: the session's sandbox holds other tests' runners.
    build, tag = sandbox.unique("build"), sandbox.unique("linux")
    owned = _runner(gl, build, marker(fleet_name, build), [tag])
    foreign = _runner(gl, build, None, [tag])
    vm_a, vm_b = lab.hosts[:2]
    where = f"/tmp/{fleet_name}"
    config = f"{where}/config.toml"
    vm_a.sh(
        f"mkdir -p {where} && printf '%s' '[[runners]]\n  name = \"{build}\"\n"
        f'  url = "{sandbox.url}"\n  id = {owned["id"]}\n  token = "{owned["token"]}"\n'
        f'  executor = "shell"\n\' > {config} && chmod 600 {config}'
    )
    vm_b.sh(f"rm -rf {where}")
    before = vm_a.sh(f"stat -c %Y.%s {config}")
    (tmp_path / "FLEET.toml").write_text(
        f'[fleet]\nname = "{fleet_name}"\ngitlab_url = "{sandbox.url}"\nssh_user = "ops"\n\n'
        f'[[hosts]]\nname = "vm-a"\naddress = "{vm_a.ip}"\nconfig_path = "{config}"\n\n'
        f'[[hosts]]\nname = "vm-b"\naddress = "{vm_b.ip}"\nconfig_path = "{config}"\n\n'
        f'[[runners]]\nname = "{build}"\nhosts = ["vm-a", "vm-b"]\nexecutor = "shell"\n'
        f'tags = ["{tag}"]\n'
    )
    runners_before = gl.http_list("/runners/all", get_all=True)
    env = {**os.environ, "GITLAB_TOKEN": sandbox.root_token, "HOME": str(lab.home)}
    try:
        proc = run_runnerctl(
            "fleet", "plan", str(tmp_path / "FLEET.toml"), "-o", "json", *lab.ssh_args(), env=env
        )
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        # One GraphQL request per page of 100 runners (the session's sandbox holds the
        # runners of every test before this one).
        assert plan["api_requests"] == math.ceil(len(runners_before) / 100)
        assert plan["ssh_sessions"] == 2  # one per host
        actions = {a["id"]: a for a in plan["actions"]}
        assert actions[f"write-entry:{build}@vm-b"]["runner_id"] == owned["id"]
        assert f"create-runner:{build}" not in actions
        assert [u["runner_id"] for u in plan["unmanaged"]] == [foreign["id"]]
        for name, vm in (("vm-a", vm_a), ("vm-b", vm_b)):
            installed = vm.sh("command -v gitlab-runner >/dev/null && echo yes", check=False)
            active = vm.sh("systemctl is-active gitlab-runner", check=False) == "active"
            wanted = installed != "yes" or not active
            assert (f"provision-host:@{name}" in actions) is wanted
        assert owned["token"] not in proc.stdout + proc.stderr
        # nothing written: the file on vm-a unchanged, none on vm-b, no runner created
        assert vm_a.sh(f"stat -c %Y.%s {config}") == before
        assert vm_b.sh(f"test -e {config} && echo present", check=False) == ""
        assert gl.http_list("/runners/all", get_all=True) == runners_before
    finally:
        vm_a.sh(f"rm -rf {where}")
        for r in (owned, foreign):
            gl.http_delete(f"/runners/{r['id']}")
