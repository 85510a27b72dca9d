"""cosign for job images: name a source, fetch it, check its pinned sha256, unpack the binary.

Sources (``--cosign-source``):

- ``debian:<version>``: Debian's pool ``.deb`` (amd64), pinned in :data:`DEBIAN_PINS`;
- ``url:<url>#sha256=<hex>``: a ``.deb``, a ``.tar.gz`` or a bare binary from a URL;
- ``file:<path>#sha256=<hex>``: the same from a local file.

The digest is checked before anything enters a build context. A mismatch raises
:class:`~provisioner.errors.ImageError` naming both digests and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, unquote

from provisioner.errors import ImageError
from provisioner.settings import cache_dir

DEBIAN_POOL = "http://deb.debian.org/debian/pool/main/c/cosign"

#: Debian cosign versions we know the sha256 of (amd64 .deb, checked against trixie's Packages).
DEBIAN_PINS: dict[str, str] = {
    "2.5.0-2+b4": "aef4fb6635710fd369ef73c07dde35540f45c877984e20f37aa11e181bb597c3",
}
DEFAULT_SOURCE = "debian:2.5.0-2+b4"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SOURCE_HINT = (
    "use debian:<version>, url:<url>#sha256=<hex> or file:<path>#sha256=<hex> "
    f"(default {DEFAULT_SOURCE})"
)


class SourceKind(StrEnum):
    """Where a cosign binary comes from."""

    DEBIAN = "debian"
    URL = "url"
    FILE = "file"


@dataclass(frozen=True)
class CosignSource:
    """A parsed ``--cosign-source``: where to fetch from and the sha256 it must have."""

    kind: SourceKind
    location: str
    sha256: str
    version: str | None = None
    package_version: str | None = None

    @property
    def spec(self) -> str:
        """The source written back the way the user names it."""
        if self.kind is SourceKind.DEBIAN:
            return f"debian:{self.package_version}"
        return f"{self.kind.value}:{self.location}#sha256={self.sha256}"


@dataclass(frozen=True)
class CosignBinary:
    """A cosign binary on the host, checked against its source's pin."""

    path: Path
    sha256: str
    version: str
    source: CosignSource


def parse_source(spec: str) -> CosignSource:
    """Parse ``debian:<v>``, ``url:<u>#sha256=<hex>`` or ``file:<p>#sha256=<hex>``."""
    kind_text, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise ImageError(f"Unknown cosign source {spec!r}", hint=_SOURCE_HINT)
    try:
        kind = SourceKind(kind_text.lower())
    except ValueError as exc:
        raise ImageError(
            f"Unknown cosign source kind {kind_text!r} in {spec!r}", hint=_SOURCE_HINT
        ) from exc
    if kind is SourceKind.DEBIAN:
        version = rest
        digest = DEBIAN_PINS.get(version)
        if digest is None:
            known = ", ".join(f"debian:{v}" for v in DEBIAN_PINS)
            raise ImageError(
                f"No pinned sha256 for Debian cosign {version!r}",
                hint=f"known: {known}; or give url:<url>#sha256=<hex> for another version",
            )
        filename = f"cosign_{version}_amd64.deb"
        return CosignSource(
            kind,
            f"{DEBIAN_POOL}/{quote(filename)}",
            digest,
            version=version.split("-")[0],
            package_version=version,
        )
    location, hsep, fragment = rest.rpartition("#")
    if not hsep or not fragment.startswith("sha256="):
        raise ImageError(
            f"cosign source {spec!r} has no pinned digest",
            hint=f"append #sha256=<64 hex digits>; {_SOURCE_HINT}",
        )
    digest = fragment.removeprefix("sha256=").lower()
    if not _HEX64.match(digest):
        raise ImageError(
            f"cosign source {spec!r}: {digest!r} is not a sha256 hex digest",
            hint="a sha256 digest is 64 hex digits (sha256sum prints it)",
        )
    if kind is SourceKind.URL and not re.match(r"^https?://", location):
        raise ImageError(f"cosign source {spec!r}: not an http(s) URL", hint=_SOURCE_HINT)
    if kind is SourceKind.FILE:
        location = str(Path(location).expanduser())
    return CosignSource(kind, location, digest)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(
    source: CosignSource,
    *,
    cache: Path | None = None,
    fetch: bool = True,
) -> CosignBinary:
    """Fetch (or reuse from the cache) the source, check its pin and unpack the binary.

    The artifact is downloaded to ``<cache>/downloads`` and kept only when its sha256 matches;
    the binary lands in ``<cache>/cosign/by-sha256/<digest>/cosign``.
    """
    root = cache or cache_dir()
    artifact = _artifact(source, root, fetch=fetch)
    out_dir = root / "cosign" / "by-sha256" / source.sha256
    binary = out_dir / "cosign"
    if not binary.is_file():
        data = artifact.read_bytes()
        payload = _extract_binary(data, artifact.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".cosign.{os.getpid()}.part"
        tmp.write_bytes(payload)
        tmp.chmod(0o755)
        tmp.replace(binary)
    version = source.version or probe_version(binary)
    return CosignBinary(path=binary, sha256=sha256_file(binary), version=version, source=source)


def _artifact(source: CosignSource, root: Path, *, fetch: bool) -> Path:
    if source.kind is SourceKind.FILE:
        path = Path(source.location)
        if not path.is_file():
            raise ImageError(
                f"cosign source file {path} does not exist", hint="check the file: path"
            )
        _check_digest(path, source)
        return path
    downloads = root / "downloads"
    name = unquote(source.location.rsplit("/", 1)[-1]) or "cosign"
    target = downloads / name
    if target.is_file() and sha256_file(target) == source.sha256:
        return target
    if not fetch:
        raise ImageError(f"cosign {source.spec} is not cached", hint="run without --offline")
    downloads.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".cosign-", suffix=".part", dir=downloads)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _download(source.location, tmp)
        _check_digest(tmp, source)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _check_digest(path: Path, source: CosignSource) -> None:
    actual = sha256_file(path)
    if actual != source.sha256:
        raise ImageError(
            f"cosign checksum mismatch for {source.spec}: expected sha256 {source.sha256}, "
            f"got {actual}",
            hint="the download was tampered with or the pin is wrong; nothing was built",
        )


