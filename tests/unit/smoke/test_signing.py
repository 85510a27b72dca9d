"""The pure-Python check of cosign key-pair signatures (no cosign binary needed)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from provisioner.errors import SmokeError
from provisioner.smoke.signing import python_verify

BLOB = b"wheel bytes " * 100


def _key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def _sig(private: ec.EllipticCurvePrivateKey, blob: bytes) -> bytes:
    return base64.b64encode(private.sign(blob, ec.ECDSA(hashes.SHA256())))


def test_detached_sig_verifies_and_an_altered_blob_does_not() -> None:
    private, public = _key()
    sig = _sig(private, BLOB)
    assert python_verify(public, BLOB, sig)
    assert python_verify(public, BLOB, sig + b"\n")  # cosign accepts a trailing newline too
    assert not python_verify(public, BLOB + b"x", sig)


def test_other_key_does_not_verify() -> None:
    private, _ = _key()
    _, other = _key()
    assert not python_verify(other, BLOB, _sig(private, BLOB))


def test_legacy_bundle() -> None:
    private, public = _key()
    bundle = json.dumps({"base64Signature": _sig(private, BLOB).decode()}).encode()
    assert python_verify(public, BLOB, bundle)
    assert not python_verify(public, BLOB[:-1], bundle)


def test_protobuf_bundle_is_bound_to_the_file_digest() -> None:
    private, public = _key()
    digest = hashlib.sha256(BLOB).digest()
    signature = private.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
            "signature": base64.b64encode(signature).decode(),
        },
    }
    data = json.dumps(bundle).encode()
    assert python_verify(public, BLOB, data)
    assert not python_verify(public, BLOB + b"!", data)


def test_garbage_signature_is_a_failed_check_not_a_crash() -> None:
    _, public = _key()
    assert not python_verify(public, BLOB, b"not base64 at all")
    assert not python_verify(public, BLOB, b"{}")


def test_non_p256_key_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(SmokeError, match="P-256"):
        python_verify(pem, BLOB, b"AAAA")
