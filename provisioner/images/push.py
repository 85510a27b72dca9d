"""``image push``: push a job image to a registry and, with a key, sign it and verify the signature.

Signing is offline-friendly: a cosign key pair, ``--tlog-upload=false`` when signing and
``--insecure-ignore-tlog`` when verifying (no Rekor is reachable from an air-gapped fleet). The
key's password reaches cosign through ``COSIGN_PASSWORD`` in its environment, never argv.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.docker_api import DockerAPI, split_reference
from provisioner.errors import ImageError
from provisioner.images.events import ImageStage, Progress, Stage
from provisioner.secrets import redact


@dataclass(frozen=True)
class PushReport:
    """Where the image went and whether its signature checks out."""

    image: str
    reference: str
    digest: str
    signed: bool
    verified: bool
    verify_output: str = ""

    @property
    def pinned(self) -> str:
        """``registry/repo@sha256:…``."""
        return f"{split_reference(self.reference)[0]}@{self.digest}"


def target_reference(image: str, registry: str) -> str:
    """``runnerctl/python:3.11`` + ``127.0.0.1:5000`` → ``127.0.0.1:5000/runnerctl/python:3.11``."""
    registry = registry.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
    if not registry or "/" in registry.split(":", 1)[0] or " " in registry:
        raise ImageError(
            f"Not a registry address: {registry!r}", hint="give host[:port], e.g. 127.0.0.1:5000"
        )
    repo, tag = split_reference(image)
    if repo.startswith("sha256") or re.fullmatch(r"[0-9a-f]{12,64}", repo):
        raise ImageError(
            f"{image} is an image id, not a tag", hint="push a tagged image (repo:tag)"
        )
    first = repo.split("/", 1)
    if len(first) == 2 and ("." in first[0] or ":" in first[0] or first[0] == "localhost"):
        repo = first[1]  # drop the registry the image was tagged for
    return f"{registry}/{repo}:{tag}"


def push_image(
    image: str,
    registry: str,
    *,
    docker: DockerAPI,
    cosign: Path | None = None,
    sign_key: Path | None = None,
    password: str | None = None,
    on_event: Progress | None = None,
) -> PushReport:
    """Push ``image`` to ``registry``; with ``sign_key``, sign it there and verify the signature."""
    emit = on_event or (lambda _e: None)
    if docker.inspect_image(image) is None:
        raise ImageError(f"Image {image} does not exist", hint="build it: runnerctl image build")
    if sign_key is not None:
        if cosign is None:
            raise ImageError("Signing needs a cosign binary")
        if not sign_key.is_file():
            raise ImageError(
                f"Signing key {sign_key} does not exist",
                hint="create one with: cosign generate-key-pair (COSIGN_PASSWORD in the env)",
            )
    reference = target_reference(image, registry)
    docker.tag_image(image, reference)
    try:
        emit(ImageStage(Stage.PUSHING, reference))
        pushed = docker.push(reference, on_event=emit)
    finally:
        docker.remove_image(reference)  # the local alias only; the image stays
    if sign_key is None or cosign is None:
        return PushReport(image, reference, pushed.digest, signed=False, verified=False)
    env = _cosign_env(password)
    emit(ImageStage(Stage.SIGNING, pushed.pinned))
    _cosign(
        [str(cosign), "sign", "--yes", "--key", str(sign_key), "--tlog-upload=false",
         pushed.pinned],
        env,
        what="sign the image",
        hint="check the key and COSIGN_PASSWORD; the registry must accept signature pushes",
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="runnerctl-cosign-") as tmp:
        pub = Path(tmp) / "cosign.pub"
        public = _cosign(
            [str(cosign), "public-key", "--key", str(sign_key)],
            env,
            what="read the public key",
            hint="check COSIGN_PASSWORD",
        )
        pub.write_text(public)
        emit(ImageStage(Stage.VERIFYING, pushed.pinned))
        output = _cosign(
            [str(cosign), "verify", "--key", str(pub), "--insecure-ignore-tlog", pushed.pinned],
            env,
            what="verify the image signature",
            hint="the signature did not verify against the key",
        )
    return PushReport(
        image, reference, pushed.digest, signed=True, verified=True, verify_output=output
    )


def _cosign_env(password: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COSIGN_PASSWORD", None)
    if password is not None:
        env["COSIGN_PASSWORD"] = password
    elif "COSIGN_PASSWORD" in os.environ:
        env["COSIGN_PASSWORD"] = os.environ["COSIGN_PASSWORD"]
    return env


def _cosign(cmd: list[str], env: dict[str, str], *, what: str, hint: str) -> str:
    secret = env.get("COSIGN_PASSWORD")
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=300, check=False
        )
    except OSError as exc:
        raise ImageError(f"Could not run cosign to {what}: {exc.strerror}", hint=hint) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        text = redact(" | ".join(detail), extra=(secret,) if secret else ())
        raise ImageError(f"cosign could not {what}: {text}", hint=hint)
    return proc.stdout
