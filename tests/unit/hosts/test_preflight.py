"""Preflight checks against a scripted shell: verdicts and fixes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from provisioner.checks import Verdict
from provisioner.errors import UsageError
from provisioner.hosts.preflight import (
    ArchCheck,
    ClockCheck,
    DiskCheck,
    DockerGroupCheck,
    GitLabReachCheck,
    HostChecked,
    OsCheck,
    SudoCheck,
    check_host,
    default_checks,
    preflight,
)
from provisioner.ssh import CommandResult, SSHError, SSHFailure, SSHTarget

Handler = Callable[[str], CommandResult]


class FakeShell:
    """Answers commands by the first matching prefix; records what ran."""

    def __init__(self, answers: dict[str, CommandResult]) -> None:
        self.answers = answers
        self.ran: list[str] = []
        self.closed = False

    def _answer(self, command: str) -> CommandResult:
        self.ran.append(command)
        for needle, result in self.answers.items():
            if needle in command:
                return result
        return CommandResult(127, "", "not found")

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        return self._answer(command)

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        return self._answer("SUDO " + command)

    def close(self) -> None:
        self.closed = True


def ok(out: str = "") -> CommandResult:
    return CommandResult(0, out, "")


TARGET = SSHTarget("10.0.0.5", "ops")
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def test_sudo_passes_and_fails_with_a_fix() -> None:
    assert SudoCheck("ops").run(FakeShell({"SUDO id -u": ok("0\n")})).verdict is Verdict.PASS
    refused = CommandResult(1, "", "sudo: a password is required\n")
    finding = SudoCheck("ops").run(FakeShell({"SUDO id -u": refused}))
    assert finding.verdict is Verdict.FAIL
    assert "a password is required" in finding.evidence
    assert "ops ALL=(ALL) NOPASSWD:ALL" in finding.fix
    assert "--become-password-file" in finding.fix


@pytest.mark.parametrize(
    ("release", "status"),
    [
        (OS_RELEASE, Verdict.PASS),
        ('ID=ubuntu\nVERSION_ID="24.04"\n', Verdict.PASS),
        ('ID=ubuntu\nVERSION_ID="18.04"\n', Verdict.FAIL),
        ('ID=centos\nVERSION_ID="9"\n', Verdict.FAIL),
    ],
)
def test_os_versions(release: str, status: Verdict) -> None:
    finding = OsCheck().run(FakeShell({"os-release": ok(release)}))
    assert finding.verdict is status
    if status is Verdict.FAIL:
        assert "debian 11, 12, 13" in finding.fix


def test_arch() -> None:
    assert ArchCheck().run(FakeShell({"uname": ok("aarch64\n")})).evidence == "aarch64 (arm64)"
    assert ArchCheck().run(FakeShell({"uname": ok("riscv64\n")})).verdict is Verdict.FAIL


def test_disk_reports_each_path_and_fails_below_the_minimum() -> None:
    df = "/dev/sda1 100 10 {free} 10% /\n"
    docker_root = ok("/srv/docker\n")
    plenty = FakeShell({"docker info": docker_root, "df -Pk": ok(df.format(free=20 * 1024**2) * 2)})
    finding = DiskCheck(min_free_gib=5).run(plenty)
    assert finding.verdict is Verdict.PASS
    assert "/srv/docker: 20.0 GiB free" in finding.evidence
    low = FakeShell({"docker info": docker_root, "df -Pk": ok(df.format(free=1024**2) * 2)})
    finding = DiskCheck(min_free_gib=5).run(low)
    assert finding.verdict is Verdict.FAIL
    assert "/, /srv/docker" in finding.fix


def test_clock_skew() -> None:
    shell = FakeShell({"date": ok("1000.5\n")})
    assert ClockCheck(now=lambda: 1000.0).run(shell).verdict is Verdict.PASS
    finding = ClockCheck(now=lambda: 900.0).run(shell)
    assert finding.verdict is Verdict.FAIL
    assert "+100.5s" in finding.evidence
    assert "timedatectl set-ntp true" in finding.fix


@pytest.mark.parametrize(
    ("answer", "prefix", "fix"),
    [
        ({"stage": "ok"}, "http", ""),
        ({"stage": "dns", "error": "gaierror"}, "DNS:", "resolv.conf"),
        ({"stage": "tcp", "addrs": ["10.1.1.1"], "error": "refused"}, "TCP:", "firewall"),
        ({"stage": "tls", "error": "CERTIFICATE_VERIFY_FAILED"}, "TLS:", "update-ca-certificates"),
    ],
)
def test_gitlab_reach_stages(answer: dict[str, object], prefix: str, fix: str) -> None:
    shell = FakeShell({"python3 -c": ok(json.dumps(answer) + "\n")})
    finding = GitLabReachCheck("https://gitlab.example.test").run(shell)
    assert finding.evidence.startswith(prefix)
    assert fix in finding.fix
    assert "'https://gitlab.example.test'" in shell.ran[0] or "https://gitlab" in shell.ran[0]


def test_docker_group() -> None:
    assert DockerGroupCheck().run(FakeShell({})).verdict is Verdict.SKIP
    member = FakeShell({"id -nG": ok("gitlab-runner docker\n")})
    assert DockerGroupCheck().run(member).verdict is Verdict.PASS
    outsider = DockerGroupCheck().run(FakeShell({"id -nG": ok("gitlab-runner\n")}))
    assert outsider.verdict is Verdict.FAIL
    assert "usermod -aG docker gitlab-runner" in outsider.fix


def test_a_failed_connection_skips_the_other_checks_with_the_ssh_fix() -> None:
    def refuse(target: SSHTarget) -> FakeShell:
        raise SSHError("key refused", kind=SSHFailure.AUTH, hint="install the key")

    report = check_host(TARGET, connect=refuse, checks=[OsCheck(), ArchCheck()])
    assert not report.ok
    assert [(f.check, f.verdict) for f in report.findings] == [
        ("ssh", Verdict.FAIL),
        ("os", Verdict.SKIP),
        ("arch", Verdict.SKIP),
    ]
    assert report.findings[0].fix == "install the key"

    def unknown(target: SSHTarget) -> FakeShell:
        raise SSHError("unknown", kind=SSHFailure.HOST_KEY_UNKNOWN, hint="--accept-new")

    assert check_host(TARGET, connect=unknown, checks=[OsCheck()]).findings[0].check == "host-key"


def test_preflight_runs_every_host_and_closes_sessions() -> None:
    shells: list[FakeShell] = []

    def connect(target: SSHTarget) -> FakeShell:
        shell = FakeShell({"os-release": ok(OS_RELEASE if target.host == "good" else "ID=arch\n")})
        shells.append(shell)
        return shell

    seen: list[HostChecked] = []
    result = preflight(
        [SSHTarget("good", "ops"), SSHTarget("bad", "ops")],
        connect=connect,
        checks_for=lambda _t: [OsCheck()],
        on_host=seen.append,
    )
    assert [r.ok for r in result.hosts] == [True, False]
    assert not result.ok
    assert all(s.closed for s in shells)
    # Each host is reported once, as soon as its checks are done (in any order).
    assert sorted(e.report.target.host for e in seen) == ["bad", "good"]


def test_default_checks_and_bad_input() -> None:
    names = [c.name for c in default_checks(TARGET, gitlab_url=None, with_password=False)]
    assert names == ["sudo", "os", "arch", "python3", "disk", "clock", "docker-group"]
    with_url = default_checks(TARGET, gitlab_url="https://g.test", with_password=True)
    assert "gitlab" in [c.name for c in with_url]
    with pytest.raises(UsageError):
        default_checks(TARGET, gitlab_url="gitlab.test", with_password=False)
    with pytest.raises(UsageError):
        preflight([], connect=lambda _t: FakeShell({}), checks_for=lambda _t: [OsCheck()])
    with pytest.raises(UsageError):
        check_host(TARGET, connect=lambda _t: FakeShell({}), checks=[])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ops@10.0.0.5", ("10.0.0.5", "ops", 22)),
        ("ops@vm1:2222", ("vm1", "ops", 2222)),
        ("root@[fe80::1]:22", ("fe80::1", "root", 22)),
    ],
)
def test_target_parse(text: str, expected: tuple[str, str, int]) -> None:
    target = SSHTarget.parse(text)
    assert (target.host, target.user, target.port) == expected


def test_target_parse_defaults_and_errors() -> None:
    assert SSHTarget.parse("vm1", default_user="deploy").user == "deploy"
    assert str(SSHTarget("vm1", "ops", 2222)) == "ops@vm1:2222"
    assert SSHTarget("vm1", "ops", 2222).known_hosts_name == "[vm1]:2222"
    for bad in ("ops@", "ops@vm1:0", "ops@vm1:x", "ops@vm 1"):
        with pytest.raises(UsageError):
            SSHTarget.parse(bad)
