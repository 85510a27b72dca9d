"""``runnerctl doctor``: why a job failed, proven by the line it rests on and by live probes."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.options import (
    ConfigPath,
    GitLabOptions,
    RemoteHost,
    SshKey,
    learn_config_secrets,
    with_gitlab_options,
)
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.doctor import Diagnosis, Finding, GroupReport, JobRef, ProbePlan
    from provisioner.gitlab.client import GitLabAPI

#: Exit code when doctor found at least one known failure (0: none found).
EXIT_FINDINGS = 10
_SINCE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
PROBE_IMAGE = "runnerctl/python:3.11"


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``24h``, ``7d``, ``30m``… as the moment that long ago (UTC)."""
    found = _SINCE.match(text.strip())
    if not found:
        raise UsageError(f"--since {text!r} is not a duration", hint="Use e.g. 30m, 24h or 7d.")
    delta = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    return (now or datetime.now(UTC)) - delta


@with_gitlab_options
def doctor(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(help="A job URL or GROUP/PROJECT#ID.", show_default=False),
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="Project path (with --job).")
    ] = None,
    job_id: Annotated[int | None, typer.Option("--job", help="Job id (with --project).")] = None,
    log: Annotated[
        str | None,
        typer.Option("--log", help="A saved job log to read offline ('-' for stdin)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Every failed job of this group's projects.")
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="With --group: how far back (30m, 24h, 7d).")
    ] = "24h",
    config: ConfigPath = None,
    host: RemoteHost = None,
    ssh_key: SshKey = None,
    job_user: Annotated[
        list[str] | None,
        typer.Option("--job-user", help="A user jobs run as: probe its Docker socket access."),
    ] = None,
    *,
    connection: GitLabOptions,
) -> None:
    """Say why a job failed: the cause, the line it rests on, and the fix.

    Reads a job (URL, GROUP/PROJECT#ID or --project/--job) through the API, or a saved log
    with --log; with --config or --host it also probes the runner that ran it. --group scans
    every failed job of a group. Exit 0: no known failure found; 10: findings.

    Examples:

      runnerctl doctor https://gitlab.example.com/grp/app/-/jobs/4242 --config config.toml
      runnerctl doctor grp/app#4242 --host ops@runner1 -o json
      runnerctl doctor --log job.log
      runnerctl doctor --group grp --since 24h
    """
    from provisioner.doctor import diagnose_job, diagnose_log, probe, scan_group

    app = get_app(ctx)
    sources = [
        job is not None or project is not None or job_id is not None,
        log is not None,
        group is not None,
    ]
    if sum(sources) != 1:
        raise UsageError(
            "name one thing to diagnose: JOB, --project/--job, --log FILE or --group G",
            hint="e.g. runnerctl doctor grp/app#42, or runnerctl doctor --log job.log",
        )
    options = connection
    if group is not None:
        report = scan_group(group, since=parse_since(since), gitlab=app.gitlab(options))
        _render_group(app, report)
        if any(j.finding for j in report.jobs):
            raise typer.Exit(code=EXIT_FINDINGS)
        return
    gitlab: GitLabAPI | None = None
    if log is not None:
        diagnosis = diagnose_log(_read_log(log), source="stdin" if log == "-" else log)
    else:
        ref = _job_ref(job, project, job_id)
        gitlab = app.gitlab(options)
        diagnosis = diagnose_job(ref, gitlab=gitlab)
    if config is not None or host is not None:
        plan = _probe_plan(app, diagnosis, config, host, ssh_key, tuple(job_user or ()), gitlab)
        diagnosis = probe(diagnosis, plan)
    _render(app, diagnosis)
    if diagnosis.found:
        raise typer.Exit(code=EXIT_FINDINGS)


def _job_ref(job: str | None, project: str | None, job_id: int | None) -> JobRef:
    from provisioner.doctor import JobRef

    if job is not None:
        if project is not None or job_id is not None:
            raise UsageError("JOB and --project/--job name the job twice", hint="Use one form.")
        return JobRef.parse(job)
    if project is None or job_id is None:
        raise UsageError("--project and --job go together", hint="Pass both, or a job URL.")
    return JobRef(project, job_id)


def _read_log(log: str) -> str:
    if log == "-":  # bytes: text mode would turn a trace's \r redraws into new lines
        return sys.stdin.buffer.read().decode("utf-8", "replace")
    path = Path(log)
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise UsageError(
            f"cannot read {log}: {exc.strerror}", hint="Pass a readable log file."
        ) from None


