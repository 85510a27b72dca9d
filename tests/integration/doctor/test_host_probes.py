"""doctor's host probes over real SSH, on a stand-in VM provisioned as a runner host.

The hosts tests run first and leave the VMs provisioned (gitlab-runner's stand-in service,
docker, the gitlab-runner user in the docker group); run alone, this module provisions the one
VM it uses. It never touches the VM's own config.toml: the runner entry it probes is written to
a scratch directory on the VM, removed at the end, with a token created in the bridge sandbox.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import run_runnerctl

# The session's VMs are `vm_lab` here: the package conftest's `lab` is the stand-in runner lab.
from tests.integration.hostlab import Lab, VmHost

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]

LOG = (
    "Running with gitlab-runner 17.11.0\n"
    "$ docker build -t app .\n"
    "permission denied while trying to connect to the Docker daemon socket at "
    'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/info": '
    "dial unix /var/run/docker.sock: connect: permission denied\n"
    "ERROR: Job failed: exit code 1\n"
)


def _provisioned(host: VmHost) -> bool:
    return host.sh("systemctl is-active gitlab-runner", check=False) == "active"


def _provision(vms: Lab, host: VmHost) -> None:
    from provisioner.hosts.provision import ProvisionRequest, load_vars, provision
    from provisioner.ssh import SSHOptions, SSHTarget

    request = ProvisionRequest(
        targets=(SSHTarget.parse(host.target()),),
        ssh=SSHOptions(key_file=vms.key, known_hosts=vms.known_hosts, accept_new=True),
        extra_vars=load_vars(vms.vars_file),
        artifacts_root=vms.home / "artifacts",
    )
    result = provision(request)
    assert result.ok, result.hosts


@pytest.fixture(scope="module")
def vm(vm_lab: Lab) -> VmHost:
    """Host b, a runner host (provisioned here only when this module runs alone)."""
    host = vm_lab.hosts[1]
    if not _provisioned(host):
        _provision(vm_lab, host)
    # known_hosts in the lab's HOME, where runnerctl --host looks (accepting the key once).
    proc = run_runnerctl(
        "host", "check", host.target(), *vm_lab.ssh_args(), "-o", "json", timeout=120
    )
    assert '"hosts"' in proc.stdout, proc.stderr
    return host


@pytest.fixture
def scratch(vm: VmHost) -> Iterator[str]:
    """A directory on the VM for this test's config.toml and builds dir; removed afterwards."""
    path = f"/tmp/rctl-doctor-{os.getpid()}-{secrets.token_hex(3)}"
    vm.sh(f"mkdir -m 0755 {path}")  # config.toml in it is 0600
    try:
        yield path
    finally:
        vm.sh(f"rm -rf {path}")


def _runner_token(sandbox: Any) -> str:
    answer = requests.post(
        f"{sandbox.url}/api/v4/user/runners",
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        data={"runner_type": "instance_type", "description": "doctor-host-probes"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["token"])


DROP_IN = "/run/systemd/system/gitlab-runner.service.d/rctl-doctor.conf"


def _journal_line(vm: VmHost, text: str) -> None:
    """Make gitlab-runner.service log ``text`` itself, as its first line on a restart.

    A runtime drop-in (in /run) adds ``ExecStartPre=/bin/echo TEXT``: systemd gives the
    command the unit's journal stream, as it does gitlab-runner's own output. The drop-in is
    removed again at once; the service keeps running from its unchanged unit file.
    """
    vm.sh(
        f"mkdir -p {Path(DROP_IN).parent} && "
        "printf '[Service]\\nSyslogIdentifier=gitlab-runner\\nExecStartPre=/bin/echo \"%s\"\\n' "
        f"'{text}' > {DROP_IN} && "
        "systemctl daemon-reload && systemctl restart gitlab-runner"
    )
    vm.sh(f"rm -f {DROP_IN} && systemctl daemon-reload")
    assert vm.sh("systemctl is-active gitlab-runner") == "active"


def test_doctor_probes_a_real_host_over_ssh(
    vm_lab: Lab,
    vm: VmHost,
    scratch: str,
    bridge_sandbox: Any,
    tmp_path: Path,
) -> None:
    token = _runner_token(bridge_sandbox)
    builds = f"{scratch}/builds"
    vm.sh(f"mkdir -m 0750 {builds} && chown gitlab-runner:gitlab-runner {builds}")
    config = (
        "concurrent = 1\n\n[[runners]]\n"
        f'name = "vm-doctor"\nurl = "{bridge_sandbox.url}"\ntoken = "{token}"\n'
        f'executor = "shell"\nbuilds_dir = "{builds}"\n'
    )
    vm.sh(f"cat > {scratch}/config.toml <<'EOF'\n{config}EOF\nchmod 600 {scratch}/config.toml")
    marker = f"doctor-{secrets.token_hex(4)}"
    _journal_line(vm, f"ERROR: Checking for jobs... forbidden  runner={marker}")
    log = tmp_path / "job.log"
    log.write_text(LOG)
    env = {**os.environ, "HOME": str(vm_lab.home)}
    proc = run_runnerctl(
        "-o", "json", "doctor", "--log", str(log), "--host", vm.target(),
        "--config", f"{scratch}/config.toml", "--ssh-key", str(vm_lab.key),
        "--job-user", "gitlab-runner", "--job-user", "nosudo",
        env=env, timeout=90,
    )  # fmt: skip
    assert proc.returncode == 10, proc.stderr
    assert token not in proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["runner"] == "vm-doctor"
    probes = {p["probe"]: p for p in document["probes"]}

    # The builds dir as the probe saw it on the VM: owner, mode, and ops may not write there.
    builds_probe = probes["builds_dir@host"]
    assert builds_probe["verdict"] == "fail"
    assert builds_probe["evidence"].startswith(
        f"{builds} (exists): owner gitlab-runner, mode 0o750, "
    )
    assert builds_probe["evidence"].endswith(", not writable by ops")

    # The docker socket: gitlab-runner is in the docker group; nosudo and ops (the login) are not.
    socket = probes["docker_socket@host"]
    assert socket["verdict"] == "fail"
    assert socket["evidence"] == (
        "/var/run/docker.sock root:docker 0o660; "
        "usable by gitlab-runner; cannot be used by nosudo, ops"
    )
    assert socket["fix"] == "usermod -aG docker nosudo (then restart the runner)"

    # The token verifies against the bridge sandbox (from here; never sent to the VM).
    assert probes["verify@host"]["verdict"] == "pass"
    assert probes["verify@host"]["evidence"] == "POST /runners/verify: vm-doctor: valid"

    # The runner's journal was read over SSH, and its own message is a runner-log finding.
    journal = probes["journal@host"]
    assert journal["verdict"] == "pass", journal
    assert (
        "journalctl --unit=gitlab-runner.service -n 200 --no-pager --output=short-iso"
        in (journal["evidence"])
    )
    by_id = {f["id"]: f for f in document["findings"]}
    runner_log = by_id["checking-for-jobs-forbidden"]
    assert runner_log["source"] == "runner-log"
    quoted = (  # the journal line as journalctl --output=short-iso prints it
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} vm-b gitlab-runner\[\d+\]: "
        + re.escape(f"ERROR: Checking for jobs... forbidden  runner={marker}")
    )
    assert re.fullmatch(quoted, runner_log["evidence"]["text"]), runner_log
    # ... refuted by the verify probe: the token in this config.toml is valid.
    assert runner_log["confidence"] == "probe-refuted"

    # The job log's own finding comes first, confirmed by the socket probe.
    best = document["findings"][0]
    assert (best["id"], best["source"]) == ("docker-sock-permission-denied", "job-log")
    assert best["confidence"] == "probe-confirmed"


