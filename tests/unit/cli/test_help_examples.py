"""Every ``--help`` shows at least one example, and every example is a command line that parses.

The command tree is walked from the app itself, so a new command or group without an
``Examples:`` block in its docstring (or group help) fails here.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import typer.main

from provisioner.cli.main import app, hoist_global_options
from tests.conftest import Cli


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from _walk(sub, (*path, name))


ROOT = typer.main.get_command(app)
PATHS = list(_walk(ROOT))


def _examples(help_text: str) -> list[str]:
    """The command lines listed under ``Examples:`` in a rendered --help."""
    lines = [line.strip(" │") for line in help_text.splitlines()]
    if "Examples:" not in lines:
        return []
    found: list[str] = []
    for line in lines[lines.index("Examples:") + 1 :]:
        if line.startswith("runnerctl"):
            found.append(line)
        elif line or found:  # the blank line after the heading is skipped
            break
    return found


def _parse(argv: list[str]) -> Any:
    """Let Click parse ``argv`` down to its command, as ``runnerctl`` would; return the command."""
    args = hoist_global_options(argv)
    ctx = ROOT.make_context("runnerctl", args)
    command: Any = ROOT
    while hasattr(command, "commands"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return command


def test_the_walk_sees_every_command_group() -> None:
    assert ("register",) in PATHS
    assert ("config", "diff") in PATHS
    assert ("sandbox", "runner") in PATHS
    assert len(PATHS) >= 28


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "runnerctl" for p in PATHS])
def test_every_help_has_an_example_that_parses(cli: Cli, path: tuple[str, ...]) -> None:
    code, out, err = cli(*path, "--help")
    assert code == 0, err

    examples = _examples(out)

    assert examples, f"`runnerctl {' '.join(path)} --help` shows no Examples: block"
    prefix = " ".join(("runnerctl", *path))
    for example in examples:
        assert example == prefix or example.startswith(prefix + " "), example
        argv = shlex.split(example)[1:]
        command = _parse(argv)  # an unknown option or a missing required one raises here
        assert not hasattr(command, "commands"), f"{example} names no command to run"
