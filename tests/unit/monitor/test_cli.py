"""``runnerctl pipelines`` through the CLI with a fake GitLab: output shapes, exit codes, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from provisioner.gitlab.models import ConnectionSettings
from tests.conftest import Cli
from tests.unit.monitor.fakes import FakeMonitorAPI, summary

ENV = {"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": "Qq1plainAccessToken2468"}


def _app(pipelines: dict[str, Any]) -> tuple[AppContext, list[FakeMonitorAPI]]:
    made: list[FakeMonitorAPI] = []

    def build(settings: ConnectionSettings) -> Any:
        made.append(FakeMonitorAPI(dict(pipelines)))
        return made[-1]

    return AppContext(factories=Factories(gitlab=build)), made


GREEN = {"g/a": summary(1, "success"), "g/b": summary(2, "running"), "g/none": None}
RED = {**GREEN, "g/c": summary(3, "failed")}


def test_once_exits_0_when_nothing_failed_and_11_when_something_did(cli: Cli) -> None:
    app, made = _app(GREEN)
    code, out, err = cli("pipelines", "-g", "g", "--once", "--tz", "UTC", env=ENV, app=app)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "PROJECT",
        "REF",
        "STATUS",
        "PIPELINE",
        "BY",
        "STARTED",
        "DURATION",
        "AGE",
    ]
    assert lines[1].split()[:5] == ["g/b", "main", "Running", "#2", "alice"]
    assert "2026-12-03 09:00:00 UTC" in lines[1]
    assert "1m 05s" in lines[1]
    assert lines[3].split()[:4] == ["g/none", "main", "no", "pipeline"]
    assert lines[-1].startswith("3 projects: 1 running, 1 success, 1 no pipeline · refreshed ")
    assert lines[-1].endswith("(graphql, 1 request)")
    assert ("limit", 1) in made[0].calls  # the default budget: one request a second
    app, _ = _app(RED)
    code, out, _ = cli("pipelines", "-g", "g", "--once", env=ENV, app=app)
    assert code == 11
    assert out.splitlines()[1].split()[:3] == ["g/c", "main", "Failed"]


def test_json_document_shape_in_the_asked_zone(cli: Cli) -> None:
    app, _ = _app(RED)
    code, out, _ = cli(
        "pipelines",
        "-g",
        "g",
        "-o",
        "json",
        "--tz",
        "Europe/Paris",
        "--max-rps",
        "0",
        env=ENV,
        app=app,
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["group"] == "g"
    assert doc["refreshed_at"].endswith("+01:00")
    first = doc["projects"][0]
    assert first == {
        "project": "g/c",
        "ref": "main",
        "pipeline": {
            "id": 3,
            "iid": 3,
            "status": "failed",
            "detailed_status": "Failed",
            "ref": "main",
            "web_url": "https://gl.example/p/-/pipelines/3",
            "created_at": "2026-12-03T10:00:00+01:00",
            "started_at": "2026-12-03T10:00:00+01:00",
            "duration": 65.0,
            "user": "alice",
        },
    }
    assert doc["projects"][-1] == {"project": "g/none", "ref": "main", "pipeline": None}


def test_ndjson_prints_one_line_per_project(cli: Cli) -> None:
    app, _ = _app(GREEN)
    code, out, _ = cli("pipelines", "-g", "g", "-o", "ndjson", env=ENV, app=app)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(d["event"], d["project"]) for d in lines] == [
        ("row", "g/b"),
        ("row", "g/a"),
        ("row", "g/none"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tz", "Mars/Olympus"], "Error: --tz 'Mars/Olympus' is not a time zone."),
        (["--status", "failed,greenish"], "Error: --status 'greenish' is not a pipeline status."),
        (["--interval", "1s", "--watch"], "Error: --interval 1s is shorter than 5s."),
        (["--interval", "soon"], "Error: --interval 'soon' is not a duration."),
        (["--watch", "--once"], "Error: --watch and --once exclude each other."),
        (["--watch", "-o", "json"], "Error: --output json prints one document; a watch prints"),
        (["--on-change", "  "], "Error: --on-change is empty."),
    ],
)
def test_bad_options_exit_2_with_a_hint_and_no_request(
    cli: Cli, args: list[str], message: str
) -> None:
    app, made = _app(GREEN)
    code, _, err = cli("pipelines", "-g", "g", *args, env=ENV, app=app)
    assert code == 2
    assert err.startswith(message)
    assert "\nHint: " in err
    assert not made  # no client built, nothing sent


def test_the_summary_counts_one_project_in_the_singular(cli: Cli) -> None:
    app, _ = _app({"g/a": summary(1, "success")})
    code, out, _ = cli("pipelines", "-g", "g", "--tz", "UTC", env=ENV, app=app)
    assert code == 0
    assert out.splitlines()[-1].startswith("1 project: 1 success · refreshed 2026-")
