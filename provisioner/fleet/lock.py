"""The local lock that keeps two ``fleet apply`` runs of one fleet apart.

``flock`` on ``$XDG_STATE_HOME/runnerctl/fleet-<name>.lock`` (``~/.local/state`` by default),
taken without waiting and held for the whole apply. The holder writes its pid into the file, so
a second apply can say who holds it. The kernel drops the lock when the holder dies, so a
crashed apply never leaves a stale lock behind. In CI, the job's ``resource_group`` does the
same across runners.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from provisioner.errors import ProvisionerError

LOCKED_EXIT = 13


class FleetRefusedError(ProvisionerError, exit_code=LOCKED_EXIT):
    """``fleet apply`` refused to start: the lock is held, or a saved plan is stale (exit 13)."""


def state_dir() -> Path:
    """runnerctl's state directory: ``$XDG_STATE_HOME/runnerctl`` (``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "runnerctl"


def lock_path(fleet: str, directory: Path | None = None) -> Path:
    """The lock file of ``fleet``."""
    return (directory or state_dir()) / f"fleet-{fleet}.lock"


@contextlib.contextmanager
def fleet_lock(fleet: str, directory: Path | None = None) -> Iterator[Path]:
    """Hold the fleet's lock, or raise :class:`FleetRefusedError` at once naming the holder."""
    path = lock_path(fleet, directory)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise FleetRefusedError(
                f"Another `fleet apply` of fleet {fleet!r} is running (pid {holder}).",
                hint=f"Wait for it to finish, then re-run; the lock is {path}.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
