"""--ca-bundle trusted inside, a two-Python matrix, and push + signed-image verify."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner.docker_api import DockerAPI, Mount
from provisioner.images import BaseResult, BuildResult, BuildSpec, push_image, verify_image
from tests.conftest import run_runnerctl
from tests.integration.images.conftest import TEST_REPO, Built

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Serves one HTTPS request on localhost with the mounted leaf certificate, then fetches it with
# Python's default trust (SSL_CERT_FILE) and with curl: both must trust the baked CA.
TLS_PROBE = r"""
import http.server, ssl, subprocess, sys, threading, urllib.request
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tls/leaf.pem", "/tls/leaf.key")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"trusted")
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = f"https://localhost:{srv.server_address[1]}/"
try:
    print("python:", urllib.request.urlopen(url, timeout=10).read().decode())
except Exception as exc:
    print("python failed:", exc); sys.exit(1)
curl = subprocess.run(["curl", "-sS", url], capture_output=True, text=True)
print("curl:", curl.stdout or curl.stderr.strip())
sys.exit(curl.returncode)
"""


def _ca_and_leaf(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway CA (ca.pem) and a localhost leaf it signed (tls/leaf.pem, tls/leaf.key)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runnerctl test proxy CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tls / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tls / "leaf.key").chmod(0o644)  # read by the container's user
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file, tls


def test_ca_bundle_is_trusted_inside(
    built: Built,
    bases: dict[str, BaseResult],
    image311: BuildResult,
    docker_api: DockerAPI,
    tmp_path: Path,
) -> None:
    ca_file, tls = _ca_and_leaf(tmp_path)
    result = built.build(
        BuildSpec(
            python="3.11", base=bases["bookworm"].tag, tag=f"{TEST_REPO}:ca", ca_bundle=ca_file
        )
    )
    assert result.labels["io.runnerctl.ca-bundle.sha256"] != "none"
    report = verify_image(result.tag, docker=docker_api)
    assert report.ok, report.checks
    ca_check = next(c for c in report.checks if c.name == "CA bundle trusted")
    assert ca_check.status.value == "passed"
    mount = [Mount(str(tls), "/tls", read_only=True)]
    trusted = docker_api.run(result.tag, ["python", "-c", TLS_PROBE], mounts=mount, timeout=60)
    assert trusted.ok, trusted.output
    assert "python: trusted" in trusted.output
    assert "curl: trusted" in trusted.output
    # Control: the image without the CA refuses the same server.
    untrusted = docker_api.run(image311.tag, ["python", "-c", TLS_PROBE], mounts=mount, timeout=60)
    assert not untrusted.ok
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.output


def test_matrix_builds_two_pythons_on_local_bases(
    built: Built, bases: dict[str, BaseResult], docker_api: DockerAPI
) -> None:
    tags = [f"{TEST_REPO}:{v}-matrix" for v in ("3.11", "3.13")]
    built.tags.extend(tags)
    proc = run_runnerctl(
        "--output", "json", "image", "build", "--python", "3.11", "--python", "3.13",
        "--base", "auto", "--tag", f"{TEST_REPO}:{{python}}-matrix",
        timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert [d["tag"] for d in docs] == tags
    assert [d["base"] for d in docs] == [bases["bookworm"].tag, bases["trixie"].tag]
    assert docs[0]["python"].startswith("3.11.")
    assert docs[1]["python"].startswith("3.13.")
    for doc in docs:
        assert "could not be pulled (no registry reachable)" in doc["notes"][0]
        assert doc["size_over_base"] > 0
    assert "python:3.13-slim could not be pulled" in proc.stderr
    wheels313 = docker_api.run(tags[1], ["sh", "-c", "ls /opt/wheelhouse | grep cryptography"])
    assert "cryptography-" in wheels313.output
    report = verify_image(tags[1], docker=docker_api)
    assert report.ok, report.checks
    assert next(c for c in report.checks if c.name == "python version").detail.startswith(
        "Python 3.13."
    )


def _keypair(directory: Path, password: str, cosign: Path) -> tuple[Path, Path]:
    directory.mkdir()
    subprocess.run(
        [str(cosign), "generate-key-pair"],
        cwd=directory,
        env=dict(os.environ, COSIGN_PASSWORD=password),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return directory / "cosign.key", directory / "cosign.pub"


def test_push_signs_and_verifies_against_a_local_registry(
    image311: BuildResult, registry: str, cosign_binary: Path, tmp_path: Path
) -> None:
    password = "correct horse battery staple"
    key, pub = _keypair(tmp_path / "keys", password, cosign_binary)
    _, other_pub = _keypair(tmp_path / "other", "other password", cosign_binary)
    env = dict(os.environ, COSIGN_PASSWORD=password)
    proc = run_runnerctl(
        "--output", "json", "image", "push", image311.tag, registry,
        "--sign-key", str(key),
        timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert password not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["reference"] == f"{registry}/{TEST_REPO}:3.11"
    assert doc["signed"] is True
    assert doc["verified"] is True
    pinned = f"{registry}/{TEST_REPO}@{doc['digest']}"
    # The registry really holds the image and its signature.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{registry}/v2/{TEST_REPO}/tags/list", timeout=10) as resp:
        tags = json.load(resp)["tags"]
    assert "3.11" in tags
    assert f"{doc['digest'].replace(':', '-')}.sig" in tags
    # Independent checks with cosign itself: the right key verifies, another key does not.
    ok = subprocess.run(
        [str(cosign_binary), "verify", "--key", str(pub), "--insecure-ignore-tlog", pinned],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert doc["digest"] in ok.stdout
    bad = subprocess.run(
        [str(cosign_binary), "verify", "--key", str(other_pub), "--insecure-ignore-tlog", pinned],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode != 0


def test_build_with_push_lands_in_the_registry(
    built: Built, bases: dict[str, BaseResult], image311: BuildResult, registry: str
) -> None:
    tag = f"{TEST_REPO}:pushed"
    built.tags.append(tag)
    proc = run_runnerctl(
        "--output", "json", "image", "build", "--base", bases["bookworm"].tag,
        "--tag", tag, "--push", registry,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pushed = json.loads(proc.stdout)["pushed"]
    assert pushed["reference"] == f"{registry}/{tag}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{registry}/v2/{TEST_REPO}/tags/list", timeout=10) as resp:
        assert set(json.load(resp)["tags"]) == {"pushed"}


def test_push_without_a_key_and_with_a_wrong_password(
    image311: BuildResult,
    registry: str,
    cosign_binary: Path,
    docker_api: DockerAPI,
    tmp_path: Path,
) -> None:
    plain = push_image(image311.tag, registry, docker=docker_api)
    assert (plain.signed, plain.verified) == (False, False)
    assert plain.digest.startswith("sha256:")
    assert docker_api.inspect_image(plain.reference) is None  # the local alias is removed
    key, _ = _keypair(tmp_path / "keys", "right", cosign_binary)
    env = dict(os.environ, COSIGN_PASSWORD="wrong-password-123")
    proc = run_runnerctl(
        "image", "push", image311.tag, registry, "--sign-key", str(key),
        timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 6
    assert "cosign could not sign the image" in proc.stderr
    assert "wrong-password-123" not in proc.stderr
    assert "Hint: check the key and COSIGN_PASSWORD" in proc.stderr
