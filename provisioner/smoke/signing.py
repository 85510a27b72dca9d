"""cosign key pairs and signature checks for the smoke pipeline.

Two independent verifiers, so the proof does not rest on one tool: the ``cosign`` binary
(``verify-blob --insecure-ignore-tlog``, offline with a key on cosign 2.x and 3.x) and a
pure-Python check of ECDSA P-256 over SHA-256 with ``cryptography``.

The key password reaches cosign only through its environment (``COSIGN_PASSWORD``), never argv.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.errors import SmokeError
from provisioner.secrets import redact
from provisioner.settings import cache_dir

COSIGN_HINT = (
    "Install cosign 2.x or 3.x on PATH (scripts/setup.sh fetches Debian's 2.5.0), or pass its "
    "location in RUNNERCTL_COSIGN."
)


@dataclass(frozen=True)
class KeyPair:
    """A cosign key pair: the encrypted private key PEM, the public key PEM, the password."""

    private_pem: str = field(repr=False)
    public_pem: str
    password: str = field(repr=False)


def find_cosign() -> str:
    """The cosign binary: ``$RUNNERCTL_COSIGN``, ``cosign`` on PATH, beside our Python, or the
    one ``scripts/setup.sh`` / ``runnerctl image build`` unpacked into the cache."""
    found = os.environ.get("RUNNERCTL_COSIGN") or shutil.which("cosign")
    if found:
        return found
    candidates = [Path(sys.executable).with_name("cosign")]
    candidates += sorted((cache_dir() / "cosign").glob("*/cosign"), reverse=True)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SmokeError("cosign is not installed.", hint=COSIGN_HINT)


def generate_key_pair(*, cosign: str | None = None) -> KeyPair:
    """``cosign generate-key-pair`` in a private temp dir (0700) that is removed afterwards.

    (Debian's cosign 2.5.0 ``import-key-pair`` rejects every key; generating works.)
    """
    binary = cosign or find_cosign()
    password = secrets.token_hex(24)  # hex satisfies GitLab's mask rule
    with tempfile.TemporaryDirectory(prefix="runnerctl-cosign-") as tmp:
        os.chmod(tmp, 0o700)
        proc = subprocess.run(
            [binary, "generate-key-pair"],
            cwd=tmp,
            env={**_base_env(), "COSIGN_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise SmokeError(
                f"cosign generate-key-pair failed: {redact(proc.stderr.strip())[-300:]}",
                hint=COSIGN_HINT,
            )
        private = Path(tmp, "cosign.key").read_text()
        public = Path(tmp, "cosign.pub").read_text()
    return KeyPair(private_pem=private, public_pem=public, password=password)


def cosign_verify(
    public_pem: str,
    blob: Path,
    *,
    signature: Path | None = None,
    bundle: Path | None = None,
    cosign: str | None = None,
) -> tuple[bool, str]:
    """``cosign verify-blob --key … --insecure-ignore-tlog``; (verified, cosign's last words)."""
    binary = cosign or find_cosign()
    with tempfile.TemporaryDirectory(prefix="runnerctl-verify-") as tmp:
        key = Path(tmp, "cosign.pub")
        key.write_text(public_pem)
        argv = [binary, "verify-blob", "--key", str(key), "--insecure-ignore-tlog"]
        if signature is not None:
            argv += ["--signature", str(signature)]
        if bundle is not None:
            argv += ["--bundle", str(bundle)]
        proc = subprocess.run(
            [*argv, str(blob)],
            env=_base_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    words = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
    return proc.returncode == 0, redact(words[-1] if words else "")


def python_verify(public_pem: str, blob: bytes, signature_file: bytes) -> bool:
    """Check a cosign ``.sig`` or bundle (legacy or protobuf-JSON) with ECDSA P-256/SHA-256."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SmokeError(
            "The cosign public key is not ECDSA P-256.",
            hint="Let runnerctl smoke generate the key pair (cosign generate-key-pair).",
        )
    text = signature_file.strip()
    try:
        if text.startswith(b"{"):
            bundle = json.loads(text)
            if "base64Signature" in bundle:
                text = str(bundle["base64Signature"]).encode()
            else:
                message = bundle["messageSignature"]
                digest = base64.b64decode(message["messageDigest"]["digest"])
                if (
                    message["messageDigest"].get("algorithm") != "SHA2_256"
                    or digest != hashlib.sha256(blob).digest()
                ):
                    return False
                key.verify(
                    base64.b64decode(message["signature"]),
                    digest,
                    ec.ECDSA(utils.Prehashed(hashes.SHA256())),
                )
                return True
        key.verify(base64.b64decode(text, validate=True), blob, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


def _base_env() -> dict[str, str]:
    # No COSIGN_* from the caller's environment leaks into our calls; cosign needs HOME/PATH.
    keep = ("PATH", "HOME", "TMPDIR", "LANG", "SSL_CERT_FILE")
    return {k: v for k, v in os.environ.items() if k in keep}
