"""Fixtures for the image tests: the docker adapter, local Debian bases, built images, a registry.

The bases are built with ``image base`` once and reused (the tag is kept), so a re-run only pays
for the image builds. Images built here carry ``runnerctl-test/python-<session>`` tags, removed
at the end (their untagged parents stay: they are the layer cache other sessions may use).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.docker_api import DockerAPI
from provisioner.images import BaseResult, BuildResult, BuildSpec, build_base, build_image
from provisioner.images import cosign as cosign_mod
from tests.helpers import wait_until

# Unique per session: two test sessions on one engine (CI and a developer) must not remove
# each other's images.
TEST_REPO = f"runnerctl-test/python-{uuid.uuid4().hex[:8]}"


@dataclass
class Built:
    """Images built during the session, removed at its end."""

    docker: DockerAPI
    tags: list[str]

    def build(self, spec: BuildSpec) -> BuildResult:
        result = build_image(spec, docker=self.docker)
        self.tags.append(result.tag)
        return result


@pytest.fixture(scope="session")
def docker_api() -> DockerAPI:
    return DockerAPI.from_env()


@pytest.fixture(scope="session")
def bases(docker_api: DockerAPI) -> dict[str, BaseResult]:
    """``runnerctl/base:bookworm`` (3.11) and ``runnerctl/base:trixie`` (3.13)."""
    return {suite: build_base(suite, docker=docker_api) for suite in ("bookworm", "trixie")}


@pytest.fixture(scope="session")
def built(docker_api: DockerAPI) -> Iterator[Built]:
    state = Built(docker_api, [])
    yield state
    for tag in dict.fromkeys(state.tags):
        docker_api.remove_image(tag, force=True, prune=False)


@pytest.fixture(scope="session")
def image311(built: Built, bases: dict[str, BaseResult]) -> BuildResult:
    """The default image for Python 3.11 on the local bookworm base."""
    return built.build(
        BuildSpec(python="3.11", base=bases["bookworm"].tag, tag=f"{TEST_REPO}:3.11")
    )


@pytest.fixture(scope="session")
def cosign_binary() -> Path:
    """The host's cosign, from the default pinned Debian source (cached by make setup)."""
    return cosign_mod.resolve(cosign_mod.parse_source(cosign_mod.DEFAULT_SOURCE)).path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on loopback with a throwaway storage dir."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    assert Path(binary).exists(), "docker-registry is missing: run make setup"
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (tmp_path / "registry.log").open("w")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def not_started() -> str:
        return "docker-registry did not start: " + (tmp_path / "registry.log").read_text()

    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            assert proc.poll() is None, not_started()
            return False

    try:
        wait_until(listening, timeout=20, interval=0.1, message=not_started)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