def _probe_plan(  # noqa: PLR0917
    app: AppContext,
    diagnosis: Diagnosis,
    config: Path | None,
    host: str | None,
    ssh_key: Path | None,
    users: tuple[str, ...],
    gitlab: GitLabAPI | None,
) -> ProbePlan:
    from provisioner.doctor.probes import local_runner
    from provisioner.doctor.service import ProbePlan, pick_runner
    from provisioner.runner_config import build_model

    session = None
    if host is not None:
        from provisioner.cli.options import ssh_options
        from provisioner.hosts.remote_store import DEFAULT_REMOTE_PATH, RemoteConfigStore
        from provisioner.ssh import SSHTarget

        target = SSHTarget.parse(host)
        session = app.ssh(target, ssh_options(app, key_file=ssh_key))
        path = config.as_posix() if config is not None else DEFAULT_REMOTE_PATH
        store: Any = RemoteConfigStore(session, path, label=str(target))
    else:
        store = app.config_store(config)
    document = store.load()
    learn_config_secrets(app, document.dumps())
    entries = build_model(document.plain()).runners
    verify = gitlab.verify if gitlab is not None else None
    entry = pick_runner(entries, diagnosis.job, verify)
    if verify is None and entry.url:
        from provisioner.gitlab.models import ConnectionSettings

        verify = app.factories.gitlab(ConnectionSettings(url=entry.url, token="")).verify
    host_runner = local_runner if session is None else _ssh_runner(session, str(host))
    container = None
    if entry.executor == "docker":
        container = (
            _container_runner(app, entry)
            if session is None
            else _remote_container_runner(session, entry, str(host))
        )
    return ProbePlan(entry=entry, host=host_runner, container=container, verify=verify, users=users)


def _ssh_runner(session: Any, host: str) -> Any:
    from provisioner.errors import HostError

    def run(script: str) -> str:
        result = session.run("python3 -", stdin=script.encode())
        if result.exit_code != 0:
            raise HostError(f"the probe failed on {host}", hint=result.stderr[-300:] or None)
        return str(result.stdout)

    return run


def _container_runner(app: AppContext, entry: Any) -> Any:
    from provisioner.errors import HostError, ImageError

    def run(script: str) -> str:
        try:
            docker = app.docker()
            image = PROBE_IMAGE if docker.image_exists(PROBE_IMAGE) else entry.docker.image
            result = docker.run(
                image, ["python3", "-c", script], network_mode=_network(entry), timeout=120
            )
        except ImageError as exc:  # the docker adapter's DockerError
            raise HostError(exc.message, hint=exc.hint) from None
        return result.output

    return run


def _network(entry: Any) -> str:
    return (entry.docker.network_mode if entry.docker else None) or "bridge"


def _remote_container_runner(session: Any, entry: Any, host: str) -> Any:
    """The probe script in a throwaway container on ``host``, on the runner's network.

    ``docker`` runs as the login user, and through sudo when the socket refuses that user.
    """
    import shlex

    from provisioner.errors import HostError

    def docker(command: str, script: bytes | None = None) -> Any:
        result = session.run(command, stdin=script, timeout=180)
        if result.exit_code != 0 and "permission denied" in result.stderr.lower():
            result = session.sudo(command, stdin=script, timeout=180)
        return result

    def run(script: str) -> str:
        image = entry.docker.image if entry.docker is not None else None
        if docker(f"docker image inspect {shlex.quote(PROBE_IMAGE)}").exit_code == 0:
            image = PROBE_IMAGE
        if not image:
            raise HostError(
                f"no image to probe in on {host}", hint="Set image in [runners.docker]."
            )
        command = (
            f"docker run --rm -i --network {shlex.quote(_network(entry))} "
            f"{shlex.quote(image)} python3 -"
        )
        result = docker(command, script.encode())
        if result.exit_code != 0:
            raise HostError(
                f"the container probe failed on {host} ({command})",
                hint=result.stderr.strip()[-300:] or None,
            )
        return str(result.stdout)

    return run


# --------------------------------------------------------------------------- rendering


def finding_json(finding: Finding) -> dict[str, Any]:
    """The JSON shape of one finding (issue 13's contract, plus sources and probes)."""
    signature = finding.signature
    return {
        "id": finding.id,
        "category": finding.category.value,
        "title": signature.title,
        "evidence": {"line": finding.evidence.line, "text": finding.evidence.text},
        "causes": list(signature.causes),
        "fix": list(signature.fixes),
        "confidence": finding.confidence.value,
        "source": finding.source,
        "probes": [
            {"probe": p.probe, "confirms": p.confirms, "evidence": p.evidence}
            for p in finding.probes
        ],
        "sources": list(signature.sources),
    }


