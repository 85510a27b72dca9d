"""The `runnerctl demo` path, asserted step by step, run twice as a newcomer would."""

from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest

from provisioner.secrets import contains_secret
from tests.conftest import run_runnerctl

pytestmark = [pytest.mark.docker, pytest.mark.sandbox, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _demo(data_dir: Path, port: int) -> tuple[dict[str, Any], str]:
    proc = run_runnerctl(
        "--output",
        "json",
        "demo",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        timeout=1800,
        env={**os.environ, "GITLAB_TOKEN": ""},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def _statuses(result: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in result["steps"]}


def test_demo_registers_a_docker_runner_and_a_second_run_reuses_everything(
    tmp_path: Path,
) -> None:
    port = _free_port()
    first, first_output = _demo(tmp_path, port)
    assert _statuses(first) == {
        "docker": "done",
        "job image": _statuses(first)["job image"],
        "sandbox": "done",
        "register": "done",
        "register again": "reused",
        "validate": "done",
        "lint": "done",
        "runner": "done",
        "smoke pipeline": "done",
    }
    assert _statuses(first)["job image"] in {"done", "reused"}
    assert first["gitlab_url"] == f"http://127.0.0.1:{port}"
    assert first["image"] == "runnerctl/python:3.11"

    config_path = Path(first["config_path"])
    assert config_path == tmp_path / "config.toml"
    assert config_path.stat().st_mode & 0o777 == 0o600
    config = tomllib.loads(config_path.read_text())
    (runner,) = config["runners"]
    assert runner["name"] == "runnerctl-demo-docker"
    assert runner["executor"] == "docker"
    assert runner["url"] == f"http://127.0.0.1:{port}"
    assert runner["token"].startswith("glrt-")
    assert runner["docker"]["image"] == "runnerctl/python:3.11"
    assert runner["docker"]["privileged"] is False
    assert "runnerctl-demo-pip-cache:/cache" in runner["docker"]["volumes"]
    assert "PIP_CACHE_DIR=/cache/pip" in runner["environment"]
    assert runner["docker"]["network_mode"] == "host"
    _assert_smoke_green(first, port)
    before = config_path.read_bytes()

    second, second_output = _demo(tmp_path, port)
    statuses = _statuses(second)
    assert statuses["job image"] == "reused"
    assert statuses["register"] == "reused"
    assert statuses["register again"] == "reused"
    assert config_path.read_bytes() == before
    assert statuses["runner"] == "done"
    assert statuses["smoke pipeline"] == "done"
    _assert_smoke_green(second, port)
    assert second["smoke"]["version"] != first["smoke"]["version"]
    assert second["smoke"]["key_created"] is False
    assert "Look at them" not in second_output  # --output json prints only the document

    for output in (first_output, second_output):
        assert runner["token"] not in output
        assert not contains_secret(output)


def _assert_smoke_green(result: dict[str, Any], port: int) -> None:
    smoke = result["smoke"]
    assert smoke["status"] == "passed", smoke["message"]
    assert [(s["name"], s["status"]) for s in smoke["stages"]] == [
        (name, "success")
        for name in (
            "test",
            "build",
            "sign",
            "verify",
            "publish",
            "publish_signatures",
            "consumer_verify",
        )
    ]
    assert [c["name"] for c in smoke["checks"] if c["passed"]] == [
        "pypi registry",
        "generic registry",
        "local verification",
        "altered copy rejected",
    ]
    assert smoke["project"] == "root/runnerctl-smoke"
    base = f"http://127.0.0.1:{port}/api/v4/projects/"
    assert smoke["pypi_index_url"].startswith(base)
    assert smoke["pypi_index_url"].endswith("/packages/pypi/simple/runnerctl-smoke/")
    assert smoke["generic_url"].endswith(f"/packages/generic/runnerctl-smoke/{smoke['version']}/")
