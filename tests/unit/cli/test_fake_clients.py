"""Successful commands through the CLI, with fake clients swapped in through AppContext."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from provisioner.gitlab.models import ConnectionSettings, Runner, RunnerStatus, RunnerType
from tests.conftest import Cli

TOKEN = "Qq1plainAccessToken2468"

RUNNERS = (
    Runner(
        id=7,
        description="docker-prod-1",
        runner_type=RunnerType.PROJECT,
        status=RunnerStatus.ONLINE,
        paused=False,
        tag_list=("docker", "linux"),
        contacted_at=datetime(2026, 12, 1, 8, 30, 0, tzinfo=UTC),
    ),
    Runner(
        id=12,
        description="shell-ci",
        runner_type=RunnerType.INSTANCE,
        status=RunnerStatus.NEVER_CONTACTED,
        paused=True,
    ),
)


class FakeGitLab:
    """Answers the two calls ``runners list`` makes."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.filters: list[Any] = []

    def list_runners(self, flt: Any) -> tuple[Runner, ...]:
        self.filters.append(flt)
        return RUNNERS

    def find_runner(self, runner_id: int) -> Runner | None:
        return next(r for r in RUNNERS if r.id == runner_id)


@pytest.fixture
def fake() -> tuple[AppContext, list[FakeGitLab]]:
    made: list[FakeGitLab] = []

    def build(settings: ConnectionSettings) -> Any:
        made.append(FakeGitLab(settings))
        return made[-1]

    return AppContext(factories=Factories(gitlab=build)), made


ENV = {"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": TOKEN}


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times are shown in the user's zone: make that zone UTC for exact output."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_runners_list_table(cli: Cli, fake: tuple[AppContext, list[FakeGitLab]]) -> None:
    app, made = fake
    code, out, err = cli("runners", "list", env=ENV, app=app)
    assert (code, err) == (0, "")
    assert out == (
        "ID  NAME           TYPE      STATUS           TAGS           LAST CONTACT           \n"
        "7   docker-prod-1  project   online           docker, linux  2026-12-01 08:30:00 UTC\n"
        "12  shell-ci       instance  never_contacted                 never                  \n"
    )
    assert made[0].settings.url == "https://gitlab.example"
    assert made[0].settings.token == TOKEN


def test_runners_list_json_after_the_subcommand(
    cli: Cli, fake: tuple[AppContext, list[FakeGitLab]]
) -> None:
    app, made = fake
    code, out, err = cli("runners", "list", "--status", "online", "-o", "json", env=ENV, app=app)
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {
            "id": 7,
            "description": "docker-prod-1",
            "runner_type": "project_type",
            "status": "online",
            "paused": False,
            "tags": ["docker", "linux"],
            "contacted_at": "2026-12-01T08:30:00+00:00",
        },
        {
            "id": 12,
            "description": "shell-ci",
            "runner_type": "instance_type",
            "status": "never_contacted",
            "paused": True,
            "tags": [],
            "contacted_at": None,
        },
    ]
    assert made[0].filters[0].status is RunnerStatus.ONLINE
    assert TOKEN not in out


def test_config_store_factory_is_used(cli: Cli, tmp_path: Path) -> None:
    from provisioner.runner_config import ConfigStore

    asked: list[Path] = []

    def store(path: Path) -> ConfigStore:
        asked.append(path)
        return ConfigStore(path)

    config = tmp_path / "config.toml"
    config.write_text(
        'concurrent = 1\n\n[[runners]]\n  name = "r1"\n  id = 5\n  url = "https://gitlab.example/"\n'
        '  token = "glrt-abcdefgh12345678"\n  executor = "shell"\n'
    )
    app = AppContext(factories=Factories(config_store=store))
    code, out, err = cli("unregister", "r1", "--keep-server", "-c", str(config), app=app)
    assert (code, err) == (0, "")
    assert out == f"Runner 'r1' (id 5) removed from {config}\n"
    assert asked == [config]
    assert "r1" not in config.read_text()


