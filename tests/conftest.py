"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"
RUNNERCTL = Path(sys.executable).with_name("runnerctl")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``: facts we test against (never read by the product)."""
    assert SHARED_REFERENCE.is_dir(), f"{SHARED_REFERENCE} is missing: shared/ sits beside the repo"
    return SHARED_REFERENCE


class CliResult(NamedTuple):
    """What one ``runnerctl`` invocation did (unpacks as ``code, out, err``)."""

    exit_code: int
    stdout: str
    stderr: str


class Cli(Protocol):
    """The signature of the :func:`cli` fixture."""

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
        app: Any = None,
    ) -> CliResult: ...


@pytest.fixture
def cli() -> Cli:
    """Run ``runnerctl ARGS`` in-process, the one way tests invoke the CLI.

    ``env`` sets (or, with None, unsets) environment variables for the run; ``input`` is
    stdin; ``app`` is a prepared :class:`provisioner.cli.context.AppContext` (fake clients
    through its ``factories``). An exception escaping the app fails the test: the error
    boundary must turn every error into a message and an exit code.
    """
    from typer.testing import CliRunner

    from provisioner.cli.main import app as runnerctl

    def invoke(
        *args: str,
        env: Mapping[str, str | None] | None = None,
        input: str | None = None,
        app: Any = None,
    ) -> CliResult:
        runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
        result = runner.invoke(runnerctl, list(args), input=input, obj=app, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_runnerctl(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``runnerctl`` console script in its own process.

    The one subprocess helper, for tests that need a real process (signals, exit status of
    the console script, concurrency, servers); secrets go in ``env``, never in ``args``.
    """
    return subprocess.run(
        [str(RUNNERCTL), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        check=False,
        preexec_fn=preexec,
    )
