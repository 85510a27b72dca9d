"""``runnerctl runners list``: what GitLab knows about your runners."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, command_group, get_app
from provisioner.cli.options import (
    GitLabOptions,
    with_gitlab_options,
)
from provisioner.cli.render import local_time, table, to_jsonable
from provisioner.errors import UsageError
from provisioner.gitlab.models import RunnerStatus

if TYPE_CHECKING:
    from provisioner.gitlab.models import Runner

app = command_group(
    "What GitLab knows about your runners.\n\n"
    "Examples:\n\n"
    "  runnerctl runners list --status online\n"
)

_JSON_FIELDS = ("id", "description", "runner_type", "status", "paused", "tag_list", "contacted_at")


@app.command("list")
@with_gitlab_options
def list_command(
    ctx: typer.Context,
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope",
            "-s",
            help="instance, group:PATH|ID or project:PATH|ID (default: the token's runners).",
        ),
    ] = None,
    status: Annotated[
        RunnerStatus | None, typer.Option("--status", help="online, offline, stale, ...")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Only with this tag.")
    ] = None,
    *,
    connection: GitLabOptions,
) -> None:
    """List runners GitLab knows, with their last contact in your timezone.

    Examples:

      runnerctl runners list --scope group:ops/ci --status online
      runnerctl runners list -o json
    """
    from provisioner.registration import parse_scope
    from provisioner.registration.service import list_runners

    app_ctx = get_app(ctx)
    if status in (RunnerStatus.ACTIVE, RunnerStatus.UNKNOWN):
        raise UsageError(
            f"--status {status.value} is not a filter.",
            hint="Use online, offline, stale, never_contacted or paused.",
        )
    parsed = parse_scope(scope) if scope else None
    gitlab = app_ctx.gitlab(connection)
    found = list_runners(scope=parsed, status=status, tags=tuple(tag or ()), gitlab=gitlab)
    if app_ctx.json:
        app_ctx.emit_json(
            [to_jsonable(r, only=_JSON_FIELDS, rename={"tag_list": "tags"}) for r in found]
        )
        return
    _render_table(app_ctx, found)


def _render_table(app_ctx: AppContext, runners: tuple[Runner, ...]) -> None:
    if not runners:
        app_ctx.note("No runners match.")
        return
    app_ctx.out.print(
        table(
            ("ID", "NAME", "TYPE", "STATUS", "TAGS", "LAST CONTACT"),
            (
                (
                    str(r.id),
                    app_ctx.redactor(r.description),
                    r.runner_type.value.removesuffix("_type"),
                    r.status.value,
                    ", ".join(r.tag_list),
                    local_time(r.contacted_at),
                )
                for r in runners
            ),
            wrap=("TAGS",),
        )
    )
