"""``runnerctl fleet plan``: the text view, JSON, --out, exit codes, with fake GitLab and hosts."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from provisioner.cli.fleet_view import render_plan
from provisioner.fleet.diff import plan
from provisioner.fleet.model import FleetPlan, ObservedRunner, marker
from provisioner.gitlab.models import ConnectionSettings
from provisioner.ssh import SSHError, SSHFailure, SSHOptions, SSHTarget
from tests.conftest import Cli
from tests.unit.fleet.factories import NOW, entry, fleet, host, observed, owned, rdef
from tests.unit.fleet.test_observe import CONFIG, FakeHost

TOKEN = "Qq1plainAccessToken2468"

FLEET_TOML = """\
[fleet]
name = "prod"
gitlab_url = "https://gitlab.example.com"
ssh_user = "ops"

[[hosts]]
name = "vm-a"
address = "127.0.0.1:2201"

[[hosts]]
name = "vm-b"
address = "127.0.0.1:2202"

[[runners]]
name = "build"
hosts = ["vm-a", "vm-b"]
executor = "docker"
tags = ["linux"]
[runners.docker]
image = "python:3.12"
"""


def _build_runner(**kw: Any) -> ObservedRunner:
    fields: dict[str, Any] = {
        "id": 10,
        "description": "build",
        "runner_type": "instance_type",
        "tags": ("linux",),
        "paused": False,
        "locked": True,
        "run_untagged": False,
        "access_level": "not_protected",
        "maximum_timeout": None,
        "maintenance_note": marker("prod", "build"),
    }
    fields.update(kw)
    return ObservedRunner(**fields)


class FakeGitLab:
    def __init__(self, settings: ConnectionSettings, runners: tuple[ObservedRunner, ...]) -> None:
        self.settings = settings
        self.runners = runners
        self.request_count = 0

    def fleet_runners(self) -> tuple[ObservedRunner, ...]:
        self.request_count += 1
        return self.runners


UP = "installed=1\nversion=17.5.0\nactive=active\nsystem_id=s_1\n"


def _app(
    runners: tuple[ObservedRunner, ...], configs: dict[int, str | None]
) -> tuple[AppContext, list[Any]]:
    made: list[Any] = []

    def gitlab(settings: ConnectionSettings) -> Any:
        made.append(FakeGitLab(settings, runners))
        return made[-1]

    def ssh(target: SSHTarget, options: SSHOptions) -> Any:
        text = configs[target.port]
        if text == "down":
            raise SSHError(f"{target}: connection refused", kind=SSHFailure.UNREACHABLE)
        made.append(target)
        files = {} if text is None else {"/etc/gitlab-runner/config.toml": text}
        return FakeHost(UP, files)

    return AppContext(factories=Factories(gitlab=gitlab, ssh=ssh)), made


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "FLEET.toml"
    path.write_text(FLEET_TOML)
    return path


ENV = {"GITLAB_TOKEN": TOKEN, "GITLAB_URL": None, "CI_SERVER_URL": None}


def test_plan_converged_fleet(cli: Cli, fleet_file: Path) -> None:
    app, made = _app((_build_runner(),), {2201: CONFIG, 2202: CONFIG})
    code, out, err = cli("fleet", "plan", str(fleet_file), "--detailed-exitcode", app=app, env=ENV)
    assert (code, err) == (0, "")
    assert out == (
        "Fleet prod: read GitLab in 1 API request and 2 hosts over SSH.\n"
        "\n"
        "No changes. The fleet matches FLEET.toml.\n"
    )
    assert made[0].settings.url == "https://gitlab.example.com"  # from FLEET.toml
    assert [t.user for t in made[1:]] == ["ops", "ops"]


def test_plan_with_changes_text(cli: Cli, fleet_file: Path) -> None:
    foreign = _build_runner(id=3, maintenance_note=None)
    app, _ = _app((_build_runner(paused=True), foreign), {2201: CONFIG, 2202: None})
    code, out, _ = cli("fleet", "plan", str(fleet_file), app=app, env=ENV)
    assert code == 0
    assert out == (
        "Fleet prod: read GitLab in 1 API request and 2 hosts over SSH.\n"
        "\n"
        "host vm-b\n"
        "  + write entry runner build: entry missing (the token is copied from a sibling host)\n"
        "\n"
        "runner build\n"
        "  ~ update #10: settings differ in GitLab\n"
        "      paused: true -> false\n"
        "\n"
        "Left alone (not owned by this fleet):\n"
        "  #3 'build': same description as fleet runner 'build'\n"
        "\n"
        "Plan: 1 to add, 1 to change, 0 to destroy.\n"
    )
    code, _, _ = cli("fleet", "plan", str(fleet_file), "--detailed-exitcode", app=app, env=ENV)
    assert code == 2


def test_plan_json_and_plan_file(cli: Cli, fleet_file: Path, tmp_path: Path) -> None:
    app, _ = _app((), {2201: None, 2202: None})
    saved = tmp_path / "plan.json"
    code, out, _ = cli(
        "fleet", "plan", str(fleet_file), "--out", str(saved), "-o", "json", app=app, env=ENV
    )
    assert code == 0
    document = json.loads(out)
    assert [a["id"] for a in document["actions"]] == ["create-runner:build"]
    assert document["summary"]["create-runner"] == 1
    assert json.loads(saved.read_text()) == document
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert FleetPlan.from_json(document).actions[0].hosts == ("vm-a", "vm-b")


def test_unreachable_host_exits_5_or_1(cli: Cli, fleet_file: Path) -> None:
    app, _ = _app((_build_runner(),), {2201: CONFIG, 2202: "down"})
    code, out, _ = cli("fleet", "plan", str(fleet_file), app=app, env=ENV)
    assert code == 5
    assert "Unreachable (not planned):\n  vm-b: ops@127.0.0.1:2202: connection refused\n" in out
    code, _, _ = cli("fleet", "plan", str(fleet_file), "--detailed-exitcode", app=app, env=ENV)
    assert code == 1


def test_bad_file_is_2_or_1_with_detailed_exitcode(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "FLEET.toml"
    path.write_text(FLEET_TOML.replace('hosts = ["vm-a", "vm-b"]', 'hosts = ["vm-z"]'))
    app, made = _app((), {})
    code, _, err = cli("fleet", "plan", str(path), app=app, env=ENV)
    assert code == 2
    assert f"{path}:16:1: runner 'build': unknown host 'vm-z'" in err
    code, _, _ = cli("fleet", "plan", str(path), "--detailed-exitcode", app=app, env=ENV)
    assert code == 1
    assert made == []  # nothing contacted


def test_no_token_in_any_output(cli: Cli, fleet_file: Path) -> None:
    drifted = CONFIG.replace("glrt-SECRET1", "glrt-OTHER2")
    app, _ = _app((_build_runner(),), {2201: CONFIG, 2202: drifted})
    for args in ((), ("-o", "json")):
        code, out, err = cli("fleet", "plan", str(fleet_file), *args, app=app, env=ENV)
        assert code == 0
        assert "rotate" in out
        assert "glrt-" not in out + err
        assert TOKEN not in out + err


def test_view_groups_hosts_and_runners_with_symbols() -> None:
    build = rdef("build", "vm-a", "vm-b")
    gone = rdef("gone", "vm-c")
    state = observed(
        (owned(build, 10, paused=True), owned(gone, 11)),
        host("vm-a", runner_installed=False),
        host("vm-b", entry(build, 10, token="glrt-X"), entry(gone, 11)),
        host("vm-c", entry(gone, 11)),
    )
    text = render_plan(plan(fleet(build), state, now=NOW))
    assert text.splitlines()[1:] == [
        "",
        "host vm-a",
        "  ~ provision: gitlab-runner is not installed",
        "  + write entry runner build: entry missing (the token is copied from a sibling host)",
        "",
        "host vm-b",
        "  - remove entry runner gone: runner #11 is deleted",
        "",
        "host vm-c",
        "  - remove entry runner gone: runner #11 is deleted",
        "",
        "runner build",
        "  ~ update #10: settings differ in GitLab",
        "      paused: true -> false",
        "",
        "runner gone",
        "  - delete #11: not in FLEET.toml",
        "",
        "Plan: 1 to add, 2 to change, 3 to destroy.",
    ]
