"""Writing the values and Secret files: atomically, with their modes, all or nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from provisioner.errors import ConfigError, UsageError


def check_target(path: Path, *, option: str) -> None:
    """Refuse a target that cannot be written as a file, before anything happens.

    Raises:
        UsageError: ``path`` is a directory or its parent does not exist.
    """
    if path.is_dir():
        raise UsageError(
            f"{option} {path} is a directory.",
            hint=f"Give a file name, e.g. {option} {path / 'values.yaml'}.",
        )
    if not path.parent.is_dir():
        raise UsageError(
            f"{option} {path}: the directory {path.parent} does not exist.",
            hint="Create it first, or write the file elsewhere.",
        )


def write_files(files: list[tuple[Path, str, int]]) -> list[bool]:
    """Write each ``(path, text, mode)`` atomically; returns which files changed.

    All texts are staged in temp files first, so a failure leaves every target as it was.

    Raises:
        ConfigError: a file cannot be written.
    """
    staged: list[tuple[Path, str]] = []
    changed: list[bool] = []
    try:
        for path, text, mode in files:
            same = path.is_file() and path.read_text(encoding="utf-8") == text
            changed.append(not same)
            if same:
                os.chmod(path, mode)
                continue
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((path, temp))
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for path, temp in staged:
            os.replace(temp, path)
    except OSError as exc:
        for _path, temp in staged:
            Path(temp).unlink(missing_ok=True)
        raise ConfigError(
            f"Cannot write {exc.filename or 'the chart files'}: {exc.strerror or exc}.",
            hint="Choose a writable directory; no file was changed.",
        ) from None
    return changed
