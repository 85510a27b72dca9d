"""Live probes: what the job saw, checked where the job ran.

:mod:`provisioner.doctor.probe_script` gathers facts (DNS, TCP, TLS, proxy variables, builds and
cache directories, git's ``safe.directory``, the Docker socket, SELinux, clock skew) on the
runner host, locally or over SSH, and for the docker executor inside a throwaway container on
the runner's network. Each probe here is a :class:`~provisioner.checks.Check` over those facts;
:func:`judge` turns their results into confirmations or refutations of findings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from provisioner.checks import AllOf, CheckResult, Verdict
from provisioner.errors import HostError

#: Free space below which a directory is reported as nearly full.
LOW_SPACE = 1 << 30
LOW_INODES = 10_000
MAX_SKEW = 60.0


@dataclass(frozen=True)
class Facts:
    """What the probe script saw in one place (``where``: host or container)."""

    where: str
    data: Mapping[str, Any]
    token_checks: Mapping[str, bool | None] = field(default_factory=dict)

    def endpoint(self, key: str) -> Mapping[str, Any] | None:
        """The facts about ``url`` or ``clone_url``."""
        found = self.data.get("endpoints", {}).get(key)
        return found if isinstance(found, dict) else None


class Runner(Protocol):
    """Runs the probe script somewhere and returns its stdout."""

    def __call__(self, script: str) -> str: ...


def probe_source(request: Mapping[str, Any]) -> str:
    """The probe script with ``request`` (no secrets) written into it."""
    source = resources.files("provisioner.doctor").joinpath("probe_script.py").read_text("utf-8")
    literal = f"REQUEST: dict = json.loads({json.dumps(dict(request))!r})"
    return source.replace("REQUEST: dict = {}", literal, 1)


def local_runner(script: str) -> str:
    """Run the probe script with this interpreter on this machine."""
    done = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise HostError("the local probe failed", hint=done.stderr.strip()[-500:] or None)
    return done.stdout


def gather(run: Runner, request: Mapping[str, Any], *, where: str) -> Facts:
    """Run the probe script through ``run`` and parse its facts."""
    output = run(probe_source({**request, "where": where}))
    try:
        data = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise HostError(f"the {where} probe printed no facts", hint=output[-300:]) from exc
    return Facts(where=where, data=data)


# --------------------------------------------------------------------------- checks


def _fail(name: str, evidence: str, fix: str = "") -> CheckResult:
    return CheckResult(name, Verdict.FAIL, evidence, fix)


@dataclass(frozen=True)
class _Probe:
    name: str
    fn: Callable[[Facts], CheckResult]

    def run(self, subject: Facts) -> CheckResult:
        return self.fn(subject)


def _endpoints(facts: Facts) -> list[tuple[str, Mapping[str, Any]]]:
    return [(k, e) for k in ("url", "clone_url") if (e := facts.endpoint(k)) is not None]


def _dns(facts: Facts) -> CheckResult:
    seen = []
    for key, ep in _endpoints(facts):
        dns = ep.get("dns", {})
        if not dns.get("ok"):
            return _fail(
                "dns",
                f"{key} host {ep['host']} does not resolve on the {facts.where}: "
                f"{dns.get('error')}",
                f"Fix {key} in config.toml or the resolver.",
            )
        seen.append(f"{ep['host']} -> {', '.join(dns.get('addresses', []))}")
    if not seen:
        return CheckResult("dns", Verdict.SKIP, "no url in config.toml")
    return CheckResult("dns", Verdict.PASS, f"on the {facts.where}: " + "; ".join(seen))


def _tcp(facts: Facts) -> CheckResult:
    seen = []
    for key, ep in _endpoints(facts):
        tcp = ep.get("tcp")
        if tcp is None:
            continue
        if not tcp.get("ok"):
            return _fail(
                "tcp",
                f"{key} {ep['host']}:{ep['port']} from the {facts.where}: {tcp.get('error')}",
                "Open the firewall or fix the address.",
            )
        seen.append(f"{ep['host']}:{ep['port']} connects")
    if not seen:
        return CheckResult("tcp", Verdict.SKIP, "no reachable endpoint to connect to")
    return CheckResult("tcp", Verdict.PASS, f"on the {facts.where}: " + "; ".join(seen))


def _tls(facts: Facts) -> CheckResult:
    seen = []
    for key, ep in _endpoints(facts):
        tls = ep.get("tls")
        if tls is None:
            continue
        if not tls.get("ok"):
            cert = f"; certificate issuer: {tls.get('issuer')}, expires {tls.get('not_after')}"
            return _fail(
                "tls",
                f"TLS to {key} {ep['host']}:{ep['port']} with {tls.get('ca_file')} failed on the "
                f"{facts.where}: {tls.get('error')}" + (cert if tls.get("issuer") else ""),
                'Give the runner the CA: tls-ca-file = "/etc/gitlab-runner/certs/ca.crt".',
            )
        seen.append(f"{ep['host']} verified with {tls.get('ca_file')}")
    if not seen:
        return CheckResult("tls", Verdict.SKIP, "no https endpoint")
    return CheckResult("tls", Verdict.PASS, "; ".join(seen))


def _proxy(facts: Facts) -> CheckResult:
    proxy = facts.data.get("proxy") or {}
    if not proxy:
        return CheckResult("proxy", Verdict.SKIP, f"no proxy variables on the {facts.where}")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(proxy.items()))
    return CheckResult(
        "proxy",
        Verdict.WARN,
        f"the job would see {shown}",
        "Check NO_PROXY lists GitLab's host when GitLab is internal.",
    )


def _dir(name: str, key: str) -> Callable[[Facts], CheckResult]:
    def probe(facts: Facts) -> CheckResult:
        info = (facts.data.get("dirs") or {}).get(key)
        if not info:
            return CheckResult(name, Verdict.SKIP, f"no {key} directory configured")
        if "error" in info:
            return _fail(name, f"{info['path']}: {info['error']}")
        where = f"{info['path']} ({'exists' if info['exists'] else 'missing; parent'}): "
        state = (
            f"owner {info['owner']}, mode {info['mode']}, "
            f"{info['free_bytes'] // (1 << 20)} MiB and {info['free_inodes']} inodes free"
        )
        if not info.get("writable"):
            return _fail(
                name,
                where + state + f", not writable by {facts.data.get('user')}",
                f"chown the directory to the job user: chown -R <user> {info['path']}",
            )
        if info["free_bytes"] < LOW_SPACE or info["free_inodes"] < LOW_INODES:
            return _fail(name, where + state, "Free space: docker system prune, old builds.")
        return CheckResult(name, Verdict.PASS, where + state)

    return probe


def _safe_directory(facts: Facts) -> CheckResult:
    git = facts.data.get("git") or {}
    if "error" in git:
        return CheckResult("safe_directory", Verdict.SKIP, f"git: {git['error']}")
    builds = (facts.data.get("dirs") or {}).get("builds") or {}
    safe = git.get("safe_directory", [])
    text = f"{git.get('version')}; safe.directory = {safe or 'unset'}"
    if "*" in safe or (builds and any(builds["path"].startswith(s) for s in safe)):
        return CheckResult("safe_directory", Verdict.PASS, text)
    owner = builds.get("owner")
    if builds and owner is not None and owner != facts.data.get("user"):
        return _fail(
            "safe_directory",
            f"{text}; {builds['path']} is owned by {owner}, git runs as {facts.data.get('user')}",
            "git config --global --add safe.directory '*' (or the builds dir), or "
            "safe_directory_checkout = true in [[runners]].",
        )
    return CheckResult("safe_directory", Verdict.WARN, text)


def _docker_socket(facts: Facts) -> CheckResult:
    info = facts.data.get("docker_socket") or {}
    if not info.get("exists"):
        return _fail(
            "docker_socket",
            f"{info.get('path')} does not exist on the {facts.where}",
            "Install and start Docker: systemctl enable --now docker.",
        )
    usable = info.get("usable") or {}
    text = f"{info['path']} {info['owner']}:{info['group']} {info['mode']}"
    denied = sorted(u for u, ok in usable.items() if ok is False)
    if denied:
        allowed = sorted(u for u, ok in usable.items() if ok)
        return _fail(
            "docker_socket",
            f"{text}; "
            + (f"usable by {', '.join(allowed)}; " if allowed else "")
            + f"cannot be used by {', '.join(denied)}",
            f"usermod -aG {info['group']} {denied[0]} (then restart the runner)",
        )
    return CheckResult("docker_socket", Verdict.PASS, f"{text}; usable by {', '.join(usable)}")


def _selinux(facts: Facts) -> CheckResult:
    mode = facts.data.get("selinux")
    if mode is None:
        return CheckResult("selinux", Verdict.PASS, "SELinux is not present")
    if mode == "enforcing":
        return _fail("selinux", "SELinux is enforcing", "Relabel mounted paths or mount with :Z.")
    return CheckResult("selinux", Verdict.PASS, f"SELinux is {mode}")


def _clock(facts: Facts) -> CheckResult:
    clock = facts.data.get("clock")
    if not clock or "error" in clock:
        return CheckResult(
            "clock", Verdict.SKIP, f"no Date from GitLab: {clock and clock['error']}"
        )
    skew = float(clock["skew_seconds"])
    text = f"clock skew against GitLab's Date header ({clock['date']}): {skew:+.0f} s"
    if abs(skew) > MAX_SKEW:
        return _fail("clock", text, "Synchronise the clock: timedatectl set-ntp true.")
    return CheckResult("clock", Verdict.PASS, text)


def _verify(facts: Facts) -> CheckResult:
    checked = {n: ok for n, ok in facts.token_checks.items() if ok is not None}
    if not checked:
        return CheckResult("verify", Verdict.SKIP, "no token could be verified")
    bad = sorted(name for name, ok in checked.items() if not ok)
    text = ", ".join(f"{n}: {'valid' if ok else 'not valid'}" for n, ok in sorted(checked.items()))
    if bad:
        return _fail("verify", f"POST /runners/verify: {text}", "Re-register the runner.")
    return CheckResult("verify", Verdict.PASS, f"POST /runners/verify: {text}")


def _journal(facts: Facts) -> CheckResult:
    journal = facts.data.get("journal")
    if journal is None:
        return CheckResult(
            "journal", Verdict.SKIP, f"the runner's journal is not read on the {facts.where}"
        )
    if "skipped" in journal:
        return CheckResult("journal", Verdict.SKIP, str(journal["skipped"]))
    lines = journal.get("lines", [])
    last = f"; last: {lines[-1]}" if lines else ""
    return CheckResult(
        "journal",
        Verdict.PASS,
        f"read {len(lines)} line{'' if len(lines) == 1 else 's'} of {journal.get('unit')} "
        f"({journal.get('command')}){last}",
    )


def journal_lines(facts: Facts) -> list[str]:
    """The runner's journal lines the probe script read (empty when it could not)."""
    journal = facts.data.get("journal") or {}
    return [str(line) for line in journal.get("lines", [])]


