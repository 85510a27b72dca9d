"""Verify cosign key-pair signatures without cosign: ECDSA P-256 over SHA-256 (cryptography).

Accepts cosign's detached `.sig` (base64 of the DER signature) and its bundles: the legacy
`{"base64Signature": ...}` and the protobuf-JSON bundle (messageSignature over the digest).
A proof that does not depend on one tool.

Usage: python ci/pyverify.py PUBLIC_KEY.pem FILE SIGNATURE_OR_BUNDLE [...]
Exit 0 when every signature verifies, 1 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("expected a cosign ECDSA P-256 public key")
    return key


def verify(key: ec.EllipticCurvePublicKey, blob: bytes, signature_file: bytes) -> bool:
    """True when ``signature_file`` (a .sig or a bundle) is a valid signature of ``blob``."""
    text = signature_file.strip()
    if text.startswith(b"{"):
        bundle = json.loads(text)
        if "base64Signature" in bundle:
            text = bundle["base64Signature"].encode()
        else:
            message = bundle["messageSignature"]
            if message["messageDigest"]["algorithm"] != "SHA2_256":
                return False
            digest = base64.b64decode(message["messageDigest"]["digest"])
            if digest != hashlib.sha256(blob).digest():
                return False
            try:
                key.verify(
                    base64.b64decode(message["signature"]),
                    digest,
                    ec.ECDSA(utils.Prehashed(hashes.SHA256())),
                )
            except InvalidSignature:
                return False
            return True
    try:
        key.verify(base64.b64decode(text, validate=True), blob, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    with open(argv[1], "rb") as handle:
        key = load_public_key(handle.read())
    with open(argv[2], "rb") as handle:
        blob = handle.read()
    failed = 0
    for path in argv[3:]:
        with open(path, "rb") as handle:
            ok = verify(key, blob, handle.read())
        print(f"{'Verified OK' if ok else 'FAILED'} (pure Python, ECDSA P-256/SHA-256): {argv[2]} with {path}")
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
