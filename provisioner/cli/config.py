"""``runnerctl config``: show, validate, lint and diff gitlab-runner's config.toml."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, help="Inspect and check gitlab-runner's config.toml.")
