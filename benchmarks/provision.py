"""How long `host provision` takes: 1 host, 3 hosts in parallel, and the idempotent re-run.

Starts fresh stand-in VMs (systemd + sshd containers from the hosts tests' image), provisions
one host, then three others in one run (forks=3), then re-runs on those three. Prints the wall
times and two ratios measured in the same run: 3 hosts against 1 (ideal: close to 1, the
hosts are provisioned in parallel) and re-run against first run (the idempotent re-run
should be much cheaper: nothing is installed or copied).

Usage: .venv/bin/python benchmarks/provision.py
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.hostlab import (  # noqa: E402 (after the path setup)
    BASE,
    COSIGN,
    HERE,
    IMAGE,
    RUN_FLAGS,
    STANDIN,
    VmHost,
    _ensure_base,
    _wait_for_sshd,
    docker,
)


def start_hosts(prefix: str, names: list[str], public: str) -> list[VmHost]:
    hosts = []
    for name in names:
        container = f"{prefix}-{name}"
        docker("run", "-d", "--name", container, *RUN_FLAGS, IMAGE)
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container)
        hosts.append(VmHost(name, container, ip))
    for host in hosts:
        _wait_for_sshd(host, time.monotonic() + 60)
        host.sh(
            f"echo '{public}' > /home/ops/.ssh/authorized_keys && "
            "chown ops:ops /home/ops/.ssh/authorized_keys"
        )
    return hosts


def timed(hosts: list[VmHost], key: Path, work: Path, extra: dict[str, Any]) -> float:
    from provisioner.hosts.provision import ProvisionRequest, provision
    from provisioner.ssh import SSHOptions, SSHTarget

    request = ProvisionRequest(
        targets=tuple(SSHTarget.parse(f"ops@{h.ip}") for h in hosts),
        ssh=SSHOptions(key_file=key, known_hosts=work / "known_hosts", accept_new=True),
        extra_vars=extra,
        forks=len(hosts),
        artifacts_root=work / "runs",
    )
    start = time.perf_counter()
    result = provision(request)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"provisioning failed: {result.hosts} (artifacts: {result.artifacts})")
    changed = sum(r.changed for r in result.hosts)
    print(f"  {len(hosts)} host(s): {elapsed:6.1f} s, {changed} changed tasks in total")
    return elapsed


def main() -> int:
    from provisioner.ssh import generate_key

    _ensure_base()
    docker("build", "-q", "--build-arg", f"BASE={BASE}", "-t", IMAGE, str(HERE))
    prefix = f"rctl-hostbench-{os.getpid()}"
    extra = {
        "docker_daemon_options": {"storage-driver": "vfs", "iptables": False, "bridge": "none"},
        "cosign_src": str(COSIGN),
        "gitlab_runner_install_method": "binary",
        "gitlab_runner_binary_src": str(STANDIN),
        "gitlab_runner_binary_sha256": hashlib.sha256(STANDIN.read_bytes()).hexdigest(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = work / "id_ed25519"
        public = generate_key(key)
        hosts: list[VmHost] = []
        try:
            hosts = start_hosts(prefix, ["one", "a", "b", "c"], public)
            print("first run (fresh hosts):")
            one = timed(hosts[:1], key, work, extra)
            three = timed(hosts[1:], key, work, extra)
            print("idempotent re-run:")
            rerun = timed(hosts[1:], key, work, extra)
        finally:
            for host in hosts:
                docker("rm", "-f", host.container, check=False)
    print(f"3 hosts vs 1 host (first run): {three / one:.2f}x")
    print(f"re-run vs first run (3 hosts): {rerun / three:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
