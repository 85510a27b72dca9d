"""The stand-in runner: runs sandbox jobs from the config.toml runnerctl wrote.

The official gitlab-runner cannot be installed on these machines, so this package executes jobs
the way gitlab-runner does — same config.toml, same job protocol, shell and docker executors,
real git, artifacts, masked trace streaming — to prove that what runnerctl registers and
configures actually runs jobs. It is a rehearsal tool: against a real GitLab, the official
gitlab-runner runs the jobs. It talks to GitLab only over HTTP and never imports the sandbox.

Typical use from Python (tests, ``runnerctl demo``)::

    handle = start_background(Path("config.toml"))
    ...                                   # create pipelines; jobs run
    summary = handle.stop()               # stop taking jobs, finish running ones
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioner.sandbox_runner.build import JobResult, JobState
from provisioner.sandbox_runner.config import RunnerEntry, RunnerSetup, load_setup
from provisioner.sandbox_runner.service import (
    EventLevel,
    EventSink,
    RunnerEvent,
    RunnerService,
    RunSummary,
)

__all__ = [
    "EventLevel",
    "JobResult",
    "JobState",
    "RunSummary",
    "RunnerEntry",
    "RunnerEvent",
    "RunnerHandle",
    "RunnerService",
    "RunnerSetup",
    "default_work_dir",
    "load_setup",
    "running",
    "start_background",
]


def default_work_dir() -> Path:
    """Where build directories live unless ``builds_dir`` says otherwise."""
    from provisioner.settings import cache_dir

    return cache_dir() / "sandbox-runner"


@dataclass
class RunnerHandle:
    """A runner running in background threads."""

    service: RunnerService

    @property
    def results(self) -> tuple[JobResult, ...]:
        """Jobs finished so far."""
        return self.service.results

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run ends by itself (``once``/``max_jobs``); False on timeout."""
        return self.service.wait(timeout)

    def stop(self, *, force: bool = False, timeout: float | None = None) -> RunSummary:
        """Stop taking jobs, let running ones finish (or kill them with ``force``)."""
        return self.service.stop(force=force, timeout=timeout)


def start_background(
    config_path: Path,
    *,
    work_dir: Path | None = None,
    on_event: EventSink | None = None,
    once: bool = False,
    max_jobs: int | None = None,
    user: str | None = None,
) -> RunnerHandle:
    """Load and validate ``config_path``, verify the runners, and start polling.

    Raises:
        ConfigError: the config is missing or invalid, or asks for privileged containers.
    """
    setup = load_setup(Path(config_path))
    service = RunnerService(
        setup,
        work_dir=work_dir or default_work_dir(),
        on_event=on_event,
        once=once,
        max_jobs=max_jobs,
        user=user,
    )
    service.start()
    return RunnerHandle(service)


@contextmanager
def running(config_path: Path, **kwargs: object) -> Iterator[RunnerHandle]:
    """``start_background`` as a context manager that stops the runner on exit."""
    handle = start_background(config_path, **kwargs)  # type: ignore[arg-type]
    try:
        yield handle
    finally:
        handle.stop(timeout=30)
