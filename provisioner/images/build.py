"""``image build``: resolve the base, fetch cosign and the wheelhouse, assemble, build, tag.

Order matters for "leave nothing behind": cosign's digest is checked first (a mismatch aborts
before any docker work), the image is built untagged with the network off, and only a finished
build is tagged. A failed tag step removes the new image again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from provisioner import __version__
from provisioner.docker_api import BuildEvent, BuildEventKind, DockerAPI, DockerError, PushResult
from provisioner.errors import ImageError, UsageError
from provisioner.images import base as base_mod
from provisioner.images import cosign as cosign_mod
from provisioner.images import wheelhouse as wheel_mod
from provisioner.images.context import (
    CaBundle,
    LabelInputs,
    assemble,
    compute_labels,
    git_revision,
    host_writes,
    image_version,
    read_ca_bundle,
)
from provisioner.images.events import ImageStage, Progress, Stage
from provisioner.settings import cache_dir

PYTHON_REPOSITORY = "runnerctl/python"
AUTO = "auto"


class ImageUser(StrEnum):
    """The image's default user."""

    ROOT = "root"
    CI = "ci"


@dataclass(frozen=True)
class BuildSpec:
    """What ``image build`` was asked for (one Python version)."""

    python: str = "3.11"
    base: str = AUTO
    tag: str | None = None
    requirement_files: tuple[Path, ...] = ()
    wheels: tuple[str, ...] = ()
    cosign_source: str = cosign_mod.DEFAULT_SOURCE
    ca_bundle: Path | None = None
    user: ImageUser = ImageUser.ROOT
    nocache: bool = False
    mirror: str = base_mod.DEFAULT_MIRROR

    @property
    def image_tag(self) -> str:
        """The tag: ``runnerctl/python:<python>``, or ``--tag`` with ``{python}`` filled in."""
        if self.tag:
            return self.tag.replace("{python}", self.python)
        return default_tag(self.python)


@dataclass(frozen=True)
class BaseProbe:
    """What the base image's interpreter reports."""

    python_version: str
    glibc: str
    machine: str

    @property
    def minor(self) -> str:
        """``3.11.2`` → ``3.11``."""
        return ".".join(self.python_version.split(".")[:2])


@dataclass(frozen=True)
class ImageRef:
    """A local image: the tag it is known by and its id."""

    tag: str
    image_id: str


@dataclass(frozen=True)
class BuildResult:
    """The outcome of one image build."""

    tag: str
    image_id: str
    size: int
    base: str
    base_size: int
    python_version: str
    cosign_version: str
    wheels: int
    labels: dict[str, str]
    seconds: float
    notes: tuple[str, ...] = ()
    pushed: PushResult | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def size_over_base(self) -> int:
        """Bytes the image adds on top of its base."""
        return max(self.size - self.base_size, 0)

    @property
    def ref(self) -> ImageRef:
        """The built image as an :class:`ImageRef`."""
        return ImageRef(self.tag, self.image_id)


def default_tag(python: str) -> str:
    """``runnerctl/python:<python>``."""
    return f"{PYTHON_REPOSITORY}:{python}"


def check_python(python: str) -> str:
    """Accept ``3.11`` or ``3.13``-style versions; refuse anything else early."""
    parts = python.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
        raise UsageError(
            f"Python version {python!r} is not of the form 3.X", hint="e.g. --python 3.11"
        )
    return python


