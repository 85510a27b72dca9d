"""What every command receives through ``ctx.obj``: output mode, consoles and the redactor."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from provisioner.secrets import Redactor

if TYPE_CHECKING:
    from rich.console import Console


class OutputFormat(StrEnum):
    """How results are printed on stdout."""

    TEXT = "text"
    JSON = "json"


@dataclass
class AppContext:
    """Shared state built once by the Typer callback and passed down through ``ctx.obj``."""

    output: OutputFormat = OutputFormat.TEXT
    verbose: int = 0
    debug: bool = False
    redactor: Redactor = field(default_factory=Redactor)
    _out: Console | None = None
    _err: Console | None = None

    @property
    def out(self) -> Console:
        """Console on stdout, for data."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        return self._out

    @property
    def err(self) -> Console:
        """Console on stderr, for people: progress, warnings, errors."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        return self._err

    @property
    def json(self) -> bool:
        """True when ``--output json`` was given."""
        return self.output is OutputFormat.JSON

    @property
    def interactive(self) -> bool:
        """True when live progress may redraw: stderr is a TTY and output is text."""
        return not self.json and sys.stderr.isatty()

    def emit_json(self, document: Any) -> None:
        """Print one JSON document on stdout, with secrets redacted."""
        text = json.dumps(document, indent=2, sort_keys=False, default=str)
        sys.stdout.write(self.redactor(text) + "\n")
        sys.stdout.flush()

    def echo(self, text: str) -> None:
        """Print plain data on stdout, with secrets redacted, no markup interpretation."""
        sys.stdout.write(self.redactor(text) + "\n")
        sys.stdout.flush()

    def note(self, text: str, *, style: str | None = None) -> None:
        """Print a line for people on stderr, with secrets redacted."""
        self.err.print(self.redactor(text), style=style, markup=False, highlight=False)


def get_app(ctx: typer.Context) -> AppContext:
    """The :class:`AppContext` of this invocation (a default one outside the main callback)."""
    obj = ctx.find_root().obj
    if isinstance(obj, AppContext):
        return obj
    app = AppContext()
    ctx.find_root().obj = app
    return app