class FakeRegistrationGitLab:
    """Enough of GitLab for a dry run, which only plans its calls."""

    request_count = 0
    authenticated = True

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings

    def token_scopes(self) -> frozenset[str]:
        return frozenset({"create_runner", "api"})


def test_register_dry_run_json_through_the_cli(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    app = AppContext(factories=Factories(gitlab=FakeRegistrationGitLab))  # type: ignore[arg-type]
    code, out, err = cli(
        "register", "-e", "shell", "-s", "instance", "-n", "r1", "-t", "py",
        "--dry-run", "-c", str(config), "--output", "json",
        env=ENV, app=app,
    )  # fmt: skip
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert list(doc) == [
        "action", "dry_run", "name", "runner_id", "config", "config_changed", "server_changes",
        "config_changes", "tags", "calls", "diff", "rbac_file", "stale_runner_id", "requests",
        "warnings",
    ]  # fmt: skip
    assert {k: v for k, v in doc.items() if k != "diff"} == {
        "action": "created",
        "dry_run": True,
        "name": "r1",
        "runner_id": None,
        "config": str(config),
        "config_changed": True,  # would change
        "server_changes": [],
        "config_changes": [],
        "tags": ["py"],
        "calls": [
            {
                "method": "POST",
                "path": "/user/runners",
                "purpose": "create the runner (instance)",
                "done": False,
            },
            {
                "method": "POST",
                "path": "/runners/verify",
                "purpose": "check the new token",
                "done": False,
            },
            {
                "method": "GET",
                "path": "/runners/<new id>",
                "purpose": "read back tags and flags",
                "done": False,
            },
        ],
        "rbac_file": None,
        "stale_runner_id": None,
        "requests": 0,
        "warnings": [],
    }
    assert '+  name = "r1"\n' in doc["diff"]
    assert not config.exists()


def test_gitlab_config_file_and_section_give_url_and_token(
    cli: Cli, fake: tuple[AppContext, list[FakeGitLab]], tmp_path: Path
) -> None:
    app, made = fake
    config = tmp_path / "gitlab.cfg"
    config.write_text(f"[work]\nurl = https://gitlab.work.example\nprivate_token = {TOKEN}\n")
    code, out, err = cli(
        "runners", "list", "-o", "json",
        "--gitlab-config-section", "work", "--gitlab-config-file", str(config),
        env={"GITLAB_URL": None, "CI_SERVER_URL": None, "GITLAB_TOKEN": None}, app=app,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert [r["id"] for r in json.loads(out)] == [7, 12]
    assert made[0].settings.url == "https://gitlab.work.example"
    assert made[0].settings.token == TOKEN


def test_a_failure_after_the_result_document_prints_no_second_document(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.images import CheckResult, CheckStatus, VerifyReport

    report = VerifyReport(
        image="runnerctl/python:3.11",
        image_id="sha256:abc",
        checks=(
            CheckResult("python", CheckStatus.PASSED, "3.11.2", 0.123),
            CheckResult("cosign", CheckStatus.FAILED, "missing", 0.5),
        ),
    )
    monkeypatch.setattr("provisioner.images.verify_image", lambda *_a, **_k: report)
    app = AppContext(factories=Factories(docker=object))  # type: ignore[arg-type]
    code, out, err = cli("image", "verify", "-o", "json", app=app)
    assert code == 6
    assert json.loads(out) == {
        "image": "runnerctl/python:3.11",
        "image_id": "sha256:abc",
        "ok": False,
        "checks": [
            {"name": "python", "status": "passed", "detail": "3.11.2", "seconds": 0.12},
            {"name": "cosign", "status": "failed", "detail": "missing", "seconds": 0.5},
        ],
    }
    assert err == (
        "Error: runnerctl/python:3.11 failed 1 check(s): cosign\n"
        "Hint: rebuild the image (runnerctl image build --no-cache) and verify again\n"
    )
