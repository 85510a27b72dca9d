"""The wheelhouse baked into job images: wheels fetched by pip on the host for the image's Python.

``pip download --only-binary=:all: --python-version X.Y --platform manylinux_<glibc>_<arch>``
resolves for the *image*, not the host, and never builds an sdist (an sdist would need an
isolated build and therefore the network). The result is cached under
``<cache>/wheelhouse/<key>`` where the key covers the Python version, the platform and every
requirement, so a second build with the same inputs does not touch the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import ImageError
from provisioner.settings import cache_dir

#: What every job image carries: the smoke pipeline's tooling and the build backends it needs.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "build",
    "twine",
    "setuptools",
    "wheel",
    "pytest",
    "pytest-cov",
    "cryptography",
    "uv",
)

_WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


@dataclass(frozen=True)
class Wheel:
    """One wheel file of the wheelhouse."""

    name: str
    version: str
    filename: str


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels for one Python version and platform."""

    path: Path
    python: str
    platforms: tuple[str, ...]
    wheels: tuple[Wheel, ...]
    requested: tuple[str, ...]
    cached: bool

    def version_of(self, name: str) -> str | None:
        """The version of package ``name`` in the wheelhouse, if present."""
        wanted = normalize(name)
        for wheel in self.wheels:
            if wheel.name == wanted:
                return wheel.version
        return None

    def summary(self, names: Sequence[str]) -> str:
        """``build==1.2.2,twine==6.1.0,…`` for the requested top-level names present."""
        parts = []
        for name in names:
            version = self.version_of(name)
            if version:
                parts.append(f"{normalize(name)}=={version}")
        return ",".join(parts)


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """The distribution name of a requirement spec (``cryptography>=42`` → ``cryptography``)."""
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return normalize(match.group(1)) if match else spec.strip()


_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def platform_tags(glibc: str, machine: str = "x86_64") -> tuple[str, ...]:
    """pip ``--platform`` values for a glibc: every manylinux tag it can run, newest first.

    pip does not expand ``--platform manylinux_2_36_x86_64`` to older tags, so wheels built for
    ``manylinux_2_28`` or ``manylinux2014`` would be skipped; list them all explicitly.
    """
    major, _, minor = glibc.partition(".")
    if not (major == "2" and minor.isdigit()):
        raise ImageError(f"Cannot read glibc version {glibc!r} of the base image")
    tags = []
    for m in range(int(minor), 4, -1):
        tags.append(f"manylinux_2_{m}_{machine}")
        if m in _LEGACY_MANYLINUX:
            tags.append(f"{_LEGACY_MANYLINUX[m]}_{machine}")
    return tuple(tags)


def cache_key(
    python: str, platforms: Sequence[str], specs: Sequence[str], files: Sequence[Path]
) -> str:
    """A stable key over everything that decides the wheelhouse's content."""
    doc = {
        "python": python,
        "platforms": sorted(platforms),
        "specs": sorted(s.strip() for s in specs),
        "files": [_read_requirement(f) for f in files],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _read_requirement(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ImageError(
            f"Cannot read requirement file {path}: {exc.strerror}",
            hint="give an existing, readable requirements file",
        ) from exc


def fetch(
    python: str,
    platforms: Sequence[str],
    *,
    extra: Sequence[str] = (),
    requirement_files: Sequence[Path] = (),
    cache: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Wheelhouse:
    """Download (or reuse) the wheelhouse for ``python`` on ``platforms``."""
    specs = tuple(DEFAULT_PACKAGES) + tuple(extra)
    key = cache_key(python, platforms, specs, requirement_files)
    root = (cache or cache_dir()) / "wheelhouse"
    target = root / f"py{python}-{key}"
    manifest = target / "manifest.json"
    if manifest.is_file():
        return _load(target, python, platforms, specs, cached=True)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=root))
    try:
        cmd = [
            sys.executable, "-m", "pip", "download",
            "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
            "--dest", str(work),
            "--only-binary=:all:",
            "--python-version", python,
            "--implementation", "cp",
        ]  # fmt: skip
        for tag in platforms:
            cmd += ["--platform", tag]
        for req in requirement_files:
            _read_requirement(req)
            cmd += ["--requirement", str(req)]
        cmd += list(specs)
        env = dict(os.environ, PIP_NO_INPUT="1")
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            lines.append(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
        if code != 0:
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-5:]
            raise ImageError(
                f"pip could not fetch the wheelhouse for Python {python}: " + " ".join(errors),
                hint=(
                    "check the requirement names and versions; only wheels are used "
                    f"(no sdists), so each must publish a wheel for Python {python} "
                    f"on {', '.join(platforms)}"
                ),
            )
        wheels = _scan(work)
        (work / "manifest.json").write_text(
            json.dumps(
                {
                    "python": python,
                    "platforms": list(platforms),
                    "requested": list(specs),
                    "wheels": [w.filename for w in wheels],
                },
                indent=2,
            )
        )
        if target.exists():  # another run finished first: keep theirs
            shutil.rmtree(work)
        else:
            work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return _load(target, python, platforms, specs, cached=False)


def _scan(path: Path) -> tuple[Wheel, ...]:
    wheels = []
    for file in sorted(path.glob("*.whl")):
        match = _WHEEL_NAME.match(file.name)
        if match:
            wheels.append(Wheel(normalize(match["name"]), match["version"], file.name))
    return tuple(sorted(wheels, key=lambda w: (w.name, w.version)))


def _load(
    path: Path, python: str, platforms: Sequence[str], specs: Sequence[str], *, cached: bool
) -> Wheelhouse:
    return Wheelhouse(
        path=path,
        python=python,
        platforms=tuple(platforms),
        wheels=_scan(path),
        requested=tuple(requirement_name(s) for s in specs),
        cached=cached,
    )