def _download(url: str, dest: Path) -> None:
    """Fetch with curl (it honours the host's proxy and CA settings like apt and pip do)."""
    if shutil.which("curl") is None:
        raise ImageError("curl is needed to fetch cosign", hint="run make setup (installs curl)")
    proc = subprocess.run(
        ["curl", "-fsSL", "--retry", "3", "-o", str(dest), url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(
            f"Could not download cosign from {url}: {proc.stderr.strip() or proc.returncode}",
            hint="check the mirror is reachable, or use file:<path>#sha256=<hex>",
        )


def _extract_binary(data: bytes, name: str) -> bytes:
    """The cosign executable inside a .deb, a tarball, or the bytes themselves."""
    if data.startswith(b"!<arch>\n"):
        return _from_deb(data)
    if data[:2] == b"\x1f\x8b" or name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return _member(tar, name)
    if data.startswith(b"\x7fELF"):
        return data
    raise ImageError(
        f"{name} is neither a .deb, a tarball nor an ELF binary",
        hint="point the source at cosign's .deb, release tarball or linux binary",
    )


def _from_deb(data: bytes) -> bytes:
    """Read ``data.tar.*`` out of the ar archive and take ``usr/bin/cosign`` from it."""
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[pos + 60 : pos + 60 + size]
        if member.startswith("data.tar"):
            if member.endswith(".zst"):
                raise ImageError(
                    "this .deb uses zstd compression, which the standard library cannot read",
                    hint="give the cosign binary itself: file:<path>#sha256=<hex>",
                )
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                return _member(tar, "the .deb")
        pos += 60 + size + (size % 2)
    raise ImageError("the .deb has no data archive", hint="is this really cosign's .deb?")


def _member(tar: tarfile.TarFile, where: str) -> bytes:
    for info in tar.getmembers():
        base = info.name.rsplit("/", 1)[-1]
        if info.isfile() and (base == "cosign" or base.startswith("cosign-linux")):
            fh = tar.extractfile(info)
            if fh is not None:
                return fh.read()
    raise ImageError(f"no cosign executable in {where}", hint="is this really a cosign release?")


def probe_version(binary: Path) -> str:
    """``cosign version`` → ``2.5.0`` (or ``unknown`` when it will not say)."""
    try:
        proc = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return "unknown"
    match = re.search(r"GitVersion:\s*v?(\S+)", proc.stdout + proc.stderr)
    if match and match.group(1) != "devel":
        return match.group(1)
    return "unknown"
