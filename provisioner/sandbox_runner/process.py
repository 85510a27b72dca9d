"""Host processes for the shell executor and for git: streamed output, timeout, kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Returns why the process must stop now ("canceled", "terminated"), or None to keep going.
StopCheck = Callable[[], str | None]


@dataclass(frozen=True)
class ProcessOutcome:
    """How a process ended: exit code, or why it was killed."""

    exit_code: int
    timed_out: bool = False
    stopped: str | None = None


def _pump(stream: IO[bytes], write: Callable[[str], None]) -> None:
    while True:
        chunk = stream.read1(8192) if hasattr(stream, "read1") else stream.read(8192)
        if not chunk:
            break
        write(chunk.decode("utf-8", "replace"))


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    write: Callable[[str], None],
    timeout: float | None = None,
    should_stop: StopCheck | None = None,
    stdin_path: Path | None = None,
    umask: int = -1,
    user: str | None = None,
) -> ProcessOutcome:
    """Run ``argv`` in its own process group, streaming stdout+stderr to ``write``.

    The whole group is SIGKILLed when ``timeout`` passes or ``should_stop`` says so, like
    gitlab-runner kills a job's process tree.
    """
    stdin = stdin_path.open("rb") if stdin_path is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=umask,
            user=user,
        )
    finally:
        if stdin_path is not None and not isinstance(stdin, int):
            stdin.close()
    assert proc.stdout is not None
    reader = threading.Thread(target=_pump, args=(proc.stdout, write), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout if timeout is not None else None
    timed_out = False
    stopped: str | None = None
    while True:
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
        elif should_stop is not None:
            stopped = should_stop()
        if timed_out or stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
    reader.join(timeout=5)
    proc.stdout.close()
    return ProcessOutcome(exit_code=proc.returncode, timed_out=timed_out, stopped=stopped)
