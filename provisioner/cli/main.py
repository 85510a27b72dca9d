"""The ``runnerctl`` entry point: global options, logging, and the one error boundary."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from provisioner import __version__
from provisioner.cli import config as config_cli
from provisioner.cli import demo as demo_cli
from provisioner.cli import host as host_cli
from provisioner.cli import image as image_cli
from provisioner.cli import k8s as k8s_cli
from provisioner.cli import register as register_cli
from provisioner.cli import sandbox as sandbox_cli
from provisioner.cli import smoke as smoke_cli
from provisioner.cli.context import AppContext, OutputFormat
from provisioner.errors import ProvisionerError
from provisioner.secrets import RedactingFilter, Redactor, redact

app = typer.Typer(
    name="runnerctl",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    help="Stand up self-hosted GitLab Runners, prove they work, and keep them healthy.",
)
app.add_typer(config_cli.app, name="config")
app.add_typer(image_cli.app, name="image")
app.command("register")(register_cli.register)
app.command("unregister")(register_cli.unregister)
app.add_typer(register_cli.runners_app, name="runners")
app.add_typer(register_cli.token_app, name="token")
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(host_cli.app, name="host")
app.add_typer(k8s_cli.app, name="k8s")
app.command("demo")(demo_cli.demo)
app.command("smoke")(smoke_cli.smoke)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"runnerctl {__version__}\n")
        raise typer.Exit()


def _install_logging(level: int, redactor: Redactor) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(file=sys.stderr),
        show_path=False,
        rich_tracebacks=False,
        markup=False,
    )
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, RichHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


@app.callback()
def main_callback(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Result format on stdout.")
    ] = OutputFormat.TEXT,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log lines (-vv: debug).")
    ] = 0,
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug logs and tracebacks (secrets stay masked).")
    ] = False,
    version: Annotated[  # noqa: ARG001 (handled by its eager callback)
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Stand up self-hosted GitLab Runners, prove they work, and keep them healthy."""
    state = AppContext(output=output, verbose=verbose, debug=debug)
    ctx.obj = state
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2 or debug:
        level = logging.DEBUG
    _install_logging(level, state.redactor)


def main() -> None:
    """Console-script entry point: run the app and turn our errors into message, hint, exit."""
    try:
        app()
    except ProvisionerError as exc:
        _report(exc, debug="--debug" in sys.argv)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)


def _report(exc: ProvisionerError, *, debug: bool) -> None:
    if debug:
        import traceback

        # Tracebacks without locals: tokens live in locals.
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    sys.stderr.write(f"Error: {redact(exc.message)}\n")
    if exc.hint:
        sys.stderr.write(f"Hint: {redact(exc.hint)}\n")
