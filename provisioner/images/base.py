"""``image base``: a minimal Debian base image from a mirror, for hosts with no registry.

debootstrap (``--variant=minbase``) builds a root filesystem with Python, venv, pip, git, CA
certificates and curl; apt lists, caches, docs and locales are stripped; the tree is tarred and
``docker import``-ed. Two caches make repeats cheap: debootstrap's ``.deb`` cache and the
stripped root filesystem tarball (so re-importing after ``docker rmi`` takes seconds).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.docker_api import BuildEvent, BuildEventKind, DockerAPI
from provisioner.errors import ImageError, UsageError
from provisioner.images.context import host_writes
from provisioner.images.events import ImageStage, Progress, Stage
from provisioner.settings import cache_dir

DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_REPOSITORY = "runnerctl/base"

#: Debian suite -> the Python its ``python3`` package carries, and its glibc.
SUITES: dict[str, tuple[str, str]] = {
    "bookworm": ("3.11", "2.36"),
    "trixie": ("3.13", "2.41"),
}
PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-venv",
    "python3-pip",
    "git",
    "ca-certificates",
    "curl",
    "passwd",
    "adduser",
)
#: Paths (relative to the root filesystem) emptied before the tarball is made.
STRIP: tuple[str, ...] = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "tmp",
)
IMPORT_CHANGES: tuple[str, ...] = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["bash"]',
)


@dataclass(frozen=True)
class BaseResult:
    """The outcome of ``image base``."""

    tag: str
    image_id: str
    suite: str
    python: str
    size: int
    skipped: bool
    from_cache: bool
    seconds: float


def suite_for_python(python: str) -> str | None:
    """The Debian suite whose ``python3`` is ``python`` (``3.11`` → ``bookworm``)."""
    for suite, (version, _) in SUITES.items():
        if version == python:
            return suite
    return None


def default_tag(suite: str) -> str:
    """``runnerctl/base:<suite>``."""
    return f"{BASE_REPOSITORY}:{suite}"


def rootfs_key(suite: str, mirror: str) -> str:
    """Cache key of a stripped root filesystem tarball."""
    doc = "\n".join([suite, mirror.rstrip("/"), *PACKAGES, *STRIP, "v1"])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def check_suite(suite: str) -> str:
    """Accept a Debian suite the base image can be made from; refuse anything else (usage)."""
    if suite not in SUITES:
        raise UsageError(
            f"Unknown Debian suite {suite!r}",
            hint=f"choose one of: {', '.join(SUITES)}",
        )
    return suite


def build_base(
    suite: str = "bookworm",
    *,
    docker: DockerAPI,
    mirror: str = DEFAULT_MIRROR,
    tag: str | None = None,
    rebuild: bool = False,
    cache: Path | None = None,
    on_event: Progress | None = None,
) -> BaseResult:
    """Make (or reuse) ``runnerctl/base:<suite>``; idempotent unless ``rebuild``."""
    started = time.monotonic()
    python, _ = SUITES[check_suite(suite)]
    tag = tag or default_tag(suite)
    emit = on_event or (lambda _e: None)
    existing = docker.inspect_image(tag)
    if existing is not None and not rebuild:
        emit(ImageStage(Stage.BASE_EXISTS, tag, existing.id))
        return BaseResult(
            tag, existing.id, suite, python, existing.size, True, False, time.monotonic() - started
        )
    root = cache or cache_dir()
    tarball = root / "base" / f"{suite}-{rootfs_key(suite, mirror)}.tar"
    from_cache = tarball.is_file() and not rebuild
    if not from_cache:
        with host_writes(root):
            _bootstrap(suite, mirror, tarball, cache=root, emit=emit)
    else:
        emit(ImageStage(Stage.ROOTFS_CACHED, str(tarball)))
    emit(ImageStage(Stage.IMPORTING, tarball.name))
    image_id = docker.import_tarball(tarball, changes=IMPORT_CHANGES)
    docker.tag_image(image_id, tag)
    info = docker.inspect_image(tag)
    size = info.size if info else 0
    emit(ImageStage(Stage.IMPORTED, tag, image_id))
    return BaseResult(
        tag, image_id, suite, python, size, False, from_cache, time.monotonic() - started
    )


def _debootstrap() -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if found is None:
        raise ImageError(
            "debootstrap is not installed",
            hint="run make setup (apt-get install debootstrap), or pass --base IMAGE",
        )
    return found


def _bootstrap(suite: str, mirror: str, tarball: Path, *, cache: Path, emit: Progress) -> None:
    binary = _debootstrap()
    if os.geteuid() != 0:
        raise ImageError(
            "debootstrap needs root to build a base image",
            hint="run runnerctl image base as root (sudo), or pass --base IMAGE",
        )
    debs = cache / "debootstrap" / suite
    debs.mkdir(parents=True, exist_ok=True)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"rootfs-{suite}-", dir=tarball.parent))
    target = work / "rootfs"
    part = work / "rootfs.tar.part"  # private to this run; renamed into place when complete
    try:
        cmd = [
            binary,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            "--components=main",
            f"--cache-dir={debs}",
            suite,
            str(target),
            mirror,
        ]
        emit(ImageStage(Stage.BOOTSTRAPPING, suite, mirror))
        _stream(cmd, emit, what=f"debootstrap of {suite}", hint=_mirror_hint(mirror))
        emit(ImageStage(Stage.STRIPPING))
        _strip(target)
        emit(ImageStage(Stage.PACKING, tarball.name))
        _stream(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", str(part), "."],
            emit,
            what="packing the root filesystem",
            hint="is the cache directory writable and is there disk space?",
        )
        part.replace(tarball)
    finally:
        part.unlink(missing_ok=True)
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


def _mirror_hint(mirror: str) -> str:
    return f"check that {mirror} is reachable (proxy?) and serves this suite, or pass --mirror"


def _stream(cmd: list[str], emit: Progress, *, what: str, hint: str) -> None:
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise ImageError(f"Could not start {cmd[0]}: {exc.strerror}", hint=hint) from exc
    tail: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip()
        if line:
            tail.append(line)
            del tail[:-20]
            emit(BuildEvent(BuildEventKind.OUTPUT, line))
    if proc.wait() != 0:
        detail = "\n".join(tail[-8:])
        raise ImageError(f"{what} failed (exit {proc.returncode}):\n{detail}", hint=hint)


def _strip(target: Path) -> None:
    for rel in STRIP:
        path = target / rel
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif path.exists():
            path.unlink()
    (target / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (target / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (target / "tmp").chmod(0o1777)
    docs = target / "usr/share/doc"
    if docs.is_dir():  # keep the copyright files, drop the rest (like Debian's slim images)
        for item in docs.rglob("*"):
            if item.is_file() and item.name != "copyright":
                item.unlink()


def _unmount_below(path: Path) -> None:
    """Unmount whatever a failed debootstrap left mounted inside ``path`` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    points = [m.split()[1] for m in mounts if len(m.split()) > 1]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
