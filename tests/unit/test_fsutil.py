"""atomic_write: content, mode, and nothing left behind when a write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from provisioner.fsutil import atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_text_and_bytes_with_the_mode_asked_for(tmp_path: Path) -> None:
    secret = tmp_path / "config.toml"
    atomic_write(secret, 'concurrent = 1\nname = "é"\n', mode=0o600)
    assert secret.read_text(encoding="utf-8") == 'concurrent = 1\nname = "é"\n'
    assert _mode(secret) == 0o600

    report = tmp_path / "junit.xml"
    atomic_write(report, b"<testsuite/>\n", mode=0o644)
    assert report.read_bytes() == b"<testsuite/>\n"
    assert _mode(report) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "junit.xml"]


def test_the_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "rbac.yaml", "kind: Role\n", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "rbac.yaml") == 0o644


def test_replacing_keeps_no_temp_and_changes_the_inode(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    before = path.stat().st_ino
    atomic_write(path, "new\n", mode=0o600)
    assert path.read_text() == "new\n"
    assert _mode(path) == 0o600
    # A rename, not an in-place rewrite: readers holding the old file keep the old bytes.
    assert path.stat().st_ino != before
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


@pytest.mark.parametrize("stage", ["temp-partial", "before-rename"])
def test_a_failure_leaves_the_old_file_and_no_temp(tmp_path: Path, stage: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text("old\n")
    seen: list[tuple[str, str]] = []

    def fail(name: str, temp: Path) -> None:
        seen.append((name, temp.read_text()))
        if name == stage:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new content\n", mode=0o600, hook=fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]
    # The hook saw the temp file half-written, then complete.
    expected = [("temp-partial", "new co"), ("before-rename", "new content\n")]
    assert seen == expected[: 1 if stage == "temp-partial" else 2]


def test_a_missing_directory_is_an_oserror_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "config.toml", "x", mode=0o600)
    assert list(tmp_path.iterdir()) == []
