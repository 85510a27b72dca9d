"""Probes over gathered facts, how they judge findings, and the script's request."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.checks import Verdict
from provisioner.doctor.matcher import Confidence, classify
from provisioner.doctor.probes import (
    Facts,
    gather,
    judge,
    local_runner,
    probe_source,
    run_probes,
)
from provisioner.doctor.service import (
    Diagnosis,
    ProbePlan,
    journal_request,
    probe,
    probe_request,
)
from provisioner.gitlab.jobs import JobDetail
from provisioner.gitlab.models import JobStatus, VerifyResult
from provisioner.runner_config import build_model

CONFIG = {
    "concurrent": 1,
    "runners": [
        {
            "name": "shell-1",
            "url": "https://gitlab.example.com",
            "id": 5,
            "token": "glrt-SECRETsecretSECRET123",
            "executor": "shell",
            "clone_url": "http://nonexistent.invalid",
            "builds_dir": "/srv/builds",
            "tls-ca-file": "/etc/gitlab-runner/certs/ca.crt",
        }
    ],
}

FACTS: dict[str, Any] = {
    "user": "gitlab-runner",
    "endpoints": {
        "url": {
            "host": "gitlab.example.com",
            "port": 443,
            "dns": {"ok": True, "addresses": ["10.0.0.5"]},
            "tcp": {"ok": True},
            "tls": {
                "ok": False,
                "ca_file": "/etc/gitlab-runner/certs/ca.crt",
                "error": "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                "self-signed certificate",
                "issuer": "commonName=gitlab.example.com",
                "not_after": "Dec  1 00:00:00 2027 GMT",
            },
        },
        "clone_url": {
            "host": "nonexistent.invalid",
            "port": 80,
            "dns": {"ok": False, "error": "[Errno -2] Name or service not known"},
        },
    },
    "proxy": {},
    "selinux": None,
    "git": {"version": "git version 2.39.5", "safe_directory": []},
    "dirs": {
        "builds": {
            "path": "/srv/builds",
            "exists": True,
            "owner": "root",
            "mode": "0o755",
            "writable": False,
            "free_bytes": 5 << 30,
            "free_inodes": 100000,
        }
    },
    "docker_socket": {
        "path": "/var/run/docker.sock",
        "exists": True,
        "mode": "0o660",
        "owner": "root",
        "group": "docker",
        "usable": {"gitlab-runner": False, "root": True},
    },
    "clock": {"date": "Thu, 03 Dec 2026 10:00:00 GMT", "skew_seconds": 400.0},
}


def _results(facts: dict[str, Any] = FACTS) -> dict[str, Any]:
    return {r.check: r for r in run_probes(Facts("host", facts, {"shell-1": True}))}


def test_each_probe_reports_its_own_evidence() -> None:
    results = _results()
    assert results["dns@host"].verdict is Verdict.FAIL
    assert "nonexistent.invalid does not resolve" in results["dns@host"].evidence
    assert results["tcp@host"].verdict is Verdict.PASS
    tls = results["tls@host"]
    assert tls.verdict is Verdict.FAIL
    assert "issuer: commonName=gitlab.example.com, expires Dec  1 00:00:00 2027 GMT" in (
        tls.evidence
    )
    assert results["builds_dir@host"].verdict is Verdict.FAIL
    assert "not writable by gitlab-runner" in results["builds_dir@host"].evidence
    assert results["safe_directory@host"].verdict is Verdict.FAIL
    assert "owned by root, git runs as gitlab-runner" in results["safe_directory@host"].evidence
    assert results["docker_socket@host"].verdict is Verdict.FAIL
    assert results["docker_socket@host"].fix.startswith("usermod -aG docker gitlab-runner")
    assert results["clock@host"].verdict is Verdict.FAIL
    assert results["verify@host"].verdict is Verdict.PASS
    assert results["selinux@host"].verdict is Verdict.PASS


def test_a_failed_probe_confirms_and_a_passed_one_refutes() -> None:
    results = tuple(_results().values())
    assert [v[:2] for v in judge(("dns",), results)] == [("dns@host", True)]
    assert [v[:2] for v in judge(("tcp",), results)] == [("tcp@host", False)]
    assert judge(("proxy",), results) == []  # no proxy set: a skip decides nothing


def test_probe_judges_findings_and_never_sends_the_token() -> None:
    entry = build_model(CONFIG).runners[0]
    sent: list[str] = []

    def host(script: str) -> str:
        sent.append(script)
        return json.dumps(FACTS) + "\n"

    log = "Could not resolve host: nonexistent.invalid\nremote: HTTP Basic: Access denied\n"
    diagnosis = Diagnosis("job.log", classify(log))
    judged = probe(
        diagnosis,
        ProbePlan(entry=entry, host=host, verify=lambda _t: VerifyResult(True, 5)),
    )
    by_id = {f.id: f for f in judged.findings}
    assert by_id["could-not-resolve-host"].confidence is Confidence.PROBE_CONFIRMED
    # HTTP Basic denied: the token verifies and the hosts resolve and connect, so refuted.
    assert by_id["http-basic-access-denied"].confidence is Confidence.PROBE_REFUTED
    assert judged.runner == "shell-1"
    assert "glrt-" not in sent[0]
    assert '"clone_url": "http://nonexistent.invalid"' in sent[0]


def test_the_probe_request_and_script_run_here() -> None:
    entry = build_model(CONFIG).runners[0]
    request = probe_request(entry, ("nobody",))
    assert request["ca_file"] == "/etc/gitlab-runner/certs/ca.crt"
    assert request["users"] == ["nobody"]
    assert "token" not in json.dumps(request)
    source = probe_source({"url": None, "users": []})
    compile(source, "probe_script.py", "exec")  # the rewritten request is valid Python


def test_gather_parses_the_last_line_of_output() -> None:
    facts = gather(lambda _s: "noise\n" + json.dumps(FACTS) + "\n", {}, where="container")
    assert facts.where == "container"
    assert facts.endpoint("clone_url") is not None


# --------------------------------------------------------------------------- runner journal

VERIFY_LINE = (
    "2026-12-03T10:00:01+0000 vm-1 gitlab-runner[812]: "
    "ERROR: Verifying runner... is not valid  runner=AbCdEf12"
)


def _tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def _journal_facts(
    monkeypatch: pytest.MonkeyPatch, folder: Path, tools: dict[str, str], job: JobDetail | None
) -> tuple[Facts, list[str]]:
    """Run the real probe script here with ``tools`` standing in for systemd's commands."""
    for name, script in tools.items():
        _tool(folder, name, script)
    _tool(folder, "python3", f'exec {sys.executable} "$@"\n')
    monkeypatch.setenv("PATH", str(folder))  # nothing else: no real journalctl or systemctl
    request = {"journal": journal_request(job)}
    facts = gather(local_runner, request, where="host")
    argv = (folder / "argv").read_text().splitlines() if (folder / "argv").exists() else []
    return facts, argv