def test_the_container_probe_runs_on_the_remote_host(
    vm_lab: Lab,
    vm: VmHost,
    scratch: str,
    bridge_sandbox: Any,
    tmp_path: Path,
) -> None:
    """docker executor: the probe's container is run by the VM's docker, over SSH."""
    image = "runnerctl/base:bookworm"  # has python3; loaded into the VM's docker, then removed
    loaded = vm.sh(f"docker image inspect {image} >/dev/null 2>&1 && echo yes", check=False)
    if loaded != "yes":
        with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
            subprocess.run(
                ["docker", "exec", "-i", vm.container, "docker", "load", "-q"],
                stdin=save.stdout,
                check=True,
                capture_output=True,
                timeout=300,
            )
        assert save.returncode == 0
    try:
        config = (
            "concurrent = 1\n\n[[runners]]\n"
            f'name = "vm-docker"\nurl = "{bridge_sandbox.url}"\ntoken = "glrt-NotRegistered0000"\n'
            f'executor = "docker"\n[runners.docker]\nimage = "{image}"\nnetwork_mode = "host"\n'
        )
        vm.sh(f"cat > {scratch}/config.toml <<'EOF'\n{config}EOF\nchmod 600 {scratch}/config.toml")
        log = tmp_path / "job.log"
        log.write_text(LOG)
        proc = run_runnerctl(
            "-o", "json", "doctor", "--log", str(log), "--host", vm.target(),
            "--config", f"{scratch}/config.toml", "--ssh-key", str(vm_lab.key),
            env={**os.environ, "HOME": str(vm_lab.home)}, timeout=90,
        )  # fmt: skip
        assert proc.returncode == 10, proc.stderr
        probes = {p["probe"]: p for p in json.loads(proc.stdout)["probes"]}
        # The VMs' docker (vfs, no bridge, no iptables, inside a container) cannot create a
        # container's network sandbox: the run got that far on the VM, with config.toml's image
        # and network, through sudo (ops is not in the docker group), and is reported as a
        # skipped probe with docker's own message; the host is probed all the same.
        skipped = probes["container"]
        assert skipped["verdict"] == "skip"
        assert skipped["evidence"].startswith(
            f"the container probe failed on {vm.target()} "
            f"(docker run --rm -i --network host {image} python3 -): "
            "docker: Error response from daemon: "
        ), skipped
        assert not [p for p in probes if p.endswith("@container")]
        assert probes["dns@host"]["verdict"] == "pass"
        assert probes["verify@host"]["verdict"] == "fail"  # that token was never registered
        assert vm.sh("docker ps -aq") == ""  # nothing left behind
    finally:
        if loaded != "yes":
            vm.sh(f"docker rmi -f {image} >/dev/null")
