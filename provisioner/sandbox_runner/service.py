"""The runner process: one worker per ``[[runners]]`` entry, jobs on threads.

Honours ``concurrent`` (jobs across all runners), per-runner ``limit`` and
``request_concurrency`` (job requests in flight), and ``check_interval`` (seconds between polls
that found nothing). Each token is verified first; a runner whose token is not valid logs
gitlab-runner's ``Verifying runner... is not valid`` line and stays idle while the others work.

Shutdown: :meth:`RunnerService.stop` stops taking jobs and lets running ones finish for up to
``shutdown_timeout`` seconds; then (or on a second stop with ``force``) they are killed and
reported as ``runner_system_failure`` ("aborted: terminated").
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import GitLabError
from provisioner.events import Event, Reporter
from provisioner.sandbox_runner.build import Build, JobContext, JobResult, JobState
from provisioner.sandbox_runner.config import RunnerEntry, RunnerSetup
from provisioner.sandbox_runner.executors import DockerFactory, executor_for
from provisioner.sandbox_runner.job import parse_job
from provisioner.sandbox_runner.protocol import JobClient, Verdict, status_text
from provisioner.sandbox_runner.sources import strip_credentials

if TYPE_CHECKING:
    from provisioner.docker_api import DockerAPI

log = logging.getLogger(__name__)


class EventLevel(StrEnum):
    """How a runner log line is marked."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class RunnerEvent(Event):
    """One line of the runner's own log (not a job log)."""

    level: EventLevel
    message: str
    runner: str = ""
    job_id: int | None = None
    result: JobResult | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


EventSink = Reporter[RunnerEvent]


@dataclass(frozen=True)
class RunSummary:
    """What a run of the runner did."""

    results: tuple[JobResult, ...]
    idle_runners: tuple[str, ...]

    @property
    def failed(self) -> tuple[JobResult, ...]:
        """Jobs that did not succeed."""
        return tuple(r for r in self.results if r.state is not JobState.SUCCESS)


def system_id_for(config_path: Path) -> str:
    """``.runner_system_id`` beside config.toml, created as gitlab-runner does when missing."""
    path = config_path.parent / ".runner_system_id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except OSError:
        pass
    value = "s_" + secrets.token_hex(6)
    try:
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
    except OSError:
        pass
    return value


def _docker_connect(host: str) -> DockerAPI:
    from provisioner.docker_api import DockerAPI

    return DockerAPI.from_host(host, timeout=120)


