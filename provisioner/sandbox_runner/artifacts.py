"""Artifacts: archive the declared paths after the script, extract dependencies before it.

Paths are doublestar globs relative to the project directory, as gitlab-runner's
artifacts-uploader reads them; a directory brings everything below it. Archives keep file
modes; reports in ``gzip`` format are one gzip member per file, concatenated, which is what
GitLab's report parsers expect.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import os
import stat
import subprocess
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from provisioner.sandbox_runner.job import ArtifactSpec


def _within(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _excluded(rel: str, patterns: Iterable[str]) -> bool:
    return any(
        fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.rstrip("/") + "/*") for p in patterns
    )


def _untracked(root: Path) -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1"},
        )
    except OSError:
        return []
    return [p for p in out.stdout.decode("utf-8", "replace").split("\0") if p]


def collect(
    root: Path, spec: ArtifactSpec, report: Callable[[str], None], warn: Callable[[str], None]
) -> list[str]:
    """The files and directories ``spec`` selects under ``root`` (relative POSIX paths)."""
    chosen: dict[str, None] = {}

    def add(rel: str) -> int:
        count = 0
        full = root / rel
        if _excluded(rel, spec.exclude) or not _within(root, full):
            return 0
        if full.is_dir() and not full.is_symlink():
            chosen.setdefault(rel.rstrip("/") + "/", None)
            count += 1
            for dirpath, dirnames, filenames in os.walk(full):
                dirnames.sort()
                base = Path(dirpath).relative_to(root).as_posix()
                for name in dirnames:
                    sub = f"{base}/{name}"
                    if not _excluded(sub, spec.exclude):
                        chosen.setdefault(sub + "/", None)
                        count += 1
                for name in sorted(filenames):
                    sub = f"{base}/{name}"
                    if not _excluded(sub, spec.exclude):
                        chosen.setdefault(sub, None)
                        count += 1
        elif full.exists() or full.is_symlink():
            chosen.setdefault(rel, None)
            count += 1
        return count

    for pattern in spec.paths:
        matches = sorted(glob.glob(pattern.rstrip("/") or ".", root_dir=root, recursive=True))
        found = sum(add(m) for m in matches)
        if found:
            report(f"{pattern}: found {found} matching artifact files and directories")
        else:
            warn(
                f"{pattern}: no matching files. Ensure that the artifact path is relative to the "
                "working directory"
            )
    if spec.untracked:
        files = _untracked(root)
        for rel in files:
            add(rel)
        report(f"untracked: found {len(files)} files")
    return list(chosen)


def write_zip(root: Path, entries: Iterable[str], target: Path) -> None:
    """A zip of ``entries`` (files keep their mode; directories are stored as entries)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for rel in entries:
            full = root / rel.rstrip("/")
            if rel.endswith("/"):
                info = zipfile.ZipInfo(rel)
                info.external_attr = (0o40755 << 16) | 0x10
                archive.writestr(info, b"")
            elif full.is_file():
                archive.write(full, rel)


def write_gzip(root: Path, entries: Iterable[str], target: Path) -> None:
    """Concatenated gzip members, one per file (directories are skipped)."""
    with target.open("wb") as out:
        for rel in entries:
            full = root / rel
            if rel.endswith("/") or not full.is_file():
                continue
            out.write(gzip.compress(full.read_bytes()))


def extract_zip(archive: Path, root: Path, *, world_writable: bool = False) -> int:
    """Extract into ``root`` (entries escaping it are refused); returns the number of files."""
    count = 0
    dir_mode = 0o777 if world_writable else 0o755
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = root / info.filename
            if not _within(root, target) or info.filename.startswith("/"):
                continue
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(dir_mode)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                while chunk := src.read(1 << 16):
                    dst.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if not mode or not stat.S_IMODE(mode):
                mode = 0o644
            if world_writable:
                mode |= 0o666
            target.chmod(mode)
            count += 1
    return count
