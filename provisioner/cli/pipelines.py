"""``runnerctl pipelines --group G [--watch]``: the latest pipeline of every project of a group."""

from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli import pipelines_view as view
from provisioner.cli.context import AppContext, OutputFormat, get_app
from provisioner.cli.options import (
    GitLabOptions,
    with_gitlab_options,
)
from provisioner.errors import UsageError
from provisioner.gitlab.models import PipelineStatus
from provisioner.monitor.model import FAILED_EXIT, MonitorSpec, RefMode, SortKey

if TYPE_CHECKING:
    from collections.abc import Iterable

    from provisioner.monitor import GroupMonitor, Snapshot

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
MIN_INTERVAL = 5.0


def parse_interval(text: str, option: str, *, minimum: float) -> float:
    """``30s``, ``2m``, ``1.5h`` or bare seconds, at least ``minimum``."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{option} {text!r} is not a duration.", hint="Write 30s, 2m or 1h.")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    seconds = float(match.group(1)) * scale
    if seconds < minimum:
        raise UsageError(
            f"{option} {text} is shorter than {minimum:g}s.",
            hint="Every refresh costs requests on a shared GitLab: poll less often.",
        )
    return seconds


def parse_zone(name: str | None) -> tzinfo:
    """``--tz`` as a zoneinfo zone (the local zone when not given)."""
    if name is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz {name!r} is not a time zone.",
            hint="Use an IANA name such as Europe/Paris, America/New_York or UTC.",
        ) from None


def parse_statuses(text: str | None) -> frozenset[PipelineStatus]:
    """``--status failed,running`` as statuses."""
    if not text:
        return frozenset()
    found = set()
    for word in (w.strip().lower() for w in text.split(",") if w.strip()):
        status = PipelineStatus.parse(word)
        if status is PipelineStatus.UNKNOWN:
            known = ", ".join(s.value for s in PipelineStatus if s is not PipelineStatus.UNKNOWN)
            raise UsageError(f"--status {word!r} is not a pipeline status.", hint=f"Use {known}.")
        found.add(status)
    return frozenset(found)


def spec_from_options(
    group: str,
    *,
    ref: str,
    status: str | None,
    include_archived: bool,
    no_subgroups: bool,
    sort: SortKey,
) -> MonitorSpec:
    """The :class:`MonitorSpec` the command line describes."""
    if not group.strip():
        raise UsageError("--group is empty.", hint="Give a group's full path, e.g. platform/ci.")
    mode = RefMode.DEFAULT if ref == "default" else RefMode.ANY if ref == "any" else RefMode.NAMED
    return MonitorSpec(
        group=group.strip().strip("/"),
        ref_mode=mode,
        ref_name=ref if mode is RefMode.NAMED else None,
        statuses=parse_statuses(status),
        include_archived=include_archived,
        subgroups=not no_subgroups,
        sort=sort,
    )


@with_gitlab_options
def pipelines(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    group: Annotated[
        str, typer.Option("--group", "-g", help="Group full path (subgroups included).")
    ],
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the view up to date until Ctrl-C.")
    ] = False,
    interval: Annotated[
        str, typer.Option("--interval", help="Full refresh period (jittered ±10 %).")
    ] = "30s",
    fast_interval: Annotated[
        str,
        typer.Option("--fast-interval", help="Re-poll period of running/pending pipelines."),
    ] = "5s",
    tz: Annotated[
        str | None, typer.Option("--tz", help="Time zone of the times (default: local).")
    ] = None,
    ref: Annotated[
        str,
        typer.Option("--ref", help="default (default branch), any (newest), or a ref name."),
    ] = "default",
    status: Annotated[
        str | None, typer.Option("--status", help="Only these statuses: failed,running,…")
    ] = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="List archived projects too.")
    ] = False,
    no_subgroups: Annotated[
        bool, typer.Option("--no-subgroups", help="Only the group's own projects.")
    ] = False,
    sort: Annotated[SortKey, typer.Option("--sort", help="Row order.")] = SortKey.STATUS,
    once: Annotated[
        bool,
        typer.Option("--once", help=f"One refresh; exit {FAILED_EXIT} if a pipeline failed."),
    ] = False,
    on_change: Annotated[
        str | None,
        typer.Option(
            "--on-change",
            help="Command run per status change (no shell; the change is in RUNNERCTL_* "
            "variables).",
        ),
    ] = None,
    max_rps: Annotated[
        float, typer.Option("--max-rps", help="Request budget per second (0: none).", min=0)
    ] = 1.0,
    *,
    connection: GitLabOptions,
) -> None:
    """Show the latest pipeline of every project of a group, failed first.

    One GraphQL request per 100 projects (REST on older GitLab), at most one request a second.

    --watch keeps the table live: all of it every --interval, running ones every --fast-interval.

    Examples:

      runnerctl pipelines --group platform --once
      runnerctl pipelines --group platform/ci --watch --tz Europe/Paris --status failed,running
      runnerctl pipelines --group 42 --ref any -o json
    """
    from provisioner.monitor import GroupMonitor

    app = get_app(ctx)
    spec = spec_from_options(
        group,
        ref=ref,
        status=status,
        include_archived=include_archived,
        no_subgroups=no_subgroups,
        sort=sort,
    )
    zone = parse_zone(tz)
    every = parse_interval(interval, "--interval", minimum=MIN_INTERVAL)
    fast = parse_interval(fast_interval, "--fast-interval", minimum=1.0)
    hook = shlex.split(on_change) if on_change is not None else None
    if hook == []:
        raise UsageError("--on-change is empty.", hint="Give a command, e.g. notify-send.")
    if watch_ and once:
        raise UsageError("--watch and --once exclude each other.", hint="Pick one.")
    if watch_ and app.output is OutputFormat.JSON:
        raise UsageError(
            "--output json prints one document; a watch prints many.",
            hint="Use --output ndjson with --watch (one line per change).",
        )
    gitlab = app.gitlab(connection)
    gitlab.limit_rate(max_rps)
    monitor = GroupMonitor(spec, gitlab=gitlab)
    if not watch_:
        snapshot = monitor.refresh()
        _show_once(app, snapshot, zone)
        if once and snapshot.any_failed:
            raise typer.Exit(code=FAILED_EXIT)
        return
    _watch(app, monitor, zone, interval=every, fast=fast, hook=hook)


def _show_once(app: AppContext, snapshot: Snapshot, zone: tzinfo) -> None:
    if app.output is OutputFormat.NDJSON:
        for project in view.document(snapshot, zone)["projects"]:
            app.echo(json.dumps({"event": "row", **project}))
    elif app.json:
        app.emit_json(view.document(snapshot, zone))
    else:
        app.out.print(view.rich_table(snapshot, zone, datetime.now(UTC)))


def _watch(
    app: AppContext,
    monitor: GroupMonitor,
    zone: tzinfo,
    *,
    interval: float,
    fast: float,
    hook: list[str] | None,
) -> None:
    from provisioner.monitor import watch
    from provisioner.monitor.hooks import run_hook

    live = None
    if app.output is OutputFormat.TEXT and sys.stdout.isatty():
        from rich.live import Live

        live = Live(console=app.out, auto_refresh=False, redirect_stderr=False)
        live.start()
    first = True
    try:
        for snapshot in watch(monitor, interval=interval, fast_interval=fast):
            if live is not None:
                live.update(view.rich_table(snapshot, zone, datetime.now(UTC)), refresh=True)
            elif app.output is OutputFormat.NDJSON:
                _ndjson(app, snapshot, zone, first=first)
            elif first:
                _show_once(app, snapshot, zone)
            else:
                _lines(app, snapshot, zone)
            if snapshot.stale and live is None:
                app.note(f"refresh failed, showing the last rows: {snapshot.error}")
            first = False
            for change in snapshot.changes if hook else ():
                assert hook is not None
                run_hook(hook, change, group=snapshot.group)
    finally:
        if live is not None:
            live.stop()


def _ndjson(app: AppContext, snapshot: Snapshot, zone: tzinfo, *, first: bool) -> None:
    if first:
        _show_once(app, snapshot, zone)
        return
    for change in snapshot.changes:
        app.echo(json.dumps(view.change_doc(change, snapshot, zone)))


def _lines(app: AppContext, snapshot: Snapshot, zone: tzinfo) -> None:
    lines: Iterable[str] = (view.change_line(c, snapshot, zone) for c in snapshot.changes)
    for line in lines:
        app.echo(line)
