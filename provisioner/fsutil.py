"""Crash-safe file writes.

Every file a user keeps (config.toml, RBAC manifests, JUnit reports) is written the same way: a
temp file in the same directory (so the rename cannot cross a filesystem), fsync, the mode set
before the rename, ``os.replace``, then an fsync of the directory so the new name survives a
power cut. A reader sees the old file or the new one, never half of one; a failure leaves no
temp file behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

#: Called with a stage name and the temp file's path: "temp-partial" (half of the data is
#: written), "before-rename" (the temp file is complete and fsynced). Fault-injection tests use
#: it to stop a write at that point; the config store makes its backup at "before-rename".
StageHook = Callable[[str, Path], None]


def temp_name(path: Path) -> Path:
    """A fresh temp path next to ``path``: ``.<name>.<pid>.<random>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(
    path: Path,
    data: str | bytes,
    *,
    mode: int,
    owner_like: Path | None = None,
    hook: StageHook | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically, with permission bits ``mode``.

    Args:
        path: the file to write; its directory must exist.
        data: the content (text is written as UTF-8).
        mode: the permission bits of the new file, e.g. ``0o600`` for secrets.
        owner_like: when running as root, give the new file this file's owner and group
            (so a root-run rewrite of a user's file stays theirs).
        hook: see :data:`StageHook`.

    Raises:
        OSError: the write failed; ``path`` is unchanged and no temp file is left.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temp = temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode & 0o777)
    try:
        try:
            half = len(raw) // 2
            _write_all(fd, raw[:half])
            if hook is not None:
                hook("temp-partial", temp)
            _write_all(fd, raw[half:])
            os.fsync(fd)
            # The umask may have narrowed the mode given to os.open; set it exactly.
            os.fchmod(fd, mode & 0o777)
            if owner_like is not None and os.geteuid() == 0:
                st = os.stat(owner_like)
                os.fchown(fd, st.st_uid, st.st_gid)
        finally:
            os.close(fd)
        if hook is not None:
            hook("before-rename", temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries (a rename is durable only once its directory is)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
