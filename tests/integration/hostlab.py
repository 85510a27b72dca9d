"""The session's three stand-in VMs: containers running systemd and sshd, from the local base image.

The integration conftest imports these fixtures, so the hosts, fleet and doctor tests share one
set of hosts and one bridge sandbox per session.

They run with ``--cap-add SYS_ADMIN --security-opt seccomp=unconfined --cgroupns=host`` and
the host's cgroup tree mounted read-write (``--privileged`` fails on these machines), on the
default bridge; the tests reach them by their bridge address with a throwaway ed25519 key.
Everything the tests create is named ``rctl-hosttest-<pid>-*`` and removed at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until

HERE = Path(__file__).resolve().parent / "hosts"
BASE = "runnerctl/base:bookworm"
IMAGE = "runnerctl-hosttest/host:bookworm"
STANDIN = HERE / "gitlab-runner-standin"
COSIGN = Path("~/.cache/runnerctl/cosign/2.5.0/cosign").expanduser()
RUN_FLAGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
]


def docker(*args: str, check: bool = True, timeout: float = 600) -> str:
    """Run the docker CLI and return stdout."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclass
class VmHost:
    """One running stand-in VM."""

    name: str
    container: str
    ip: str

    def target(self, user: str = "ops") -> str:
        return f"{user}@{self.ip}"

    def sh(self, script: str, *, check: bool = True) -> str:
        """Run a shell script as root inside the host (test setup and assertions only)."""
        return docker("exec", self.container, "sh", "-c", script, check=check)


@dataclass
class Lab:
    """The hosts plus the SSH material the tests use."""

    hosts: list[VmHost]
    key: Path
    wrong_key: Path
    known_hosts: Path
    home: Path
    vars_file: Path

    def ssh_args(self, *, accept_new: bool = True) -> list[str]:
        args = ["--key-file", str(self.key), "--known-hosts", str(self.known_hosts)]
        return [*args, "--accept-new"] if accept_new else args


def _ensure_base() -> None:
    if docker("images", "-q", BASE):
        return
    from provisioner.docker_api import DockerAPI
    from provisioner.images.base import build_base

    build_base("bookworm", docker=DockerAPI.from_env())


def _wait_for_sshd(host: VmHost, deadline: float) -> None:
    wait_until(
        lambda: host.sh("systemctl is-active ssh.service", check=False) == "active",
        timeout=max(deadline - time.monotonic(), 0),
        interval=0.3,
        message=f"sshd did not start in {host.container}",
    )


@pytest.fixture(scope="session")
def vm_lab() -> Iterator[Lab]:
    """The three VMs, started once per session (``lab`` where no other fixture is so named)."""
    from provisioner.ssh import generate_key

    _ensure_base()
    docker("build", "-q", "--build-arg", f"BASE={BASE}", "-t", IMAGE, str(HERE))
    # Not pytest's tmp_path: other pytest sessions on this machine prune old basetemp
    # directories, and the key must outlive minutes of provisioning.
    root = Path(tempfile.mkdtemp(prefix="rctl-hosttest-"))
    home = root / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "id_ed25519"
    public = generate_key(key)
    wrong_key = root / "wrong_key"
    generate_key(wrong_key)
    prefix = f"rctl-hosttest-{os.getpid()}"
    hosts: list[VmHost] = []
    try:
        for name in ("a", "b", "c"):
            container = f"{prefix}-{name}"
            docker("run", "-d", "--name", container, "--hostname", f"vm-{name}", *RUN_FLAGS, IMAGE)
            ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container)
            hosts.append(VmHost(name, container, ip))
        deadline = time.monotonic() + 60
        for host in hosts:
            _wait_for_sshd(host, deadline)
            for user in ("ops", "nosudo"):
                host.sh(
                    f"echo '{public}' > /home/{user}/.ssh/authorized_keys && "
                    f"chown {user}:{user} /home/{user}/.ssh/authorized_keys && "
                    f"chmod 600 /home/{user}/.ssh/authorized_keys"
                )
        standin_sha = hashlib.sha256(STANDIN.read_bytes()).hexdigest()
        vars_file = root / "vars.yml"
        # Docker inside the stand-in VMs: vfs storage, no iptables, no bridge (see docs/hosts.md).
        vars_file.write_text(
            "docker_daemon_options:\n"
            "  storage-driver: vfs\n"
            "  iptables: false\n"
            "  bridge: none\n"
            f"cosign_src: {COSIGN}\n"
            "gitlab_runner_install_method: binary\n"
            f"gitlab_runner_binary_src: {STANDIN}\n"
            f"gitlab_runner_binary_sha256: {standin_sha}\n"
        )
        yield Lab(hosts, key, wrong_key, home / ".ssh" / "known_hosts", home, vars_file)
    finally:
        for host in hosts:
            docker("rm", "-f", host.container, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(vm_lab: Lab) -> Lab:
    """The session's VMs under their usual name (packages with a `lab` of their own use vm_lab)."""
    return vm_lab


@pytest.fixture(scope="session")
def bridge_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A sandbox the VMs can reach: bound to the docker bridge's gateway address."""
    from provisioner.docker_api import DockerAPI
    from provisioner.sandbox import start_background

    gateway = DockerAPI.from_env().bridge_gateway()
    handle = start_background(tmp_path_factory.mktemp("bridge-sandbox"), host=gateway, port=0)
    try:
        yield handle
    finally:
        handle.stop()


# What the smoke pipeline's shell jobs need (its .python-job uses them when present).
SMOKE_TOOLS = ["build", "setuptools", "wheel", "twine", "pytest", "pytest-cov", "cryptography"]


def install_runnerctl(host: VmHost, tmp_path: Path) -> None:
    """runnerctl and the smoke tools on the host, from wheels fetched here (no PyPI there)."""
    repo = Path(__file__).resolve().parents[2]
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(repo)], check=True)
    download = [*pip, "download", "-d", str(wheels), "--only-binary=:all:"]
    subprocess.run([*download, str(repo), *SMOKE_TOOLS], check=True)
    docker("cp", str(wheels), f"{host.container}:/tmp/wheels")
    host.sh(
        "python3 -m venv /opt/runnerctl && /opt/runnerctl/bin/pip install -q --no-index "
        f"--find-links /tmp/wheels runnerctl {' '.join(SMOKE_TOOLS)} && "
        "ln -sf /opt/runnerctl/bin/runnerctl /usr/local/bin/runnerctl"
    )