def _job_json(diagnosis: Diagnosis) -> dict[str, Any] | None:
    job = diagnosis.job
    if job is None:
        return None
    return {
        "id": job.id,
        "project": job.project,
        "name": job.name,
        "stage": job.stage,
        "status": job.status.value,
        "failure_reason": job.failure_reason.value if job.failure_reason else None,
        "runner": job.runner,
        "runner_id": job.runner_id,
        "tags": list(job.tags),
        "web_url": job.web_url,
    }


def _render(app: AppContext, diagnosis: Diagnosis) -> None:
    if app.json:
        app.emit_json(
            {
                "source": diagnosis.source,
                "job": _job_json(diagnosis),
                "findings": [finding_json(f) for f in diagnosis.findings],
                "probes": [
                    {
                        "probe": p.check,
                        "verdict": p.verdict.value,
                        "evidence": p.evidence,
                        "fix": p.fix,
                    }
                    for p in diagnosis.probes
                ],
                "runner": diagnosis.runner,
            }
        )
        return
    lines = [f"doctor: {diagnosis.source} ({diagnosis.lines} lines)"]
    if diagnosis.job is not None:
        job = diagnosis.job
        reason = job.failure_reason.value if job.failure_reason else "none"
        lines.append(
            f"job {job.id} {job.name!r} of {job.project}: {job.status.value}, "
            f"failure_reason {reason}, stage {job.stage}, runner {job.runner or '?'}, "
            f"tags {', '.join(job.tags) or '-'}"
        )
    if not diagnosis.findings:
        lines.append("No known failure found in this log.")
    for number, finding in enumerate(diagnosis.findings, 1):
        lines.extend(_finding_text(number, finding))
    if diagnosis.probes:
        lines.append(f"probes of runner {diagnosis.runner}:")
        lines.extend(f"  {p.verdict.value:<4} {p.check}: {p.evidence}" for p in diagnosis.probes)
    app.echo("\n".join(lines))


def _finding_text(number: int, finding: Finding) -> list[str]:
    from provisioner.doctor.matcher import RUNNER_LOG

    signature = finding.signature
    lines = [
        f"{number}. [{finding.category.value}] {signature.title} ({finding.confidence.value})",
        f"   {'runner log line' if finding.source == RUNNER_LOG else 'line'} "
        f"{finding.evidence.line}: {finding.evidence.text}",
        "   causes:",
    ]
    lines.extend(f"     - {c}" for c in signature.causes)
    lines.append("   fix:")
    lines.extend(f"     - {f}" for f in signature.fixes)
    lines.extend(
        f"   {'confirmed' if p.confirms else 'refuted'} by {p.probe}: {p.evidence}"
        for p in finding.probes
    )
    lines.append(f"   source: {signature.sources[0]}")
    return lines


def _render_group(app: AppContext, report: GroupReport) -> None:
    if app.json:
        app.emit_json(
            {
                "group": report.group,
                "since": report.since.isoformat() if report.since else None,
                "jobs": [
                    {
                        "id": j.job.id,
                        "project": j.job.project,
                        "name": j.job.name,
                        "runner": j.job.runner,
                        "failure_reason": j.job.failure_reason.value
                        if j.job.failure_reason
                        else None,
                        "web_url": j.job.web_url,
                        "finding": None
                        if j.finding is None
                        else {
                            "id": j.finding.id,
                            "category": j.finding.category.value,
                            "title": j.finding.signature.title,
                            "evidence": {
                                "line": j.finding.evidence.line,
                                "text": j.finding.evidence.text,
                            },
                        },
                    }
                    for j in report.jobs
                ],
                "by_category": report.by_category,
                "by_runner": report.by_runner,
                "runner_faults": report.runner_faults,
            }
        )
        return
    from provisioner.cli.render import text_table

    lines = [
        f"{len(report.jobs)} failed jobs in {report.group} since {report.since:%Y-%m-%d %H:%M} UTC"
        if report.since
        else f"{len(report.jobs)} failed jobs in {report.group}"
    ]
    rows = [("JOB", "PROJECT", "RUNNER", "CATEGORY", "FINDING")]
    rows.extend(
        (
            str(j.job.id),
            j.job.project,
            j.job.runner or "?",
            j.finding.category.value if j.finding else "-",
            j.finding.signature.title if j.finding else "no known failure",
        )
        for j in report.jobs
    )
    lines.extend(text_table(rows))
    lines.append("by category: " + ", ".join(f"{k} {v}" for k, v in report.by_category.items()))
    for runner, counts in report.by_runner.items():
        lines.append(f"runner {runner}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines.append(
        f"{report.runner_faults} of {len(report.jobs)} look like the runner's fault; "
        "the rest are the code's (config) or unknown."
    )
    app.echo("\n".join(lines))
