"""Build context assembly, CA bundles, labels, platform tags and registry references."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from provisioner.docker_api import split_reference
from provisioner.errors import ImageError, UsageError
from provisioner.images import wheelhouse as wheel_mod
from provisioner.images.base import rootfs_key, suite_for_python
from provisioner.images.build import BuildSpec, check_python, default_tag
from provisioner.images.context import (
    DOCKERFILE,
    LabelInputs,
    assemble,
    compute_labels,
    parse_labels,
    read_ca_bundle,
)
from provisioner.images.push import target_reference

REPO = Path(__file__).resolve().parents[3]


def _pem(name: str = "test CA") -> str:
    """A real self-signed certificate, PEM, with 64-character lines."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _inputs(**changes: object) -> LabelInputs:
    values: dict[str, object] = {
        "python_version": "3.11.2",
        "python_minor": "3.11",
        "cosign_version": "2.5.0",
        "cosign_sha256": "c" * 64,
        "cosign_source": "debian:2.5.0-2+b4",
        "wheelhouse": "build==1.2.2,twine==6.1.0",
        "wheel_count": 38,
        "base": "runnerctl/base:bookworm",
        "base_id": "sha256:" + "b" * 64,
        "user": "root",
        "ca_sha256": None,
        "created": datetime(2026, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=1))),
        "revision": "abc123",
        "version": "3.11-runnerctl0.1.0",
    }
    values.update(changes)
    return LabelInputs(**values)  # type: ignore[arg-type]


def test_shipped_dockerfile_is_the_one_in_images() -> None:
    assert DOCKERFILE.read_bytes() == (REPO / "images" / "python" / "Dockerfile").read_bytes()
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE" in text
    assert "ARG PYTHON_VERSION" in text
    for name in ("PIP_FIND_LINKS=/opt/wheelhouse", "UV_FIND_LINKS=/opt/wheelhouse"):
        assert name in text
    assert "PIP_CACHE_DIR=/cache/pip" in text
    # The build needs no network: no package manager, no downloads.
    for forbidden in ("apt-get", "curl ", "wget", "pip download"):
        assert forbidden not in text


def test_assemble_lays_out_wheelhouse_cosign_and_ca(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    (house / "build-1.2.2-py3-none-any.whl").write_bytes(b"w1")
    (house / "manifest.json").write_text("{}")
    (house / "stray.tar.gz").write_bytes(b"sdist")
    cosign = tmp_path / "cosign-bin"
    cosign.write_bytes(b"\x7fELF")
    ca_file = tmp_path / "ca.pem"
    first, second = _pem("one"), _pem("two")
    ca_file.write_text("junk before\n" + first + "\n" + second.replace("\n", "\r\n"))
    ctx = assemble(tmp_path / "ctx", wheelhouse=house, cosign=cosign, ca=read_ca_bundle(ca_file))
    names = sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*"))
    assert names == [
        "Dockerfile",
        "ca",
        "ca/runnerctl-ca-0.crt",
        "ca/runnerctl-ca-1.crt",
        "cosign",
        "wheelhouse",
        "wheelhouse/build-1.2.2-py3-none-any.whl",
        "wheelhouse/manifest.json",
    ]
    assert os.stat(ctx / "cosign").st_mode & 0o777 == 0o755
    assert (ctx / "ca" / "runnerctl-ca-0.crt").read_text() == first
    assert (ctx / "ca" / "runnerctl-ca-1.crt").read_text() == second


def test_assemble_without_ca_keeps_an_empty_ca_dir(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    cosign = tmp_path / "cosign"
    cosign.write_bytes(b"x")
    ctx = assemble(tmp_path / "ctx", wheelhouse=house, cosign=cosign)
    assert [p.name for p in (ctx / "ca").iterdir()] == [".keep"]
    with pytest.raises(ImageError, match="not empty"):
        assemble(ctx, wheelhouse=house, cosign=cosign)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "hello",
        "-----BEGIN CERTIFICATE-----\n!!\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_ca_bundle_without_certificates_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ca.pem"
    path.write_text(content)
    with pytest.raises(ImageError) as raised:
        read_ca_bundle(path)
    assert raised.value.hint


def test_missing_ca_bundle_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="Cannot read CA bundle"):
        read_ca_bundle(tmp_path / "nope.pem")


def test_labels_are_oci_plus_contents() -> None:
    labels = compute_labels(_inputs())
    assert labels["org.opencontainers.image.created"] == "2026-01-02T03:05:06Z"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["org.opencontainers.image.version"] == "3.11-runnerctl0.1.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.base.name"] == "runnerctl/base:bookworm"
    ours = parse_labels(labels)
    assert ours == {
        "python.version": "3.11.2",
        "python.minor": "3.11",
        "cosign.version": "2.5.0",
        "cosign.sha256": "c" * 64,
        "cosign.source": "debian:2.5.0-2+b4",
        "wheelhouse": "build==1.2.2,twine==6.1.0",
        "wheelhouse.count": "38",
        "user": "root",
        "ca-bundle.sha256": "none",
    }
    assert parse_labels(compute_labels(_inputs(ca_sha256="f" * 64)))["ca-bundle.sha256"] == (
        "f" * 64
    )
    assert all(isinstance(v, str) for v in labels.values())