def resolve_base(
    spec: BuildSpec, *, docker: DockerAPI, emit: Progress, cache: Path | None = None
) -> tuple[str, list[str]]:
    """The base image reference for ``spec`` (building a Debian base when needed), plus notes."""
    notes: list[str] = []
    if spec.base != AUTO:
        if docker.image_exists(spec.base):
            return spec.base, notes
        try:
            docker.pull(spec.base)
        except DockerError as exc:
            raise ImageError(
                f"Base image {spec.base} is not available locally and could not be pulled",
                hint=(
                    "build a local base: runnerctl image base --suite "
                    f"{base_mod.suite_for_python(spec.python) or 'bookworm'}; or use --base auto"
                ),
            ) from exc
        return spec.base, notes
    official = f"python:{spec.python}-slim"
    if docker.image_exists(official):
        return official, notes
    suite = base_mod.suite_for_python(spec.python)
    try:
        docker.pull(official)
        return official, notes
    except DockerError as exc:
        if suite is None:
            supported = ", ".join(f"{v} ({s})" for s, (v, _) in base_mod.SUITES.items())
            raise ImageError(
                f"Cannot pull {official} and no Debian suite carries Python {spec.python}",
                hint=f"local bases carry Python {supported}; or pass --base IMAGE with that Python",
            ) from exc
    note = (
        f"{official} could not be pulled (no registry reachable): using the local Debian "
        f"{suite} base {base_mod.default_tag(suite)} instead"
    )
    notes.append(note)
    emit(ImageStage(Stage.BASE_FALLBACK, official, suite))
    result = base_mod.build_base(
        suite, docker=docker, mirror=spec.mirror, cache=cache, on_event=emit
    )
    return result.tag, notes


def probe_base(base: str, *, docker: DockerAPI) -> BaseProbe:
    """Ask the base's ``python3`` for its version, glibc and machine (network off)."""
    script = (
        "import json, platform; "
        "print(json.dumps({'v': platform.python_version(), 'libc': platform.libc_ver()[1], "
        "'m': platform.machine()}))"
    )
    result = docker.run(base, ["python3", "-c", script], timeout=120)
    if not result.ok:
        raise ImageError(
            f"Base image {base} has no working python3: {result.output.strip()[-300:]}",
            hint="use a base with Python 3 (runnerctl image base, or python:<v>-slim)",
        )
    try:
        doc = json.loads(result.output.strip().splitlines()[-1])
        return BaseProbe(str(doc["v"]), str(doc["libc"] or ""), str(doc["m"]))
    except (ValueError, KeyError, IndexError) as exc:
        raise ImageError(f"Could not read the Python of base {base}: {result.output!r}") from exc


def build_image(
    spec: BuildSpec,
    *,
    docker: DockerAPI,
    cache: Path | None = None,
    on_event: Progress | None = None,
) -> BuildResult:
    """Build one job image for ``spec`` and tag it; see the module docstring for the order."""
    root = cache or cache_dir()
    with host_writes(root):
        return _build_image(spec, docker=docker, root=root, on_event=on_event)


