"""Build from a local base, verify, labels, size, the ci user, and a verify that fails."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from provisioner.docker_api import BuildEvent, DockerAPI
from provisioner.images import (
    BaseResult,
    BuildResult,
    BuildSpec,
    CheckStatus,
    ImageUser,
    build_base,
    ensure_job_image,
    verify_image,
)
from tests.conftest import run_runnerctl
from tests.integration.images.conftest import TEST_REPO, Built

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def runnerctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_runnerctl(*args, env=env, timeout=900)


def test_base_is_idempotent(docker_api: DockerAPI, bases: dict[str, BaseResult]) -> None:
    again = build_base("bookworm", docker=docker_api)
    assert again.skipped
    assert again.image_id == bases["bookworm"].image_id
    assert bases["bookworm"].python == "3.11"
    assert bases["trixie"].python == "3.13"
    probe = docker_api.run(bases["trixie"].tag, ["python3", "--version"])
    assert probe.output.startswith("Python 3.13.")
    # The base is stripped: no apt lists, no apt caches.
    leftovers = docker_api.run(
        bases["bookworm"].tag, ["sh", "-c", "ls /var/lib/apt/lists /var/cache/apt/archives"]
    )
    assert leftovers.ok
    assert set(leftovers.output.split()) <= {
        "/var/lib/apt/lists:",
        "/var/cache/apt/archives:",
        "partial",
    }


def test_cli_build_reports_id_tags_size_and_labels(
    built: Built, bases: dict[str, BaseResult], image311: BuildResult, docker_api: DockerAPI
) -> None:
    tag = f"{TEST_REPO}:cli"
    built.tags.append(tag)
    proc = runnerctl(
        "--output", "json", "image", "build", "--python", "3.11",
        "--base", bases["bookworm"].tag, "--tag", tag,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    info = docker_api.inspect_image(tag)
    assert info is not None
    assert doc["image_id"] == info.id
    assert doc["tags"] == [tag]
    assert doc["size"] == info.size
    assert doc["size_over_base"] == info.size - bases["bookworm"].size > 10_000_000
    assert doc["base"] == bases["bookworm"].tag
    assert doc["python"].startswith("3.11.")
    assert doc["labels"] == {k: v for k, v in info.labels.items() if k in doc["labels"]}
    assert "Step " in proc.stderr  # build steps streamed as plain lines (not a TTY)
    text = runnerctl("image", "build", "--base", bases["bookworm"].tag, "--tag", tag)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == tag
    assert lines[1].startswith("  image id   sha256:")
    assert f"over {bases['bookworm'].tag})" in lines[3]


def test_verify_passes_and_lists_each_check(image311: BuildResult) -> None:
    proc = runnerctl("--output", "json", "image", "verify", image311.tag)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    statuses = {c["name"]: c["status"] for c in doc["checks"]}
    assert statuses == {
        "python version": "passed",
        "offline pip install build twine": "passed",
        "cosign version": "passed",
        "cosign sign/verify round trip": "passed",
        "cosign rejects a tampered file": "passed",
        "git present": "passed",
        "CA bundle trusted": "skipped",
    }


def test_labels_match_what_is_inside(
    image311: BuildResult, docker_api: DockerAPI, cosign_binary: Path
) -> None:
    info = docker_api.inspect_image(image311.tag)
    assert info is not None
    labels = info.labels
    version = docker_api.run(image311.tag, ["python", "--version"]).output.split()[1]
    assert labels["io.runnerctl.python.version"] == version
    assert labels["io.runnerctl.python.minor"] == "3.11"
    assert labels["io.runnerctl.cosign.version"] == "2.5.0"
    assert labels["io.runnerctl.cosign.source"] == "debian:2.5.0-2+b4"
    inside = docker_api.run(image311.tag, ["sha256sum", "/usr/local/bin/cosign"]).output.split()[0]
    assert labels["io.runnerctl.cosign.sha256"] == inside
    assert inside == hashlib.sha256(cosign_binary.read_bytes()).hexdigest()
    listing = docker_api.run(image311.tag, ["ls", "/opt/wheelhouse"]).output.split()
    for spec in labels["io.runnerctl.wheelhouse"].split(","):
        name, _, ver = spec.partition("==")
        assert any(f.lower().startswith(f"{name.replace('-', '_')}-{ver}-") for f in listing), spec
    assert int(labels["io.runnerctl.wheelhouse.count"]) == len(
        [f for f in listing if f.endswith(".whl")]
    )
    assert labels["org.opencontainers.image.base.name"] == image311.base
    assert labels["org.opencontainers.image.version"].startswith("3.11-runnerctl")
    assert len(labels["org.opencontainers.image.revision"]) in (40, 7) or (
        labels["org.opencontainers.image.revision"] == "unknown"
    )
    assert info.env_value("PIP_FIND_LINKS") == "/opt/wheelhouse"
    assert info.env_value("UV_FIND_LINKS") == "/opt/wheelhouse"
    assert info.env_value("PIP_CACHE_DIR") == "/cache/pip"
    assert info.user in ("", "root")


def test_tooling_installs_offline_from_the_wheelhouse(
    image311: BuildResult, docker_api: DockerAPI
) -> None:
    script = (
        "set -e; pip install -q build twine pytest cryptography; "
        "python -c 'import build, twine, pytest, cryptography; print(cryptography.__version__)'; "
        "uv venv -q /tmp/u && uv pip install -q --python /tmp/u/bin/python --offline "
        "build twine pytest cryptography && /tmp/u/bin/python -m twine --version"
    )
    result = docker_api.run(
        image311.tag, ["sh", "-c", script], environment={"PIP_NO_INDEX": "1"}, timeout=300
    )
    assert result.ok, result.output
    assert "twine version" in result.output


def test_user_ci_is_the_default_user_when_asked(
    built: Built, bases: dict[str, BaseResult], docker_api: DockerAPI
) -> None:
    result = built.build(
        BuildSpec(
            python="3.11", base=bases["bookworm"].tag, tag=f"{TEST_REPO}:ci", user=ImageUser.CI
        )
    )
    assert result.labels["io.runnerctl.user"] == "ci"
    run = docker_api.run(
        result.tag,
        ["sh", "-c", "id -un; pip install -q --no-index twine && twine --version | head -n1"],
    )
    assert run.ok, run.output
    assert run.output.splitlines()[0] == "ci"
    root_default = docker_api.run(bases["bookworm"].tag, ["id", "-un"])
    assert root_default.output.strip() == "root"


def test_verify_fails_with_exit_6_when_a_check_fails(
    image311: BuildResult, docker_api: DockerAPI, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM {image311.image_id}\nRUN rm /usr/bin/git\n")
    broken = docker_api.build(
        tmp_path, labels={"io.runnerctl.python.version": "3.11.99"}, network_mode="none"
    )
    try:
        report = verify_image(broken, docker=docker_api)
        failed = {c.name for c in report.checks if c.status is CheckStatus.FAILED}
        assert failed == {"python version", "git present"}
        assert not report.ok
        proc = runnerctl("--output", "json", "image", "verify", broken)
        assert proc.returncode == 6
        assert json.loads(proc.stdout)["ok"] is False
        assert "failed 2 check(s): python version, git present" in proc.stderr
        assert "Hint: " in proc.stderr
    finally:
        docker_api.remove_image(broken, force=True)


def test_ensure_job_image_is_quick_when_present(
    image311: BuildResult, docker_api: DockerAPI
) -> None:
    events: list[BuildEvent] = []
    ref = ensure_job_image("3.11", docker=docker_api, tag=image311.tag, on_event=events.append)
    assert ref.tag == image311.tag
    assert ref.image_id == image311.image_id
    assert events == []