def test_platform_tags_list_every_manylinux_the_glibc_runs() -> None:
    tags = wheel_mod.platform_tags("2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_28_x86_64" in tags
    assert "manylinux2014_x86_64" in tags
    assert "manylinux1_x86_64" in tags
    assert "manylinux_2_37_x86_64" not in tags
    assert wheel_mod.platform_tags("2.41", "aarch64")[0] == "manylinux_2_41_aarch64"
    with pytest.raises(ImageError):
        wheel_mod.platform_tags("musl")


def test_wheelhouse_cache_key_covers_every_input(tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text("requests==2.32.3\n")
    plat = wheel_mod.platform_tags("2.36")
    key = wheel_mod.cache_key("3.11", plat, ["b", "a"], [req])
    assert key == wheel_mod.cache_key("3.11", plat, ["a", "b"], [req])
    assert key != wheel_mod.cache_key("3.13", plat, ["a", "b"], [req])
    assert key != wheel_mod.cache_key("3.11", wheel_mod.platform_tags("2.41"), ["a", "b"], [req])
    assert key != wheel_mod.cache_key("3.11", plat, ["a", "b", "c"], [req])
    req.write_text("requests==2.32.4\n")
    assert key != wheel_mod.cache_key("3.11", plat, ["a", "b"], [req])
    with pytest.raises(ImageError, match="Cannot read requirement file"):
        wheel_mod.cache_key("3.11", plat, [], [tmp_path / "missing.txt"])


def test_wheelhouse_names_and_summary(tmp_path: Path) -> None:
    for name in (
        "build-1.2.2-py3-none-any.whl",
        "cryptography-44.0.0-cp39-abi3-manylinux_2_34_x86_64.whl",
        "Pytest_Cov-6.0.0-py3-none-any.whl",
        "README.txt",
    ):
        (tmp_path / name).write_bytes(b"")
    house = wheel_mod._load(tmp_path, "3.11", ("manylinux_2_36_x86_64",), ["build"], cached=True)
    assert [w.name for w in house.wheels] == ["build", "cryptography", "pytest-cov"]
    assert house.version_of("Pytest_Cov") == "6.0.0"
    assert house.summary(["cryptography", "Pytest-Cov", "twine"]) == (
        "cryptography==44.0.0,pytest-cov==6.0.0"
    )
    assert wheel_mod.requirement_name("cryptography>=42; python_version>'3'") == "cryptography"
    assert set(wheel_mod.DEFAULT_PACKAGES) >= {"build", "twine", "pytest", "cryptography", "uv"}


def test_python_versions_map_to_debian_suites() -> None:
    assert suite_for_python("3.11") == "bookworm"
    assert suite_for_python("3.13") == "trixie"
    assert suite_for_python("3.12") is None
    assert check_python("3.12") == "3.12"
    for bad in ("3", "3.x", "2.7", "3.11.2"):
        with pytest.raises(UsageError) as raised:
            check_python(bad)
        assert raised.value.exit_code == 2  # a usage error, not a failed build
    assert default_tag("3.13") == "runnerctl/python:3.13"
    assert BuildSpec(python="3.13").image_tag == "runnerctl/python:3.13"
    assert BuildSpec(tag="me/img:1").image_tag == "me/img:1"
    assert BuildSpec(python="3.13", tag="me/py:{python}-ci").image_tag == "me/py:3.13-ci"
    assert rootfs_key("bookworm", "http://m/debian") == rootfs_key("bookworm", "http://m/debian/")
    assert rootfs_key("bookworm", "http://m/debian") != rootfs_key("trixie", "http://m/debian")


def test_references() -> None:
    assert split_reference("127.0.0.1:5000/runnerctl/python:3.11") == (
        "127.0.0.1:5000/runnerctl/python",
        "3.11",
    )
    assert split_reference("127.0.0.1:5000/runnerctl/python") == (
        "127.0.0.1:5000/runnerctl/python",
        "latest",
    )
    assert target_reference("runnerctl/python:3.11", "127.0.0.1:5000") == (
        "127.0.0.1:5000/runnerctl/python:3.11"
    )
    assert target_reference("old.registry:443/team/img:2", "http://127.0.0.1:5000/") == (
        "127.0.0.1:5000/team/img:2"
    )
    with pytest.raises(ImageError, match="image id"):
        target_reference("0123456789ab", "127.0.0.1:5000")
    with pytest.raises(ImageError, match="Not a registry"):
        target_reference("a/b:1", "")
