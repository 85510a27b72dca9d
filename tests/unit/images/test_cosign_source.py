"""cosign sources: parsing, pinned digests, unpacking, and a mismatch that leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from provisioner.errors import ImageError
from provisioner.images import cosign as cosign_mod
from provisioner.images.cosign import SourceKind, parse_source

FAKE_ELF = b"\x7fELF" + b"\x00" * 60 + b"not really cosign"


def _deb(payload: bytes) -> bytes:
    """A minimal .deb (ar archive) whose data.tar.xz holds usr/bin/cosign."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        info = tarfile.TarInfo("./usr/bin/cosign")
        info.size = len(payload)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(payload))
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", b"x"),
        ("data.tar.xz", data.getvalue()),
    ]
    out = b"!<arch>\n"
    for name, body in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n"
        out += header.encode() + body + (b"\n" if len(body) % 2 else b"")
    return out


def test_default_source_is_debian_pinned() -> None:
    source = parse_source(cosign_mod.DEFAULT_SOURCE)
    assert source.kind is SourceKind.DEBIAN
    assert source.version == "2.5.0"
    assert source.sha256 == "aef4fb6635710fd369ef73c07dde35540f45c877984e20f37aa11e181bb597c3"
    assert source.location == (
        "http://deb.debian.org/debian/pool/main/c/cosign/cosign_2.5.0-2%2Bb4_amd64.deb"
    )
    assert source.spec == "debian:2.5.0-2+b4"


def test_url_and_file_sources_carry_their_digest(tmp_path: Path) -> None:
    digest = "ab" * 32
    url = parse_source(f"url:https://example.org/cosign-linux-amd64#sha256={digest.upper()}")
    assert (url.kind, url.location, url.sha256) == (
        SourceKind.URL,
        "https://example.org/cosign-linux-amd64",
        digest,
    )
    local = parse_source(f"file:{tmp_path}/cosign#sha256={digest}")
    assert local.kind is SourceKind.FILE
    assert local.location == f"{tmp_path}/cosign"
    assert local.spec == f"file:{tmp_path}/cosign#sha256={digest}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosign", "Unknown cosign source"),
        ("ftp:x#sha256=" + "a" * 64, "Unknown cosign source kind"),
        ("debian:9.9.9-1", "No pinned sha256"),
        ("url:https://example.org/cosign", "has no pinned digest"),
        ("file:/tmp/cosign#sha256=xyz", "is not a sha256 hex digest"),
        ("url:example.org/cosign#sha256=" + "a" * 64, "not an http(s) URL"),
    ],
)
def test_bad_sources_are_refused_with_a_hint(spec: str, message: str) -> None:
    with pytest.raises(ImageError) as raised:
        parse_source(spec)
    assert message in raised.value.message
    assert raised.value.hint
    assert raised.value.exit_code == 6


def test_file_source_unpacks_a_deb_into_the_cache(tmp_path: Path) -> None:
    deb = tmp_path / "cosign.deb"
    deb.write_bytes(_deb(FAKE_ELF))
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    binary = cosign_mod.resolve(parse_source(f"file:{deb}#sha256={digest}"), cache=cache)
    assert binary.path.read_bytes() == FAKE_ELF
    assert binary.path.stat().st_mode & 0o777 == 0o755
    assert binary.sha256 == hashlib.sha256(FAKE_ELF).hexdigest()
    assert binary.path.parent.name == digest
    assert binary.version == "unknown"  # our fake does not run


def test_file_source_accepts_a_bare_binary_and_a_tarball(tmp_path: Path) -> None:
    bare = tmp_path / "cosign-linux-amd64"
    bare.write_bytes(FAKE_ELF)
    got = cosign_mod.resolve(
        parse_source(f"file:{bare}#sha256={hashlib.sha256(FAKE_ELF).hexdigest()}"),
        cache=tmp_path / "c1",
    )
    assert got.path.read_bytes() == FAKE_ELF
    tgz = tmp_path / "cosign.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("cosign-linux-amd64")
        info.size = len(FAKE_ELF)
        tar.addfile(info, io.BytesIO(FAKE_ELF))
    got = cosign_mod.resolve(
        parse_source(f"file:{tgz}#sha256={hashlib.sha256(tgz.read_bytes()).hexdigest()}"),
        cache=tmp_path / "c2",
    )
    assert got.path.read_bytes() == FAKE_ELF


def test_checksum_mismatch_names_both_digests_and_leaves_nothing(tmp_path: Path) -> None:
    deb = tmp_path / "cosign.deb"
    deb.write_bytes(_deb(FAKE_ELF))
    actual = hashlib.sha256(deb.read_bytes()).hexdigest()
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(ImageError) as raised:
        cosign_mod.resolve(parse_source(f"file:{deb}#sha256={wrong}"), cache=cache)
    assert wrong in raised.value.message
    assert actual in raised.value.message
    assert raised.value.exit_code == 6
    assert not cache.exists()


def test_cached_download_is_reused_only_when_its_digest_matches(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    payload = _deb(FAKE_ELF)
    digest = hashlib.sha256(payload).hexdigest()
    (cache / "downloads" / "cosign_1.0.deb").write_bytes(payload)
    source = parse_source(f"url:http://127.0.0.1:9/cosign_1.0.deb#sha256={digest}")
    # Network is blocked in unit tests: reuse must not try to download.
    assert cosign_mod.resolve(source, cache=cache).path.read_bytes() == FAKE_ELF
    (cache / "downloads" / "cosign_1.0.deb").write_bytes(payload + b"tampered")
    with pytest.raises(ImageError, match="not cached"):
        cosign_mod.resolve(source, cache=cache, fetch=False)


def test_garbage_is_not_mistaken_for_cosign(tmp_path: Path) -> None:
    junk = tmp_path / "cosign.txt"
    junk.write_text("hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(ImageError, match=r"neither a \.deb"):
        cosign_mod.resolve(parse_source(f"file:{junk}#sha256={digest}"), cache=tmp_path / "c")
