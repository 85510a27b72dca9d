"""The ``runnerctl`` entry point: global options, logging, and the one error boundary.

The boundary lives inside the app (:class:`RunnerctlGroup`), so it sees the parsed options and
the run's :class:`AppContext`: every exception a command raises ends as ``Error:`` / ``Hint:``
on stderr (and one JSON document on stdout with ``--output json``), masked by the run's own
redactor, with its exit code.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from provisioner import __version__
from provisioner.cli import config as config_cli
from provisioner.cli import demo as demo_cli
from provisioner.cli import doctor as doctor_cli
from provisioner.cli import fleet as fleet_cli
from provisioner.cli import host as host_cli
from provisioner.cli import image as image_cli
from provisioner.cli import k8s as k8s_cli
from provisioner.cli import pipelines as pipelines_cli
from provisioner.cli import register as register_cli
from provisioner.cli import runners as runners_cli
from provisioner.cli import sandbox as sandbox_cli
from provisioner.cli import smoke as smoke_cli
from provisioner.cli import token as token_cli
from provisioner.cli import verify as verify_cli
from provisioner.cli.context import AppContext, OutputFormat, get_app
from provisioner.errors import ProvisionerError
from provisioner.secrets import RedactingFilter, Redactor

BUG_HINT = "this is a bug: run again with --debug and report it"
INTERRUPTED = 130

# Typer vendors Click and exports only BadParameter; its base, ClickException, marks the usage
# errors Typer itself reports (exit 2), which must pass through the boundary untouched.
_CLICK_ERRORS: tuple[type[BaseException], ...] = tuple(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

# Global options a user may also write after the subcommand (``runnerctl register … -o json``).
_GLOBAL_FLAG = re.compile(r"^(--debug|--verbose|-v+)$")
_GLOBAL_VALUE = ("--output", "-o")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global options found after the subcommand to the front of ``args``.

    Click only accepts a group's options before its subcommand; users write them anywhere.
    Nothing after ``--`` is touched.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if _GLOBAL_FLAG.match(arg):
            front.append(arg)
        elif arg in _GLOBAL_VALUE and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 1
        elif arg.startswith("--output="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class RunnerctlGroup(TyperGroup):
    """The root command group: global options anywhere, and the total error boundary."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        return super().parse_args(ctx, hoist_global_options(list(args)))

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            sys.stderr.write("Interrupted.\n")
            raise typer.Exit(code=INTERRUPTED) from None
        except Exception as exc:  # the one place every error of every command ends
            if isinstance(exc, _CLICK_ERRORS):
                raise  # a usage error Typer reports itself (exit 2)
            raise typer.Exit(code=report(get_app(ctx), exc)) from None


app = typer.Typer(
    name="runnerctl",
    cls=RunnerctlGroup,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    help="Stand up self-hosted GitLab Runners, prove they work, and keep them healthy.\n\n"
    "Examples:\n\n"
    "  runnerctl demo\n"
    "  runnerctl register -e docker -s group:ops/ci -t docker --config ./config.toml\n"
    "  runnerctl smoke --tag docker\n",
)
app.add_typer(config_cli.app, name="config")
app.add_typer(image_cli.app, name="image")
app.command("register")(register_cli.register)
app.command("unregister")(register_cli.unregister)
app.command("verify")(verify_cli.verify)
app.add_typer(runners_cli.app, name="runners")
app.add_typer(token_cli.app, name="token")
app.add_typer(sandbox_cli.app, name="sandbox")
app.add_typer(host_cli.app, name="host")
app.add_typer(k8s_cli.app, name="k8s")
app.command("demo")(demo_cli.demo)
app.command("smoke")(smoke_cli.smoke)
app.command("pipelines")(pipelines_cli.pipelines)
app.command("doctor")(doctor_cli.doctor)
app.add_typer(fleet_cli.app, name="fleet")


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
        OutputFormat,
        typer.Option("--output", "-o", help="Result format on stdout (also after the command)."),
    ] = OutputFormat.TEXT,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            show_default=False,
            help="More log lines (-vv: debug). \\[repeatable]",
        ),
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
    state = get_app(ctx)  # a prepared context (tests inject fakes through it) is kept
    state.output, state.verbose, state.debug = output, verbose, debug
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose >= 2 or debug:
        level = logging.DEBUG
    _install_logging(level, state.redactor)


def report(app_ctx: AppContext, exc: BaseException) -> int:
    """Print ``exc`` as message and hint (and JSON with ``--output json``); return its exit code.

    Everything passes through the run's redactor, which knows every secret this run read;
    ``--debug`` adds the traceback (never with locals: tokens live in them).
    """
    if isinstance(exc, ProvisionerError):
        message, hint, code = exc.message, exc.hint, exc.exit_code
    else:
        message, hint, code = f"unexpected {type(exc).__name__}: {exc}", BUG_HINT, 1
    redact = app_ctx.redactor
    if app_ctx.debug:
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    if app_ctx.json and not app_ctx.emitted_json:
        app_ctx.emit_json({"error": {"message": message, "hint": hint, "exit_code": code}})
    sys.stderr.write(f"Error: {redact(message)}\n")
    if hint:
        sys.stderr.write(f"Hint: {redact(hint)}\n")
    sys.stderr.flush()
    return code


def main() -> None:
    """Console-script entry point.

    The boundary inside the app handles every command's errors; this outer one only catches
    what escapes it (an error raised while the app itself is built).
    """
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(INTERRUPTED)
    except Exception as exc:
        sys.exit(report(AppContext(), exc))
