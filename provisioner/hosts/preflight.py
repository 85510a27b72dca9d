"""``host check``: can this VM host a runner, and if not, what exactly to fix.

Every check is a :class:`~provisioner.checks.Check` of a connected host: one method that
returns a :class:`~provisioner.checks.CheckResult` with a concrete fix when it fails. Adding a
check means adding one class to :func:`default_checks`. The SSH connection itself
(reachability, auth, host key) is the first finding; when it fails, the other checks are
reported as skipped.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from provisioner.checks import AllOf, Check, CheckResult, Verdict, aggregate
from provisioner.errors import UsageError
from provisioner.events import Event, Reporter
from provisioner.ssh import CommandResult, SSHError, SSHFailure, SSHTarget

#: (OS id, version) pairs the playbooks support.
SUPPORTED_OS: dict[str, tuple[str, ...]] = {
    "debian": ("11", "12", "13"),
    "ubuntu": ("20.04", "22.04", "24.04"),
}
SUPPORTED_ARCH: dict[str, str] = {"x86_64": "amd64", "aarch64": "arm64"}
RUNNER_USER = "gitlab-runner"


class Shell(Protocol):
    """What checks need from a connected host (:class:`provisioner.ssh.SSHSession` fits)."""

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        """Run a command as the login user."""
        ...

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        """Run a command as root."""
        ...


#: A preflight check: looks at a connected host.
HostCheck = Check[Shell]


@dataclass(frozen=True)
class HostReport:
    """Every finding for one host."""

    target: SSHTarget
    findings: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return aggregate(self.findings) is not Verdict.FAIL


@dataclass(frozen=True)
class HostChecked(Event):
    """Progress of ``preflight``: one host's report, as soon as it is complete."""

    report: HostReport


@dataclass(frozen=True)
class PreflightResult:
    """The reports of all hosts, in the order given."""

    hosts: tuple[HostReport, ...]

    @property
    def ok(self) -> bool:
        """True when every host passed."""
        return all(h.ok for h in self.hosts)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class SudoCheck:
    """Ansible needs root: passwordless sudo, or a become password that works."""

    user: str
    with_password: bool = False
    name: str = "sudo"

    def run(self, host: Shell) -> CheckResult:
        result = host.sudo("id -u")
        if result.ok and result.stdout.strip() == "0":
            how = "with the become password" if self.with_password else "passwordless"
            return CheckResult(self.name, Verdict.PASS, f"sudo works ({how})")
        reason = (result.stderr.strip().splitlines() or ["sudo refused"])[-1]
        if self.with_password:
            fix = (
                f"Check the password in --become-password-file, or give {self.user} "
                f"passwordless sudo: echo '{self.user} ALL=(ALL) NOPASSWD:ALL' | "
                f"sudo tee /etc/sudoers.d/{self.user}"
            )
        else:
            fix = (
                f"Give {self.user} passwordless sudo: echo '{self.user} ALL=(ALL) NOPASSWD:ALL'"
                f" | sudo tee /etc/sudoers.d/{self.user} && sudo chmod 0440 "
                f"/etc/sudoers.d/{self.user}; or pass --become-password-file FILE"
            )
        return CheckResult(self.name, Verdict.FAIL, f"sudo as {self.user} failed: {reason}", fix)


@dataclass(frozen=True)
class OsCheck:
    """Debian 11-13 or Ubuntu 20.04-24.04, which the playbooks support."""

    name: str = "os"

    def run(self, host: Shell) -> CheckResult:
        result = host.run("cat /etc/os-release")
        values: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"')
        os_id, version = values.get("ID", "?"), values.get("VERSION_ID", "?")
        pretty = values.get("PRETTY_NAME", f"{os_id} {version}")
        if version in SUPPORTED_OS.get(os_id, ()):
            return CheckResult(self.name, Verdict.PASS, pretty)
        supported = "; ".join(f"{k} {', '.join(v)}" for k, v in SUPPORTED_OS.items())
        return CheckResult(
            self.name,
            Verdict.FAIL,
            f"unsupported OS: {pretty}",
            f"Use a VM image of {supported}.",
        )


@dataclass(frozen=True)
class ArchCheck:
    """gitlab-runner and cosign are shipped for amd64 and arm64."""

    name: str = "arch"

    def run(self, host: Shell) -> CheckResult:
        machine = host.run("uname -m").stdout.strip()
        if machine in SUPPORTED_ARCH:
            return CheckResult(self.name, Verdict.PASS, f"{machine} ({SUPPORTED_ARCH[machine]})")
        return CheckResult(
            self.name,
            Verdict.FAIL,
            f"unsupported architecture: {machine or 'unknown'}",
            "Use an x86_64 or aarch64 VM.",
        )


