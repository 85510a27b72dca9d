"""Cron times and the schedule clock of the sandbox's pipeline schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioner.sandbox.schedules import ScheduleClock, next_run, valid_cron, zone


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("* * * * *", "2026-12-03T10:00:00", "2026-12-03T10:01:00"),
        ("* * * * *", "2026-12-03T10:00:30.5", "2026-12-03T10:01:00"),
        ("*/15 * * * *", "2026-12-03T10:14:59", "2026-12-03T10:15:00"),
        ("30 2 * * *", "2026-12-03T10:00:00", "2026-12-04T02:30:00"),
        ("0 0 1 * *", "2026-12-31T23:59:00", "2027-01-01T00:00:00"),
        ("0 9 * * 1-5", "2026-12-04T09:00:00", "2026-12-07T09:00:00"),  # Friday -> Monday
    ],
)
def test_next_run_is_strictly_after(cron: str, after: str, expected: str) -> None:
    assert next_run(cron, "UTC", _at(after)) == _at(expected)


def test_next_run_uses_the_schedule_time_zone() -> None:
    # 02:30 in Berlin is 01:30 UTC in winter and 00:30 UTC in summer.
    assert next_run("30 2 * * *", "Europe/Berlin", _at("2026-12-03T10:00:00")) == _at(
        "2026-12-04T01:30:00"
    )
    assert next_run("30 2 * * *", "Europe/Berlin", _at("2026-07-03T10:00:00")) == _at(
        "2026-07-04T00:30:00"
    )


@pytest.mark.parametrize(
    ("cron", "ok"),
    [
        ("* * * * *", True),
        ("0 3 * * 1-5", True),
        ("*/5 2-4 1,15 * MON", True),
        ("61 * * * *", False),
        ("* * * *", False),
        ("every day", False),
        ("", False),
    ],
)
def test_valid_cron(cron: str, ok: bool) -> None:
    assert valid_cron(cron) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("UTC", True), ("Europe/Berlin", True), ("Mars/Olympus", False), ("../etc/passwd", False)],
)
def test_zone(name: str, ok: bool) -> None:
    assert (zone(name) is not None) is ok


class _Clocks:
    def __init__(self) -> None:
        self.seconds = 100.0

    def monotonic(self) -> float:
        return self.seconds


def test_the_clock_runs_in_real_time_by_default() -> None:
    clocks = _Clocks()
    start = _at("2026-12-03T10:00:00")
    clock = ScheduleClock(wall=lambda: start, monotonic=clocks.monotonic)
    clocks.seconds += 90
    assert clock.now() == start + timedelta(seconds=90)
    assert clock.real_seconds(60) == 60


def test_a_fast_tick_makes_each_real_half_second_a_cron_minute() -> None:
    clocks = _Clocks()
    start = _at("2026-12-03T10:00:00")
    clock = ScheduleClock(tick=0.5, wall=lambda: start, monotonic=clocks.monotonic)
    assert clock.speed == 120
    clocks.seconds += 1.5
    assert clock.now() == start + timedelta(minutes=3)
    assert clock.real_seconds(60) == 0.5
    # A '* * * * *' schedule made now comes due half a real second later.
    due = next_run("* * * * *", "UTC", clock.now())
    assert clock.real_seconds((due - clock.now()).total_seconds()) == 0.5


def test_the_tick_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScheduleClock(tick=0)
