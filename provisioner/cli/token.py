"""``runnerctl token rotate``: runner authentication tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.context import command_group, get_app
from provisioner.cli.options import (
    ConfigPath,
    GitLabOptions,
    with_gitlab_options,
)
from provisioner.cli.render import to_jsonable
from provisioner.errors import UsageError

app = command_group(
    "Runner authentication tokens.\n\nExamples:\n\n  runnerctl token rotate docker-1\n"
)

_JSON_FIELDS = (
    "name",
    "runner_id",
    "config_path",
    "token_expires_at",
    "new_token_verified",
    "old_token_refused",
)


@app.command("rotate")
@with_gitlab_options
def rotate_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Runner name in config.toml.")] = None,
    runner_id: Annotated[
        int | None, typer.Option("--id", help="Runner id instead of the name.")
    ] = None,
    config: ConfigPath = None,
    show_token: Annotated[bool, typer.Option("--show-token", help="Print the new token.")] = False,
    *,
    connection: GitLabOptions,
) -> None:
    """Reset a runner's token in GitLab and write the new one into config.toml atomically.

    Examples:

      runnerctl token rotate docker-1
      runnerctl token rotate --id 42 --show-token -o json
    """
    from provisioner.registration.service import rotate_token

    app_ctx = get_app(ctx)
    if (name is None) == (runner_id is None):
        raise UsageError(
            "Name the runner to rotate: NAME or --id ID (one of them).",
            hint="`runnerctl config show` lists the configured runners with their ids.",
        )
    gitlab = app_ctx.gitlab(connection)
    result = rotate_token(
        name,
        runner_id=runner_id,
        gitlab=gitlab,
        store=app_ctx.config_store(config),
        on_secret=app_ctx.redactor.add,
    )
    app_ctx.warn(result.warnings)
    expires = result.token_expires_at.isoformat() if result.token_expires_at else None
    if app_ctx.json:
        doc = to_jsonable(
            result,
            only=_JSON_FIELDS,
            rename={"config_path": "config"},
            convert={"token_expires_at": lambda _: expires},
        )
        app_ctx.emit_json_with_token(doc, result.token if show_token else None)
        return
    app_ctx.echo(
        f"Rotated the token of runner {result.name!r} (id {result.runner_id}); "
        f"expires: {expires or 'never'}; new token verified, old token "
        f"{'refused' if result.old_token_refused else 'STILL ACCEPTED'}"
    )
    if show_token:
        app_ctx.echo_token(result.token)