@dataclass(frozen=True)
class PythonCheck:
    """Ansible's modules run with the host's python3."""

    name: str = "python3"

    def run(self, host: Shell) -> CheckResult:
        result = host.run("python3 -c 'import sys; print(sys.version.split()[0])'")
        if result.ok:
            return CheckResult(self.name, Verdict.PASS, f"python3 {result.stdout.strip()}")
        return CheckResult(
            self.name,
            Verdict.FAIL,
            "python3 not found (Ansible needs it on the host)",
            "sudo apt-get install -y python3",
        )


@dataclass(frozen=True)
class DiskCheck:
    """Free space on / and on Docker's data root (images and build caches live there)."""

    min_free_gib: float = 5.0
    name: str = "disk"

    def run(self, host: Shell) -> CheckResult:
        root_dir = host.run("docker info -f '{{.DockerRootDir}}' 2>/dev/null").stdout.strip()
        paths = ["/", root_dir or "/var/lib/docker"]
        script = "; ".join(
            f'p={shlex.quote(p)}; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
            f'df -Pk "$p" | tail -1'
            for p in paths
        )
        result = host.run(script)
        lines = result.stdout.strip().splitlines()
        if not result.ok or len(lines) != len(paths):
            return CheckResult(
                self.name, Verdict.FAIL, "cannot read free disk space", "Check `df`."
            )
        low: list[str] = []
        seen: list[str] = []
        for path, line in zip(paths, lines, strict=True):
            free_gib = int(line.split()[3]) / 1024 / 1024
            seen.append(f"{path}: {free_gib:.1f} GiB free")
            if free_gib < self.min_free_gib:
                low.append(path)
        detail = "; ".join(seen)
        if low:
            return CheckResult(
                self.name,
                Verdict.FAIL,
                detail,
                f"Free at least {self.min_free_gib:g} GiB on {', '.join(low)} (docker system "
                "prune, journalctl --vacuum-size) or grow the disk.",
            )
        return CheckResult(self.name, Verdict.PASS, detail)


@dataclass(frozen=True)
class ClockCheck:
    """TLS and token expiry break when the host's clock is off by more than a minute."""

    max_skew: float = 60.0
    now: Callable[[], float] = time.time
    name: str = "clock"

    def run(self, host: Shell) -> CheckResult:
        before = self.now()
        result = host.run("date +%s.%N")
        after = self.now()
        try:
            remote = float(result.stdout.strip())
        except ValueError:
            return CheckResult(
                self.name, Verdict.FAIL, "cannot read the host clock", "Check `date`."
            )
        skew = remote - (before + after) / 2
        detail = f"skew {skew:+.1f}s against this machine"
        if abs(skew) > self.max_skew:
            return CheckResult(
                self.name,
                Verdict.FAIL,
                detail,
                "Enable time sync on the host: sudo timedatectl set-ntp true (systemd-timesyncd "
                "or chrony).",
            )
        return CheckResult(self.name, Verdict.PASS, detail)


