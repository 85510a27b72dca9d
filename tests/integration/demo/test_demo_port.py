"""``runnerctl demo`` on an existing data dir with another port, against the real sandbox.

The sandbox, the GitLab client, registration and config.toml are real; Docker, the job image,
the stand-in runner and the smoke pipeline are stand-ins (the e2e tier runs those for real), so
this test needs no docker.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from provisioner.demo import DEMO_RUNNER_NAME, DemoPieces, ImageOutcome, run_demo
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.sandbox import start_background
from provisioner.smoke import SmokeResult
from tests.helpers import smoke_result

pytestmark = pytest.mark.sandbox


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Runner:
    def stop(self, *, force: bool = False, timeout: float | None = None) -> object:
        return None


def _pieces(port: int, runner_urls: list[list[str]]) -> DemoPieces:
    def start_runner(config: Path) -> _Runner:
        # What the stand-in runner would poll: every entry's URL at the moment it starts.
        runner_urls.append([r["url"] for r in tomllib.loads(config.read_text())["runners"]])
        return _Runner()

    def smoke(url: str, _token: str) -> SmokeResult:
        return smoke_result(base=url, time_to_green=0.0)

    return DemoPieces(
        docker_version=lambda: "stand-in",
        ensure_image=lambda: ImageOutcome(tag="runnerctl/python:3.11", built=False),
        start_sandbox=lambda path: start_background(path, port=port),
        connect=lambda url, token: GitLabAPI.from_settings(
            ConnectionSettings(url=url, token=token)
        ),
        on_secret=lambda _secret: None,
        start_runner=start_runner,
        smoke=smoke,
    )


def test_another_port_moves_the_runner_entry_instead_of_adding_a_stale_one(
    tmp_path: Path,
) -> None:
    first_port, second_port = _free_port(), _free_port()
    runner_urls: list[list[str]] = []
    first = run_demo(tmp_path, pieces=_pieces(first_port, runner_urls))
    (entry,) = tomllib.loads(first.config_path.read_text())["runners"]
    assert entry["url"] == f"http://127.0.0.1:{first_port}"

    second = run_demo(tmp_path, pieces=_pieces(second_port, runner_urls))

    new_url = f"http://127.0.0.1:{second_port}"
    (moved,) = tomllib.loads(second.config_path.read_text())["runners"]
    assert moved["name"] == DEMO_RUNNER_NAME
    assert moved["url"] == new_url
    assert (moved["id"], moved["token"]) == (entry["id"], entry["token"])  # the same runner
    steps: dict[str, Any] = {s.name: s for s in second.steps}
    assert steps["runner entry"].detail == (
        f"runner entry moved from http://127.0.0.1:{first_port} to {new_url}"
    )
    assert steps["register"].status.value == "reused"
    assert runner_urls == [[f"http://127.0.0.1:{first_port}"], [new_url]]
