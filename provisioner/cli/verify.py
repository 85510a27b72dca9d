"""``runnerctl verify``: check config.toml's runners against GitLab, and repair them."""

from __future__ import annotations

from typing import Annotated

import typer

from provisioner.cli.context import get_app
from provisioner.cli.options import (
    ConfigPath,
    GitLabOptions,
    with_gitlab_options,
)
from provisioner.cli.render import text_table

#: Exit code when an entry still disagrees with GitLab (GitLab refused its token).
PROBLEMS_LEFT = 4


@with_gitlab_options
def verify(
    ctx: typer.Context,
    delete: Annotated[
        bool, typer.Option("--delete", help="Drop entries whose runner GitLab no longer knows.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="As --delete, and reset a dead token with the access token "
            "(POST /runners/:id/reset_authentication_token).",
        ),
    ] = False,
    config: ConfigPath = None,
    *,
    connection: GitLabOptions,
) -> None:
    """Check every runner in config.toml against GitLab (POST /runners/verify).

    Exits 0 when every entry of this GitLab is valid (or was repaired), 4 when one is not.
    Entries of another GitLab URL are listed and left alone.

    Examples:

      runnerctl verify --config /etc/gitlab-runner/config.toml
      runnerctl verify --repair --config /etc/gitlab-runner/config.toml
    """
    from provisioner.registration.verify import verify_runners

    app = get_app(ctx)
    gitlab = app.gitlab(connection)
    result = verify_runners(
        gitlab_url=gitlab.settings.url,
        gitlab=gitlab,
        store=app.config_store(config),
        delete=delete,
        repair=repair,
        on_secret=app.redactor.add,
    )
    if app.json:
        app.emit_json(
            {
                "config": str(result.config_path),
                "config_changed": result.config_changed,
                "runners": [
                    {"name": e.name, "url": e.url, "id": e.runner_id, "state": e.state.value}
                    for e in result.entries
                ],
            }
        )
    else:
        rows = [("NAME", "ID", "STATE", "URL")]
        rows += [(e.name, str(e.runner_id or "-"), e.state.value, e.url) for e in result.entries]
        for line in text_table(rows):
            app.echo(line)
        if result.problems:
            app.note(
                "Hint: `runnerctl verify --repair` resets dead tokens and drops entries of "
                "deleted runners.",
                style="yellow",
            )
    if result.problems:
        raise typer.Exit(code=PROBLEMS_LEFT)
