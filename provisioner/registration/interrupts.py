"""Signals during a registration: an interrupt fails the transaction; the rollback finishes.

``register`` creates a runner in GitLab before it writes config.toml. Ctrl-C (SIGINT) or a
SIGTERM in between must not leave that runner behind: both are taken as a failure of the
transaction, which deletes the runner again. While that rollback runs, a further interrupt is
refused (said once), because stopping it would leave exactly the orphan it exists to remove.
Signal handlers can only be installed from the main thread; elsewhere these are no-ops.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger(__name__)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def interrupts_fail() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`KeyboardInterrupt` inside the block."""
    if not _main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_refused(what: str) -> Iterator[None]:
    """SIGINT and SIGTERM are refused inside the block, with one warning naming ``what``."""
    if not _main_thread():
        yield
        return
    told: list[bool] = []

    def refuse(_signum: int, _frame: FrameType | None) -> None:
        if not told:
            told.append(True)
            log.warning("Interrupt refused: %s first, or it would stay behind.", what)

    previous = {sig: signal.signal(sig, refuse) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
