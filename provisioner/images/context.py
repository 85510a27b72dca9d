"""Build context assembly and label computation: pure file work, no docker.

A context is a directory holding::

    Dockerfile      images/python/Dockerfile (shipped as package data)
    wheelhouse/     the wheels for the image's Python
    cosign          the checked cosign binary (mode 0755)
    ca/             extra CA certificates, one PEM per file (empty without --ca-bundle)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from provisioner.errors import ImageError

DOCKERFILE = Path(__file__).resolve().parent / "data" / "Dockerfile"
SOURCE_URL = "https://gitlab.com/runnerctl/runnerctl"
LABEL_PREFIX = "io.runnerctl"

_PEM = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


@dataclass(frozen=True)
class CaBundle:
    """Certificates read from a ``--ca-bundle`` file."""

    path: Path
    certificates: tuple[str, ...]
    sha256: str


@dataclass(frozen=True)
class LabelInputs:
    """Everything the image's labels are computed from."""

    python_version: str
    python_minor: str
    cosign_version: str
    cosign_sha256: str
    cosign_source: str
    wheelhouse: str
    wheel_count: int
    base: str
    base_id: str
    user: str
    ca_sha256: str | None
    created: datetime
    revision: str
    version: str


def read_ca_bundle(path: Path) -> CaBundle:
    """Split a PEM bundle into certificates; refuse a file with none or with garbage."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageError(
            f"Cannot read CA bundle {path}: {exc}", hint="give a readable PEM file (--ca-bundle)"
        ) from exc
    certs = []
    for match in _PEM.finditer(text):
        body = "".join(match["body"].split())
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise ImageError(
                f"CA bundle {path} holds a damaged certificate", hint="re-export it as PEM"
            ) from exc
        if not der.startswith(b"\x30"):
            raise ImageError(f"CA bundle {path} holds a damaged certificate", hint="re-export it")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        certs.append(
            "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
        )
    if not certs:
        raise ImageError(
            f"No PEM certificate found in {path}",
            hint="--ca-bundle takes a PEM file with one or more BEGIN CERTIFICATE blocks",
        )
    digest = hashlib.sha256("".join(certs).encode()).hexdigest()
    return CaBundle(path=path, certificates=tuple(certs), sha256=digest)


def assemble(
    target: Path,
    *,
    wheelhouse: Path,
    cosign: Path,
    ca: CaBundle | None = None,
    dockerfile: Path = DOCKERFILE,
) -> Path:
    """Fill ``target`` (created, must not exist or be empty) with the build context."""
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise ImageError(f"Build context directory {target} is not empty")
    shutil.copyfile(dockerfile, target / "Dockerfile")
    wheels = target / "wheelhouse"
    wheels.mkdir()
    for item in sorted(wheelhouse.iterdir()):
        if item.suffix == ".whl" or item.name == "manifest.json":
            _link_or_copy(item, wheels / item.name)
    shutil.copyfile(cosign, target / "cosign")
    (target / "cosign").chmod(0o755)
    ca_dir = target / "ca"
    ca_dir.mkdir()
    if ca is not None:
        for n, pem in enumerate(ca.certificates):
            (ca_dir / f"runnerctl-ca-{n}.crt").write_text(pem)
    else:
        (ca_dir / ".keep").write_text("")
    return target


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def compute_labels(inputs: LabelInputs) -> dict[str, str]:
    """OCI labels plus what the image carries, under ``io.runnerctl.*``."""
    return {
        "org.opencontainers.image.created": inputs.created.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "org.opencontainers.image.source": SOURCE_URL,
        "org.opencontainers.image.version": inputs.version,
        "org.opencontainers.image.revision": inputs.revision,
        "org.opencontainers.image.base.name": inputs.base,
        "org.opencontainers.image.base.digest": inputs.base_id,
        f"{LABEL_PREFIX}.python.version": inputs.python_version,
        f"{LABEL_PREFIX}.python.minor": inputs.python_minor,
        f"{LABEL_PREFIX}.cosign.version": inputs.cosign_version,
        f"{LABEL_PREFIX}.cosign.sha256": inputs.cosign_sha256,
        f"{LABEL_PREFIX}.cosign.source": inputs.cosign_source,
        f"{LABEL_PREFIX}.wheelhouse": inputs.wheelhouse,
        f"{LABEL_PREFIX}.wheelhouse.count": str(inputs.wheel_count),
        f"{LABEL_PREFIX}.user": inputs.user,
        f"{LABEL_PREFIX}.ca-bundle.sha256": inputs.ca_sha256 or "none",
    }


def image_version(python_minor: str, runnerctl_version: str) -> str:
    """``org.opencontainers.image.version``: ``<python>-runnerctl<version>``."""
    return f"{python_minor}-runnerctl{runnerctl_version}"


def git_revision(start: Path | None = None) -> str:
    """The commit of the runnerctl checkout (read from ``.git`` without running git)."""
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        git = parent / ".git"
        if git.is_dir():
            return _read_head(git)
    return "unknown"


def _read_head(git: Path) -> str:
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        loose = git / ref
        if loose.is_file():
            return loose.read_text().strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return "unknown"


def parse_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The ``io.runnerctl.*`` labels without their prefix."""
    prefix = LABEL_PREFIX + "."
    return {k.removeprefix(prefix): v for k, v in labels.items() if k.startswith(prefix)}


@contextmanager
def host_writes(cache: Path) -> Iterator[None]:
    """Turn a failed write on the host (cache, context, download) into an :class:`ImageError`."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or cache
        raise ImageError(
            f"Cannot write {where}: {exc.strerror or exc}",
            hint=f"make {cache} writable (or set RUNNERCTL_CACHE elsewhere); check free disk space",
        ) from exc