# Runs on the host with its python3: DNS, then TCP, then TLS with the host's CA store.
_REACH_SCRIPT = r"""
import json, socket, ssl, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
out = {"stage": "dns"}
try:
    addrs = sorted({a[4][0] for a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    out.update(stage="tcp", addrs=addrs)
    s = socket.create_connection((host, port), timeout=float(sys.argv[2]))
    if u.scheme == "https":
        out["stage"] = "tls"
        s = ssl.create_default_context().wrap_socket(s, server_hostname=host)
    s.close()
    out["stage"] = "ok"
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


@dataclass(frozen=True)
class GitLabReachCheck:
    """The runner polls GitLab from the host: DNS, TCP and the TLS chain must work there."""

    url: str
    timeout: float = 5.0
    name: str = "gitlab"

    def run(self, host: Shell) -> CheckResult:
        command = (
            f"python3 -c {shlex.quote(_REACH_SCRIPT)} {shlex.quote(self.url)} {self.timeout:g}"
        )
        result = host.run(command, timeout=self.timeout * 3 + 10)
        try:
            doc = json.loads(result.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return CheckResult(
                self.name,
                Verdict.FAIL,
                f"could not test {self.url} from the host",
                "Install python3 on the host (the check runs with it).",
            )
        stage, error = doc.get("stage"), doc.get("error", "")
        if stage == "ok":
            return CheckResult(self.name, Verdict.PASS, f"{self.url} reachable from the host")
        if stage == "dns":
            return CheckResult(
                self.name,
                Verdict.FAIL,
                f"DNS: the host cannot resolve {self.url} ({error})",
                "Fix the host's resolver (/etc/resolv.conf, systemd-resolved) or add the name "
                "to /etc/hosts.",
            )
        if stage == "tcp":
            addrs = ", ".join(doc.get("addrs", []))
            return CheckResult(
                self.name,
                Verdict.FAIL,
                f"TCP: cannot connect to {self.url} ({addrs}): {error}",
                "Open the route from the host to GitLab (firewall, security group, proxy: set "
                "HTTPS_PROXY for the gitlab-runner service) and check the URL and port.",
            )
        return CheckResult(
            self.name,
            Verdict.FAIL,
            f"TLS: {self.url}: {error}",
            "Install GitLab's CA on the host (copy it to /usr/local/share/ca-certificates/ and "
            "run update-ca-certificates), or set tls-ca-file for the runner.",
        )


@dataclass(frozen=True)
class DockerGroupCheck:
    """The runner user must be in the docker group for the docker executor (once installed)."""

    user: str = RUNNER_USER
    name: str = "docker-group"

    def run(self, host: Shell) -> CheckResult:
        result = host.run(f"id -nG {shlex.quote(self.user)}")
        if not result.ok:
            return CheckResult(
                self.name,
                Verdict.SKIP,
                f"user {self.user} does not exist yet (host provision creates it)",
            )
        if "docker" in result.stdout.split():
            return CheckResult(self.name, Verdict.PASS, f"{self.user} is in the docker group")
        return CheckResult(
            self.name,
            Verdict.FAIL,
            f"{self.user} is not in the docker group: jobs get 'permission denied' on "
            "/var/run/docker.sock",
            f"sudo usermod -aG docker {self.user} && sudo systemctl restart gitlab-runner "
            "(or run `runnerctl host provision`)",
        )


def default_checks(
    target: SSHTarget, *, gitlab_url: str | None, with_password: bool, min_free_gib: float = 5.0
) -> tuple[HostCheck, ...]:
    """The standard catalogue, in the order they are reported."""
    checks: list[HostCheck] = [
        SudoCheck(target.user, with_password=with_password),
        OsCheck(),
        ArchCheck(),
        PythonCheck(),
        DiskCheck(min_free_gib=min_free_gib),
        ClockCheck(),
    ]
    if gitlab_url:
        if not gitlab_url.startswith(("http://", "https://")):
            raise UsageError(
                f"not a URL: {gitlab_url!r}", hint="Pass --gitlab-url https://gitlab.example.com"
            )
        checks.append(GitLabReachCheck(gitlab_url))
    checks.append(DockerGroupCheck())
    return tuple(checks)


# --------------------------------------------------------------------------- orchestration

ConnectFn = Callable[[SSHTarget], Shell]
_HOST_KEY = (SSHFailure.HOST_KEY_UNKNOWN, SSHFailure.HOST_KEY_CHANGED)


def check_host(target: SSHTarget, *, connect: ConnectFn, checks: Sequence[HostCheck]) -> HostReport:
    """Connect, then run every check; a failed connection makes the others skipped."""
    every = AllOf(checks)
    try:
        host = connect(target)
    except SSHError as exc:
        name = "host-key" if exc.kind in _HOST_KEY else "ssh"
        first = CheckResult(name, Verdict.FAIL, exc.message, exc.hint or "")
        return HostReport(target, (first, *every.skipped("not run: no SSH session")))
    connected = CheckResult("ssh", Verdict.PASS, f"connected as {target.user}")
    try:
        return HostReport(target, (connected, *every.results(host)))
    finally:
        close = getattr(host, "close", None)
        if callable(close):
            close()


def preflight(
    targets: Sequence[SSHTarget],
    *,
    connect: ConnectFn,
    checks_for: Callable[[SSHTarget], Sequence[HostCheck]],
    on_host: Reporter[HostChecked] | None = None,
) -> PreflightResult:
    """Check every host in parallel (a slow host does not hold the others up)."""
    from concurrent.futures import ThreadPoolExecutor

    if not targets:
        raise UsageError("no hosts given", hint="Name hosts as USER@HOST[:PORT].")

    def one(target: SSHTarget) -> HostReport:
        report = check_host(target, connect=connect, checks=checks_for(target))
        if on_host:
            on_host(HostChecked(report))
        return report

    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        reports = tuple(pool.map(one, targets))
    return PreflightResult(reports)
