"""Real cosign: key generation, the template's signing flags, and both verifiers agreeing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.sandbox.ci.inputs import load_with_inputs
from provisioner.smoke.signing import (
    cosign_verify,
    find_cosign,
    generate_key_pair,
    python_verify,
)

TEMPLATE = Path(__file__).resolve().parents[3] / "provisioner" / "smoke" / "template"
# The flags the template's sign job passes on cosign 2.x (3.x adds --use-signing-config=false).
SIGN_FLAGS = ["--tlog-upload=false", "--new-bundle-format=false"]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, str]:
    pair = generate_key_pair()
    work = tmp_path_factory.mktemp("cosign")
    key = work / "cosign.key"
    key.write_text(pair.private_pem)
    key.chmod(stat.S_IRUSR | stat.S_IWUSR)
    blob = work / "pkg-0.1.0-py3-none-any.whl"
    blob.write_bytes(os.urandom(4096))
    cosign = find_cosign()
    extra = []
    help_text = subprocess.run(
        [cosign, "sign-blob", "--help"], capture_output=True, text=True, check=False
    ).stdout
    if "--use-signing-config" in help_text:
        extra = ["--use-signing-config=false"]
    proc = subprocess.run(
        [
            cosign,
            "sign-blob",
            "--yes",
            "--key",
            str(key),
            *extra,
            *SIGN_FLAGS,
            "--output-signature",
            f"{blob}.sig",
            "--bundle",
            f"{blob}.bundle",
            str(blob),
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(work), "COSIGN_PASSWORD": pair.password},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return blob, Path(f"{blob}.sig"), Path(f"{blob}.bundle"), pair.public_pem


def test_generated_key_pair_is_encrypted_p256() -> None:
    pair = generate_key_pair()
    assert pair.private_pem.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert pair.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert len(pair.password) == 48
    assert pair.password not in repr(pair)


def test_cosign_and_python_agree_on_sig_and_bundle(signed: tuple[Path, Path, Path, str]) -> None:
    blob, sig, bundle, public = signed
    assert cosign_verify(public, blob, signature=sig)[0]
    assert cosign_verify(public, blob, bundle=bundle)[0]
    assert python_verify(public, blob.read_bytes(), sig.read_bytes())
    assert python_verify(public, blob.read_bytes(), bundle.read_bytes())


def test_an_altered_copy_fails_both(signed: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    blob, sig, _, public = signed
    altered = tmp_path / blob.name
    altered.write_bytes(blob.read_bytes() + b"x")
    ok, words = cosign_verify(public, altered, signature=sig)
    assert not ok
    assert "invalid signature" in words
    assert not python_verify(public, altered.read_bytes(), sig.read_bytes())


def test_template_pyverify_script(signed: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    blob, sig, bundle, public = signed
    pub = tmp_path / "cosign.pub"
    pub.write_text(public)
    # The check ships in the python-release component as consumer_verify's RELEASE_PYVERIFY_PY,
    # run with `python -c "$RELEASE_PYVERIFY_PY" ...`.
    component = load_with_inputs(
        (TEMPLATE / "templates" / "python-release.yml").read_text(), {}, "`component`"
    )
    code = component["consumer_verify"]["variables"]["RELEASE_PYVERIFY_PY"]
    good = subprocess.run(
        [sys.executable, "-c", code, str(pub), str(blob), str(sig), str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("Verified OK (pure Python") == 2
    altered = tmp_path / blob.name
    altered.write_bytes(blob.read_bytes()[:-1])
    bad = subprocess.run(
        [sys.executable, "-c", code, str(pub), str(altered), str(sig)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout
