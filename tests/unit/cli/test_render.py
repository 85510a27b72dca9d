"""cli/render.py: one JSON conversion, tables, local times, the job table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum, StrEnum
from pathlib import Path

import pytest

from provisioner.cli.context import AppContext, OutputFormat
from provisioner.cli.render import JobTable, dumps, local_time, text_table, to_jsonable
from provisioner.gitlab.models import Job


class Color(StrEnum):
    RED = "red"


class Level(Enum):
    HIGH = 3


@dataclass(frozen=True)
class Inner:
    where: Path
    level: Level


@dataclass(frozen=True)
class Outer:
    name: str
    color: Color
    when: datetime | None
    day: date
    inner: Inner
    items: tuple[Inner, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def shout(self) -> str:
        return self.name.upper()


@pytest.fixture(autouse=True)
def _zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


VALUE = Outer(
    name="a",
    color=Color.RED,
    when=datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
    day=date(2026, 12, 3),
    inner=Inner(Path("/etc/x"), Level.HIGH),
    items=(Inner(Path("rel"), Level.HIGH),),
    labels={"k": 1},
)


def test_dataclasses_enums_datetimes_and_paths_become_json_values() -> None:
    assert to_jsonable(VALUE) == {
        "name": "a",
        "color": "red",
        "when": "2026-12-01T09:30:00+01:00",  # the user's zone
        "day": "2026-12-03",
        "inner": {"where": "/etc/x", "level": 3},
        "items": [{"where": "rel", "level": 3}],
        "labels": {"k": 1},
    }


def test_only_rename_and_convert_shape_a_document() -> None:
    doc = to_jsonable(
        VALUE,
        only=("shout", "color", "when"),
        rename={"color": "colour"},
        convert={"when": lambda w: None if w is None else w + timedelta(hours=1)},
    )
    assert json.dumps(doc) == (
        '{"shout": "A", "colour": "red", "when": "2026-12-01T10:30:00+01:00"}'
    )


def test_dumps_is_indented_and_keeps_field_order() -> None:
    assert dumps(Inner(Path("p"), Level.HIGH)) == '{\n  "where": "p",\n  "level": 3\n}'


def test_local_time_uses_the_users_zone() -> None:
    moment = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert local_time(moment) == "2026-07-01 18:00:00 CEST"
    assert local_time(None) == "never"


def test_text_table_aligns_columns() -> None:
    assert text_table([["NAME", "ID"], ["long-name", "1"], ["x", "22"]]) == [
        "NAME       ID",
        "long-name  1",
        "x          22",
    ]


def test_job_table_prints_only_changes_when_not_on_a_tty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = JobTable(AppContext())
    running = Job(id=1, name="pytest", stage="test", status="running")
    done = Job(id=1, name="pytest", stage="test", status="success", duration=2.5)
    table.update((running,))
    table.update((running,))
    table.update((done,))
    table.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "  test                pytest              running",
        "  test                pytest              success (2.5 s)",
    ]


def test_job_table_is_silent_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    table = JobTable(AppContext(output=OutputFormat.JSON))
    table.update((Job(id=1, name="pytest", stage="test", status="running"),))
    assert capsys.readouterr() == ("", "")