def _build_image(
    spec: BuildSpec, *, docker: DockerAPI, root: Path, on_event: Progress | None
) -> BuildResult:
    started = time.monotonic()
    emit = on_event or (lambda _e: None)
    check_python(spec.python)
    # 1. Inputs that need no docker: cosign (digest first), CA bundle, requirement files.
    source = cosign_mod.parse_source(spec.cosign_source)
    ca: CaBundle | None = read_ca_bundle(spec.ca_bundle) if spec.ca_bundle else None
    for req in spec.requirement_files:
        wheel_mod.cache_key(spec.python, (), (), (req,))  # readable, or a clear error
    emit(ImageStage(Stage.COSIGN_SOURCE, source.spec))
    cosign = cosign_mod.resolve(source, cache=root)
    emit(ImageStage(Stage.COSIGN_READY, cosign.version, cosign.sha256))
    # 2. The base and what its Python is.
    base, notes = resolve_base(spec, docker=docker, emit=emit, cache=root)
    base_info = docker.inspect_image(base)
    if base_info is None:
        raise ImageError(f"Base image {base} vanished", hint="run runnerctl image base again")
    probe = probe_base(base, docker=docker)
    if probe.minor != spec.python:
        raise ImageError(
            f"Base image {base} has Python {probe.python_version}, not {spec.python}",
            hint=(
                "pick a base with that Python: --base auto, or "
                f"runnerctl image base --suite {base_mod.suite_for_python(spec.python) or '…'}"
            ),
        )
    if not probe.glibc:
        raise ImageError(
            f"Base image {base} is not glibc-based", hint="use a Debian or Ubuntu based image"
        )
    # 3. The wheelhouse for that Python and platform.
    platforms = wheel_mod.platform_tags(probe.glibc, probe.machine)
    emit(ImageStage(Stage.WHEELHOUSE, spec.python, platforms[0]))
    house = wheel_mod.fetch(
        spec.python,
        platforms,
        extra=spec.wheels,
        requirement_files=spec.requirement_files,
        cache=root,
        on_line=lambda line: emit(BuildEvent(BuildEventKind.OUTPUT, line)),
    )
    emit(ImageStage(Stage.WHEELS_READY, count=len(house.wheels), cached=house.cached))
    # 4. Labels and the context, then the build (network off) and the tag.
    labels = compute_labels(
        LabelInputs(
            python_version=probe.python_version,
            python_minor=probe.minor,
            cosign_version=cosign.version,
            cosign_sha256=cosign.sha256,
            cosign_source=source.spec,
            wheelhouse=house.summary(house.requested),
            wheel_count=len(house.wheels),
            base=base,
            base_id=base_info.id,
            user=spec.user.value,
            ca_sha256=ca.sha256 if ca else None,
            created=datetime.now(UTC),
            revision=git_revision(),
            version=image_version(spec.python, __version__),
        )
    )
    tag = spec.image_tag
    contexts = root / "contexts"
    contexts.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="context-", dir=contexts))
    try:
        context = assemble(workdir / "ctx", wheelhouse=house.path, cosign=cosign.path, ca=ca)
        emit(ImageStage(Stage.BUILDING, tag, base))
        image_id = docker.build(
            context,
            buildargs={
                "BASE_IMAGE": base,
                "PYTHON_VERSION": spec.python,
                "IMAGE_USER": spec.user.value,
            },
            labels=labels,
            nocache=spec.nocache,
            on_event=emit,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    previous = docker.inspect_image(tag)
    try:
        docker.tag_image(image_id, tag)
    except ImageError:
        if previous is None or previous.id != image_id:
            docker.remove_image(image_id, force=True)
        raise
    info = docker.inspect_image(tag)
    if info is None:
        raise ImageError(f"{tag} vanished right after it was tagged")
    return BuildResult(
        tag=tag,
        image_id=info.id,
        size=info.size,
        base=base,
        base_size=base_info.size,
        python_version=probe.python_version,
        cosign_version=cosign.version,
        wheels=len(house.wheels),
        labels=labels,
        seconds=time.monotonic() - started,
        notes=tuple(notes),
        tags=info.tags,
    )


def build_matrix(
    specs: Sequence[BuildSpec],
    *,
    docker: DockerAPI,
    cache: Path | None = None,
    on_event: Progress | None = None,
) -> list[BuildResult]:
    """Build several Python versions in one run; refuses two specs with the same tag."""
    tags = [s.image_tag for s in specs]
    if len(set(tags)) != len(tags):
        raise ImageError(
            "Several --python values would share one tag",
            hint="drop --tag, or put {python} in it (e.g. --tag my/python:{python})",
        )
    return [build_image(s, docker=docker, cache=cache, on_event=on_event) for s in specs]


def ensure_job_image(
    python: str = "3.11",
    *,
    docker: DockerAPI,
    tag: str | None = None,
    cache: Path | None = None,
    on_event: Progress | None = None,
) -> ImageRef:
    """The default job image for ``python``, built (base included) only when missing.

    Quick when the tag exists: one inspect call. This is what the stand-in runner's docker
    executor and the smoke pipeline call to get their image.
    """
    spec = BuildSpec(python=check_python(python), tag=tag)
    info = docker.inspect_image(spec.image_tag)
    if info is not None:
        return ImageRef(spec.image_tag, info.id)
    return build_image(spec, docker=docker, cache=cache, on_event=on_event).ref
