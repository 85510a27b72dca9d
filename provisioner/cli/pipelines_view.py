"""How ``runnerctl pipelines`` shows a snapshot: the rich table, JSON, NDJSON, change lines."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from provisioner.gitlab.models import PipelineStatus

if TYPE_CHECKING:
    from provisioner.monitor import Change, Row, Snapshot

STATUS_STYLE = {
    PipelineStatus.FAILED: "bold red",
    PipelineStatus.SUCCESS: "green",
    PipelineStatus.RUNNING: "bold blue",
    PipelineStatus.PENDING: "yellow",
    PipelineStatus.CREATED: "yellow",
    PipelineStatus.PREPARING: "yellow",
    PipelineStatus.WAITING_FOR_RESOURCE: "yellow",
    PipelineStatus.WAITING_FOR_CALLBACK: "yellow",
    PipelineStatus.MANUAL: "magenta",
    PipelineStatus.SCHEDULED: "magenta",
    PipelineStatus.CANCELED: "dim",
    PipelineStatus.CANCELING: "dim",
    PipelineStatus.SKIPPED: "dim",
}
COLUMNS = ("PROJECT", "REF", "STATUS", "PIPELINE", "BY", "STARTED", "DURATION", "AGE")


def when(moment: datetime | None, zone: tzinfo) -> str:
    """A moment in ``zone``, for people."""
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(moment: datetime | None, zone: tzinfo) -> str | None:
    """A moment in ``zone`` as ISO 8601 with its offset."""
    return moment.astimezone(zone).isoformat() if moment is not None else None


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s``, ``42s``."""
    if seconds is None:
        return ""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago, coarsely: ``40s``, ``5m``, ``3h``, ``2d``."""
    if moment is None:
        return ""
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def status_text(row: Row) -> str:
    """GitLab's detailed status text (``Passed``, ``Blocked``), else the status."""
    if row.pipeline is None:
        return "no pipeline"
    return row.pipeline.detailed_status or row.pipeline.status.value


def summary(snapshot: Snapshot, zone: tzinfo) -> str:
    """``12 projects: 2 failed, 1 running, 9 success · refreshed … (graphql, 1 request)``."""
    counts = snapshot.counts()
    order = sorted(counts, key=lambda k: (k != "failed", k == "none", k))
    parts = ", ".join(f"{counts[k]} {'no pipeline' if k == 'none' else k}" for k in order)
    plural = "" if snapshot.requests == 1 else "s"
    projects = "project" if len(snapshot.rows) == 1 else "projects"
    line = (
        f"{len(snapshot.rows)} {projects}: {parts or 'none'} · refreshed "
        f"{when(snapshot.refreshed_at, zone)} ({snapshot.source}, {snapshot.requests} "
        f"request{plural})"
    )
    if snapshot.skipped_no_ci:
        line += f" · {snapshot.skipped_no_ci} without CI skipped"
    if snapshot.stale:
        line += f" · STALE: {snapshot.error}"
    return line


def rich_table(snapshot: Snapshot, zone: tzinfo, now: datetime) -> Any:
    """The table, coloured, ids linked, changed rows highlighted."""
    from rich.style import Style
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_edge=False, pad_edge=False, caption_justify="left")
    for column in COLUMNS:
        table.add_column(column, no_wrap=True)
    for row in snapshot.rows:
        pipeline = row.pipeline
        style = STATUS_STYLE.get(row.status, "") if row.status is not None else "dim"
        link = Text(f"#{pipeline.id}", style=Style(link=pipeline.web_url)) if pipeline else Text()
        table.add_row(
            Text(row.project, style=Style(link=row.web_url)),
            row.ref or "",
            Text(status_text(row), style=style),
            link,
            (pipeline.user or "") if pipeline else "",
            when(pipeline.started_at, zone) if pipeline else "",
            duration(pipeline.duration) if pipeline else "",
            age(pipeline.created_at, now) if pipeline else "",
            style="reverse" if row.project in snapshot.changed else None,
        )
    table.caption = summary(snapshot, zone)
    table.caption_style = "bold red" if snapshot.stale else "dim"
    return table


def pipeline_doc(row: Row, zone: tzinfo) -> dict[str, Any] | None:
    """The ``pipeline`` member of a project in the JSON document."""
    p = row.pipeline
    if p is None:
        return None
    return {
        "id": p.id,
        "iid": p.iid,
        "status": p.status.value,
        "detailed_status": p.detailed_status,
        "ref": p.ref,
        "web_url": p.web_url,
        "created_at": iso(p.created_at, zone),
        "started_at": iso(p.started_at, zone),
        "duration": p.duration,
        "user": p.user,
    }


def document(snapshot: Snapshot, zone: tzinfo) -> dict[str, Any]:
    """The ``--output json`` document of one refresh."""
    return {
        "group": snapshot.group,
        "refreshed_at": iso(snapshot.refreshed_at, zone),
        "source": snapshot.source,
        "requests": snapshot.requests,
        "stale": snapshot.stale,
        "error": snapshot.error,
        "summary": snapshot.counts(),
        "skipped_without_ci": snapshot.skipped_no_ci,
        "projects": [
            {"project": r.project, "ref": r.ref, "pipeline": pipeline_doc(r, zone)}
            for r in snapshot.rows
        ],
    }


def change_doc(change: Change, snapshot: Snapshot, zone: tzinfo) -> dict[str, Any]:
    """One NDJSON line for a status change."""
    return {
        "event": "change",
        "at": iso(snapshot.refreshed_at, zone),
        "group": snapshot.group,
        "project": change.project,
        "ref": change.ref,
        "old_status": change.old.value if change.old is not None else None,
        "status": change.new.value if change.new is not None else None,
        "pipeline_id": change.pipeline_id,
        "web_url": change.web_url,
    }


def change_line(change: Change, snapshot: Snapshot, zone: tzinfo) -> str:
    """A plain line for a change (watch mode off a TTY)."""
    old = change.old.value if change.old is not None else "none"
    new = change.new.value if change.new is not None else "none"
    pipeline = f"#{change.pipeline_id}" if change.pipeline_id else ""
    return (
        f"{when(snapshot.refreshed_at, zone)}  {change.project}  {old} -> {new}  "
        f"{pipeline} {change.web_url}".rstrip()
    )
