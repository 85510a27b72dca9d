"""Pipeline schedules: cron times, the schedule clock, and the scheduler thread.

GitLab keeps ``next_run_at`` on each schedule and a worker (``PipelineScheduleWorker``) creates
the pipelines of the active schedules whose time has come, as the schedule's owner, with
``source=schedule``, then moves ``next_run_at`` to the cron's next time after now. The sandbox's
worker looks every cron minute (GitLab's default worker runs less often; a schedule never fires
more than once per worker run either way).

The clock can run fast: with ``tick`` real seconds per cron minute (60 = real time), a test with
``tick=0.5`` sees a ``* * * * *`` schedule fire every half second. ``next_run_at`` and
``created_at`` of schedules are on that clock. This module is the only importer of ``cronsim``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

log = logging.getLogger(__name__)

REAL_TIME_TICK = 60.0


def valid_cron(cron: str) -> bool:
    """Does ``cron`` parse as a five-field cron expression (GitLab's ``Fugit`` subset)?"""
    if len(cron.split()) != 5:
        return False
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


def zone(name: str) -> ZoneInfo | None:
    """The time zone of ``cron_timezone`` (an IANA name such as ``Europe/Berlin``), or None."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The cron's first time strictly after ``after``, in UTC (daylight saving as cron does)."""
    tz = zone(timezone) or ZoneInfo("UTC")
    start = after.astimezone(tz).replace(second=0, microsecond=0)
    moment: datetime = next(iter(CronSim(cron, start)))
    while moment <= after:  # `after` inside the minute `start` was cut to
        moment = next(iter(CronSim(cron, moment)))
    return moment.astimezone(UTC)


@dataclass
class ScheduleClock:
    """Cron time: real time when ``tick`` is 60, ``60 / tick`` times faster otherwise.

    Args:
        tick: real seconds that count as one minute of cron time.
        wall: the real wall clock at the start (injectable for tests).
        monotonic: the real monotonic clock (injectable for tests).
    """

    tick: float = REAL_TIME_TICK
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    _origin: datetime = field(init=False)
    _started: float = field(init=False)

    def __post_init__(self) -> None:
        if self.tick <= 0:
            raise ValueError("the schedule tick must be a positive number of seconds")
        self._origin = self.wall()
        self._started = self.monotonic()

    @property
    def speed(self) -> float:
        """Cron seconds per real second."""
        return REAL_TIME_TICK / self.tick

    def now(self) -> datetime:
        """The current cron time (UTC)."""
        return self._origin + timedelta(seconds=(self.monotonic() - self._started) * self.speed)

    def real_seconds(self, cron_seconds: float) -> float:
        """How long ``cron_seconds`` of cron time last in real time."""
        return cron_seconds / self.speed


class Scheduler:
    """A daemon thread that calls ``run_due(now)`` once per cron minute until stopped."""

    def __init__(self, clock: ScheduleClock, run_due: Callable[[datetime], int]) -> None:
        self.clock = clock
        self.run_due = run_due
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sandbox-scheduler")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        # Look four times per cron minute, at most once per 10 ms of real time, so that a
        # fast tick still fires each minute's schedules close to their time.
        interval = max(self.clock.real_seconds(15.0), 0.01)
        while not self._stop.wait(interval):
            try:
                self.run_due(self.clock.now())
            except Exception:
                log.exception("sandbox: the pipeline scheduler failed; it goes on")
