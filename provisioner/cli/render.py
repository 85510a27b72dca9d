"""How results look: JSON from dataclasses, tables, the live job table, local times.

Commands render through these helpers only, so every JSON document is built the same way
(dataclasses, enums, datetimes and paths converted in one place) and every table looks alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.cli.context import AppContext
    from provisioner.gitlab.models import Job


def to_jsonable(
    value: Any,
    *,
    rename: Mapping[str, str] | None = None,
    only: Iterable[str] | None = None,
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
) -> Any:
    """Plain JSON values for ``value``: dataclasses, enums, datetimes, paths, sequences, maps.

    Datetimes are shown in the user's zone (ISO 8601 with the offset). For a top-level
    dataclass, ``only`` picks and orders the fields, ``rename`` gives a field another key and
    ``convert`` applies a function to a field's value before conversion.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = list(only) if only is not None else [f.name for f in dataclasses.fields(value)]
        rename = rename or {}
        convert = convert or {}
        doc: dict[str, Any] = {}
        for name in names:
            field_value = getattr(value, name)
            if name in convert:
                field_value = convert[name](field_value)
            doc[rename.get(name, name)] = to_jsonable(field_value)
        return doc
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, datetime):
        return value.astimezone().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def dumps(document: Any) -> str:
    """One JSON document, indented, in the order the fields were given."""
    return json.dumps(to_jsonable(document), indent=2, sort_keys=False, default=str)


def local_time(moment: datetime | None, *, never: str = "never") -> str:
    """A moment in the user's zone, for people (``never`` when there is none)."""
    if moment is None:
        return never
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    wrap: Sequence[str] = (),
    fold: bool = False,
) -> Any:
    """A borderless rich table: only the columns named in ``wrap`` may wrap, or all fold."""
    from rich.table import Table

    result = Table(box=None, show_edge=False, pad_edge=False)
    for column in columns:
        if fold:
            result.add_column(column, overflow="fold")
        else:
            result.add_column(column, no_wrap=column not in wrap)
    for row in rows:
        result.add_row(*row)
    return result


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned plain-text lines (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _status(value: object) -> str:
    return str(getattr(value, "value", value))


class JobTable:
    """Live job table on a TTY, plain lines otherwise (and nothing with --output json)."""

    def __init__(self, app: AppContext, *, title: str = "smoke pipeline") -> None:
        self._app = app
        self._title = title
        self._live: Any = None
        self._seen: dict[str, str] = {}

    def update(self, jobs: tuple[Job, ...]) -> None:
        """Show the jobs' current state (only changes, when not on a TTY)."""
        if self._app.json:
            return
        if self._app.interactive:
            from rich.live import Live

            if self._live is None:
                self._live = Live(console=self._app.err, refresh_per_second=4, transient=False)
                self._live.start()
            self._live.update(self._table(jobs))
            return
        for job in jobs:
            status = _status(job.status)
            if self._seen.get(job.name) != status:
                self._seen[job.name] = status
                took = f" ({job.duration:.1f} s)" if job.duration is not None else ""
                self._app.note(f"  {job.stage:<19} {job.name:<19} {status}{took}")

    def close(self) -> None:
        """Stop redrawing."""
        if self._live is not None:
            self._live.stop()

    def _table(self, jobs: tuple[Job, ...]) -> Any:
        from rich.table import Table

        result = Table(title=self._title)
        for column in ("stage", "job", "status", "duration"):
            result.add_column(column)
        for job in jobs:
            took = f"{job.duration:.1f} s" if job.duration is not None else ""
            result.add_row(job.stage, job.name, _status(job.status), took)
        return result
