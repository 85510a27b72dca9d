"""``image verify``: self-tests in throwaway containers, one :class:`CheckResult` each.

Checks about being offline (wheelhouse install, cosign round trip) run with the network off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from provisioner.docker_api import DockerAPI, ImageInfo, RunResult
from provisioner.errors import ImageError
from provisioner.events import Reporter, StepFinished
from provisioner.images.context import parse_labels

#: A throwaway password for the in-container key pair; it protects a key that dies with the
#: container and goes in through the environment, never argv.
_ROUNDTRIP_PASSWORD = "verify-roundtrip"  # noqa: S105

_COSIGN_ROUNDTRIP = r"""
set -u
cd "$(mktemp -d)"
echo "runnerctl verify $(date +%s)" > blob.txt
fail() { echo "STEP $1 FAILED"; cat "$1.log"; exit "$2"; }
cosign generate-key-pair >keygen.log 2>&1 || fail keygen 10
cosign sign-blob --yes --key cosign.key --tlog-upload=false \
  --output-signature blob.sig blob.txt >sign.log 2>&1 || fail sign 11
cosign verify-blob --key cosign.pub --insecure-ignore-tlog \
  --signature blob.sig blob.txt >verify.log 2>&1 || fail verify 12
echo "STEP roundtrip OK"
echo tampered >> blob.txt
if cosign verify-blob --key cosign.pub --insecure-ignore-tlog \
  --signature blob.sig blob.txt >tamper.log 2>&1; then
  echo "STEP tamper ACCEPTED"; exit 13
fi
echo "STEP tamper REJECTED"
"""

_CA_CHECK = r"""
import glob, os, ssl, sys
baked = sorted(glob.glob("/usr/local/share/ca-certificates/runnerctl/*.crt"))
if not baked:
    print("no baked CA certificates found"); sys.exit(1)
bundle = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
BEGIN, END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
parts = open(bundle).read().split(BEGIN)[1:]
store = {ssl.PEM_cert_to_DER_cert(BEGIN + p.split(END)[0] + END + "\n") for p in parts}
missing = []
for path in baked:
    der = ssl.PEM_cert_to_DER_cert(open(path).read())
    if der not in store:
        missing.append(path)
print(f"{len(baked)} baked certificate(s); {len(baked) - len(missing)} in {bundle}")
sys.exit(1 if missing else 0)
"""


class CheckStatus(StrEnum):
    """The verdict of one self-test."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult(StepFinished[CheckStatus]):
    """One self-test: its name, verdict, a line of detail and how long it took."""

    @property
    def passed(self) -> bool:
        """True unless the check failed (a skipped check does not apply to this image)."""
        return self.status is not CheckStatus.FAILED


@dataclass(frozen=True)
class VerifyReport:
    """Every check run against one image."""

    image: str
    image_id: str
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(c.passed for c in self.checks)


CheckCallback = Reporter[CheckResult]


def verify_image(
    image: str, *, docker: DockerAPI, on_check: CheckCallback | None = None
) -> VerifyReport:
    """Run every self-test against ``image``; a failing check is a result, not an exception."""
    info = docker.inspect_image(image)
    if info is None:
        raise ImageError(f"Image {image} does not exist", hint="build it: runnerctl image build")
    checks: list[CheckResult] = []
    for check in (
        _python_version,
        _wheelhouse_install,
        _cosign_version,
        _cosign_roundtrip,
        _git,
        _ca_trusted,
    ):
        started = time.monotonic()
        results = check(docker, info)
        for name, status, detail in results:
            result = CheckResult(name, status, detail, time.monotonic() - started)
            checks.append(result)
            if on_check is not None:
                on_check(result)
    return VerifyReport(image=image, image_id=info.id, checks=tuple(checks))


Outcome = list[tuple[str, CheckStatus, str]]


def _verdict(ok: bool) -> CheckStatus:
    return CheckStatus.PASSED if ok else CheckStatus.FAILED


def _last(result: RunResult, n: int = 3) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    text = " | ".join(lines[-n:])
    if result.timed_out:
        text = "timed out; " + text
    return text or f"exit {result.exit_code}"


def _python_version(docker: DockerAPI, info: ImageInfo) -> Outcome:
    want = parse_labels(info.labels).get("python.version")
    result = docker.run(info.id, ["python", "--version"], timeout=60)
    got = result.output.strip().removeprefix("Python ").strip()
    if not result.ok:
        return [("python version", CheckStatus.FAILED, _last(result))]
    if not want:
        return [("python version", CheckStatus.FAILED, f"Python {got}, but no python label")]
    return [("python version", _verdict(got == want), f"Python {got} (label {want})")]


def _wheelhouse_install(docker: DockerAPI, info: ImageInfo) -> Outcome:
    script = (
        "set -e; python -m venv /tmp/v; "
        "/tmp/v/bin/pip install -q --no-index --find-links /opt/wheelhouse build twine; "
        "/tmp/v/bin/python -m twine --version | head -n1; /tmp/v/bin/python -m build --version"
    )
    result = docker.run(info.id, ["sh", "-c", script], timeout=300)
    return [("offline pip install build twine", _verdict(result.ok), _last(result, 2))]


def _cosign_version(docker: DockerAPI, info: ImageInfo) -> Outcome:
    result = docker.run(info.id, ["cosign", "version"], timeout=60)
    line = next(
        (ln.strip() for ln in result.output.splitlines() if "GitVersion" in ln), _last(result)
    )
    return [("cosign version", _verdict(result.ok), line)]


def _cosign_roundtrip(docker: DockerAPI, info: ImageInfo) -> Outcome:
    result = docker.run(
        info.id,
        ["sh", "-c", _COSIGN_ROUNDTRIP],
        environment={"COSIGN_PASSWORD": _ROUNDTRIP_PASSWORD},
        timeout=180,
    )
    out = result.output
    roundtrip_ok = "STEP roundtrip OK" in out
    tamper_ok = "STEP tamper REJECTED" in out
    detail = "generate-key-pair, sign-blob, verify-blob: Verified OK"
    if not roundtrip_ok:
        detail = _last(result, 4)
    return [
        ("cosign sign/verify round trip", _verdict(roundtrip_ok), detail),
        (
            "cosign rejects a tampered file",
            _verdict(roundtrip_ok and tamper_ok and result.ok),
            "verify-blob refused the modified file"
            if tamper_ok
            else "not reached"
            if not roundtrip_ok
            else "a modified file verified",
        ),
    ]


def _git(docker: DockerAPI, info: ImageInfo) -> Outcome:
    result = docker.run(info.id, ["git", "--version"], timeout=60)
    return [("git present", _verdict(result.ok), _last(result, 1))]


def _ca_trusted(docker: DockerAPI, info: ImageInfo) -> Outcome:
    digest = parse_labels(info.labels).get("ca-bundle.sha256", "none")
    if digest == "none":
        return [("CA bundle trusted", CheckStatus.SKIPPED, "no CA bundle baked into this image")]
    result = docker.run(info.id, ["python", "-c", _CA_CHECK], timeout=60)
    return [("CA bundle trusted", _verdict(result.ok), _last(result, 1))]