def test_the_runner_journal_is_read_around_the_job_and_matched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = "-- Journal begins at Thu 2026-12-03 09:00:00 UTC. --\n" + (
        "2026-12-03T10:00:00+0000 vm-1 systemd[1]: Started gitlab-runner.service.\n"
        + VERIFY_LINE
        + "\n"
    )
    job = JobDetail(
        1,
        "g/p",
        "build",
        "build",
        JobStatus.FAILED,
        finished_at=datetime(2026, 12, 3, 10, 30, tzinfo=UTC),
    )
    facts, argv = _journal_facts(
        monkeypatch,
        tmp_path,
        {
            "systemctl": "echo loaded\n",
            "journalctl": f'printf "%s\\n" "$@" > {tmp_path}/argv\n/bin/cat <<"EOF"\n{log}EOF\n',
        },
        job,
    )
    assert argv == [
        "--unit=gitlab-runner.service",
        "-n",
        "200",
        "--no-pager",
        "--output=short-iso",
        "--since=2026-12-03 09:30:00 UTC",
        "--until=2026-12-03 10:35:00 UTC",
    ]
    results = {r.check: r for r in run_probes(facts)}
    assert results["journal@host"].verdict is Verdict.PASS
    assert results["journal@host"].evidence.startswith("read 2 lines of gitlab-runner.service")
    local = {"name": "vm-1", "url": "http://127.0.0.1:9", "token": "glrt-x", "executor": "shell"}
    entry = build_model({"concurrent": 1, "runners": [local]}).runners[0]
    judged = probe(
        Diagnosis("job.log", ()),
        ProbePlan(entry=entry, host=local_runner, verify=lambda _t: VerifyResult(False)),
    )
    finding = judged.findings[0]
    assert (finding.id, finding.source) == ("verify-not-valid", "runner-log")
    assert finding.evidence.line == 2
    assert finding.evidence.text == VERIFY_LINE
    assert finding.confidence is Confidence.PROBE_CONFIRMED  # POST /runners/verify says invalid


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        ({}, "journalctl is not installed"),
        (
            {"journalctl": "exit 0\n", "systemctl": "echo not-found\n"},
            "the unit gitlab-runner.service does not exist on this host (not-found)",
        ),
        (
            {
                "journalctl": "exit 0\n",
                "systemctl": "echo 'System has not been booted with systemd' >&2; exit 1\n",
            },
            "systemd cannot be asked about gitlab-runner.service: System has not been booted",
        ),
        (
            {
                "journalctl": "echo 'Failed to open journal: boom' >&2; exit 1\n",
                "systemctl": "echo loaded\n",
            },
            "cannot read the journal of gitlab-runner.service: Failed to open journal: boom",
        ),
    ],
    ids=["no-journalctl", "no-unit", "no-systemd", "journal-error"],
)
def test_no_journal_is_a_skipped_probe_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tools: dict[str, str], reason: str
) -> None:
    facts, _ = _journal_facts(monkeypatch, tmp_path, tools, None)
    result = {r.check: r for r in run_probes(facts)}["journal@host"]
    assert result.verdict is Verdict.SKIP
    assert result.evidence.startswith(reason)


def test_without_a_job_time_the_journal_is_its_last_lines() -> None:
    assert journal_request(None) == {"unit": "gitlab-runner.service", "lines": 200}