PROBES: tuple[_Probe, ...] = (
    _Probe("dns", _dns),
    _Probe("tcp", _tcp),
    _Probe("tls", _tls),
    _Probe("proxy", _proxy),
    _Probe("verify", _verify),
    _Probe("builds_dir", _dir("builds_dir", "builds")),
    _Probe("cache_dir", _dir("cache_dir", "cache")),
    _Probe("safe_directory", _safe_directory),
    _Probe("docker_socket", _docker_socket),
    _Probe("selinux", _selinux),
    _Probe("clock", _clock),
    _Probe("journal", _journal),
)
PROBE_NAMES = frozenset(p.name for p in PROBES)


def run_probes(facts: Facts) -> tuple[CheckResult, ...]:
    """Every probe over ``facts``, named ``<probe>@<where>``."""
    results = AllOf(list(PROBES)).results(facts)
    return tuple(
        CheckResult(f"{r.check}@{facts.where}", r.verdict, r.evidence, r.fix) for r in results
    )


def judge(probes: Sequence[str], results: Sequence[CheckResult]) -> list[tuple[str, bool, str]]:
    """For a finding's ``probes``: (probe, confirms, evidence) from the results that decide.

    A failed probe confirms the finding (the problem is there); a passed one refutes it (that
    part works from where it was probed). Skips and warnings decide nothing.
    """
    verdicts = []
    for result in results:
        if result.check.split("@", 1)[0] not in probes:
            continue
        if result.verdict is Verdict.FAIL:
            verdicts.append((result.check, True, result.evidence))
        elif result.verdict is Verdict.PASS:
            verdicts.append((result.check, False, result.evidence))
    return verdicts