class RunnerService:
    """Polls, runs and reports jobs until stopped (or until ``once``/``max_jobs`` say so)."""

    def __init__(
        self,
        setup: RunnerSetup,
        *,
        work_dir: Path,
        on_event: EventSink | None = None,
        once: bool = False,
        max_jobs: int | None = None,
        user: str | None = None,
        connect: DockerFactory | None = None,
    ) -> None:
        self.setup = setup
        self.work_dir = work_dir
        self.on_event = on_event
        self.once = once
        self.max_jobs = max_jobs
        self.user = user
        self.connect: DockerFactory = connect or _docker_connect
        self.system_id = system_id_for(setup.path)
        self._lock = threading.Condition()
        self._running = 0
        self._per_runner: dict[int, int] = {}
        self._slots: dict[int, set[int]] = {}
        self._started_jobs = 0
        self._idle_rounds: dict[int, int] = {}
        self._last_activity = time.monotonic()
        self._results: list[JobResult] = []
        self._idle: list[str] = []
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._job_threads: list[threading.Thread] = []

    # -- events -----------------------------------------------------------------------------

    def _emit(
        self,
        level: EventLevel,
        message: str,
        *,
        runner: str = "",
        job_id: int | None = None,
        result: JobResult | None = None,
    ) -> None:
        event = RunnerEvent(level, message, runner=runner, job_id=job_id, result=result)
        log.info("%s: %s  runner=%s", level.value, message, runner or "-")
        if self.on_event is not None:
            self.on_event(event)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Verify every runner and start its pollers (returns at once)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.chmod(0o700)
        self._emit(
            EventLevel.INFO,
            f"Starting the stand-in runner with {len(self.setup.runners)} runners, "
            f"concurrent={self.setup.concurrent}, check_interval={self.setup.check_interval:g}s",
        )
        active = 0
        for entry in self.setup.runners:
            if not entry.supported:
                self._emit(
                    EventLevel.WARNING,
                    f'executor "{entry.executor}" is not supported by the stand-in runner '
                    "(shell and docker are); this runner stays idle",
                    runner=entry.short_token,
                )
                self._idle.append(entry.name)
                continue
            client = JobClient(entry.url, executor=entry.executor, shell=entry.shell)
            verdict, detail = client.verify(entry.token, self.system_id)
            level = EventLevel.INFO if verdict is Verdict.VALID else EventLevel.ERROR
            self._emit(
                level,
                f"Verifying runner... {verdict.value}" + (f"  {detail}" if detail else ""),
                runner=entry.short_token,
            )
            if verdict is not Verdict.VALID:
                self._idle.append(entry.name)
                client.close()
                continue
            active += 1
            self._per_runner[entry.index] = 0
            self._slots[entry.index] = set()
            for n in range(entry.request_concurrency):
                thread = threading.Thread(
                    target=self._poll_loop,
                    args=(entry, client),
                    name=f"runner-{entry.short_token}-{n}",
                    daemon=True,
                )
                self._threads.append(thread)
        if active == 0:
            self._emit(EventLevel.WARNING, "No runner can take jobs: nothing to do")
            self._done.set()
            return
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._watch_done, name="runner-watch", daemon=True).start()

    def stop(self, *, force: bool = False, timeout: float | None = None) -> RunSummary:
        """Stop taking jobs; wait for running ones (then kill them) and return the summary."""
        self._stopping.set()
        if force:
            self._abort.set()
        grace = self.setup.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + grace
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._lock.wait(0.2)
            if self._running:
                self._abort.set()
                while self._running:
                    self._lock.wait(0.2)
        for thread in self._threads:
            thread.join(timeout=5)
        self._done.set()
        return self.summary()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run is over (``once``/``max_jobs`` reached, or stopped)."""
        return self._done.wait(timeout)

    def summary(self) -> RunSummary:
        """Results so far."""
        with self._lock:
            return RunSummary(tuple(self._results), tuple(self._idle))

    @property
    def results(self) -> tuple[JobResult, ...]:
        """Finished jobs, in the order they finished."""
        with self._lock:
            return tuple(self._results)

    # -- polling ----------------------------------------------------------------------------

    def _may_take(self, entry: RunnerEntry) -> bool:
        if self._stopping.is_set():
            return False
        if self.max_jobs is not None and self._started_jobs >= self.max_jobs:
            return False
        if self._running >= self.setup.concurrent:
            return False
        return not (entry.limit and self._per_runner[entry.index] >= entry.limit)

    def _poll_loop(self, entry: RunnerEntry, client: JobClient) -> None:
        last_update = ""
        while not self._stopping.is_set():
            with self._lock:
                while not self._may_take(entry) and not self._stopping.is_set():
                    if self.max_jobs is not None and self._started_jobs >= self.max_jobs:
                        break
                    self._lock.wait(0.5)
                if not self._may_take(entry):
                    if self.max_jobs is not None and self._started_jobs >= self.max_jobs:
                        return
                    continue
                # Reserve the slot before asking, so concurrent pollers cannot overshoot.
                self._running += 1
                self._per_runner[entry.index] += 1
            payload = None
            asked_at = time.monotonic()
            try:
                status, payload, last_update = client.request_job(
                    entry.token, self.system_id, last_update
                )
            except GitLabError as exc:
                status = -1
                self._emit(
                    EventLevel.ERROR,
                    f"Checking for jobs... failed  {exc.message}",
                    runner=entry.short_token,
                )
            if payload is None:
                with self._lock:
                    self._running -= 1
                    self._per_runner[entry.index] -= 1
                    # Only a poll sent after the last job started or ended says "drained",
                    # and only GitLab's 204: a throttled or failed poll says nothing.
                    if asked_at > self._last_activity and status == 204:
                        self._idle_rounds[entry.index] = self._idle_rounds.get(entry.index, 0) + 1
                    self._lock.notify_all()
                if status == 403:
                    self._emit(
                        EventLevel.ERROR, "Checking for jobs... forbidden", runner=entry.short_token
                    )
                elif status not in (204, -1):
                    self._emit(
                        EventLevel.WARNING,
                        f"Checking for jobs... failed  status={status_text(status)}",
                        runner=entry.short_token,
                    )
                self._stopping.wait(self.setup.check_interval)
                continue
            with self._lock:
                self._started_jobs += 1
                self._idle_rounds.clear()
                self._last_activity = time.monotonic()
                slot = min(set(range(len(self._slots[entry.index]) + 1)) - self._slots[entry.index])
                self._slots[entry.index].add(slot)
            thread = threading.Thread(
                target=self._run_job,
                args=(entry, client, payload, slot),
                name=f"job-{payload.get('id')}",
                daemon=True,
            )
            with self._lock:
                self._job_threads.append(thread)
            thread.start()

    def _run_job(
        self, entry: RunnerEntry, client: JobClient, payload: dict[str, object], slot: int
    ) -> None:
        result: JobResult | None = None
        try:
            job = parse_job(payload)
            self._emit(
                EventLevel.INFO,
                f"Checking for jobs... received  job={job.id} "
                f"repo_url={strip_credentials(job.git.repo_url)}",
                runner=entry.short_token,
                job_id=job.id,
            )
            executor = executor_for(
                entry,
                job,
                work_dir=self.work_dir,
                concurrent_id=slot,
                connect=self.connect,
                user=self.user,
            )
            ctx = JobContext(
                entry=entry,
                client=client,
                executor=executor,
                system_id=self.system_id,
                concurrent_id=slot,
                stop_reason=lambda: "terminated" if self._abort.is_set() else None,
            )
            result = Build(job, ctx).run()
            level = EventLevel.INFO if result.state is JobState.SUCCESS else EventLevel.ERROR
            word = {
                JobState.SUCCESS: "Job succeeded",
                JobState.FAILED: f"Job failed  failure_reason={result.failure_reason}",
                JobState.CANCELED: "Job canceled",
            }[result.state]
            self._emit(
                level,
                f"{word}  duration_s={result.duration:.3f} job={job.id} project={job.project_id}",
                runner=entry.short_token,
                job_id=job.id,
                result=result,
            )
        except Exception as exc:
            self._emit(
                EventLevel.ERROR,
                f"Job crashed: {type(exc).__name__}: {exc}",
                runner=entry.short_token,
            )
        finally:
            with self._lock:
                if result is not None:
                    self._results.append(result)
                self._running -= 1
                self._per_runner[entry.index] -= 1
                self._slots[entry.index].discard(slot)
                self._idle_rounds.clear()
                self._last_activity = time.monotonic()
                self._lock.notify_all()

    def _watch_done(self) -> None:
        """End the run for ``--once`` (queue drained) and ``--max-jobs`` (N jobs finished)."""
        pollers = len(self._threads)
        while not self._done.is_set() and not self._stopping.is_set():
            with self._lock:
                finished = len(self._results)
                if self.max_jobs is not None and finished >= self.max_jobs and not self._running:
                    break
                if self.once and not self._running and pollers:
                    rounds = [self._idle_rounds.get(e, 0) for e in self._per_runner]
                    if rounds and min(rounds) >= 1 and sum(rounds) >= pollers:
                        break
                self._lock.wait(0.2)
        self._stopping.set()
        with self._lock:
            while self._running:
                self._lock.wait(0.2)
        self._done.set()
