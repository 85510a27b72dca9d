"""`runnerctl fleet ci` and `fleet apply` through the CLI: output, usage errors, the recap."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from provisioner.fleet.ci import CiOptions, ci_config
from tests.conftest import Cli


def test_fleet_ci_prints_the_pipeline(cli: Cli) -> None:
    code, out, err = cli(
        "fleet", "ci", "--image", "ops/runnerctl:1", "--tag", "fleet", "--fleet-file", "f.toml"
    )
    assert (code, err) == (0, "")
    assert out == ci_config(CiOptions("f.toml", "ops/runnerctl:1", ("fleet",)))
    assert yaml.safe_load(out)["default"] == {"image": "ops/runnerctl:1", "tags": ["fleet"]}


def test_fleet_ci_refuses_a_multi_line_value(cli: Cli) -> None:
    code, out, err = cli("fleet", "ci", "--tag", "a\nb")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "Error: --tag must be one non-empty line: 'a\\nb'",
        "Hint: e.g. --image registry.example.com/ops/runnerctl:1.4 --tag fleet",
    ]


def test_fleet_apply_without_a_terminal_needs_auto_approve(cli: Cli, tmp_path: Path) -> None:
    fleet = tmp_path / "FLEET.toml"
    fleet.write_text(
        '[fleet]\nname = "prod"\ngitlab_url = "https://gitlab.example"\nssh_user = "ops"\n'
    )
    code, out, err = cli("fleet", "apply", str(fleet), env={"GITLAB_TOKEN": "glpat-" + "x" * 20})
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "Error: fleet apply needs --auto-approve when it cannot ask (stdin is not a terminal).",
        "Hint: Review `runnerctl fleet plan FLEET.toml` first, then re-run with --auto-approve "
        "(or apply a saved plan: --plan-file PLAN.json --auto-approve).",
    ]


def test_the_recap_lists_every_action_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.cli.context import AppContext
    from provisioner.cli.fleet_apply import _render
    from provisioner.fleet.apply import ActionResult, ActionStatus, ApplyResult
    from provisioner.fleet.model import Action, ActionKind

    create = Action(ActionKind.CREATE_RUNNER, "missing", runner="build", hosts=("vm-a",))
    delete = Action(ActionKind.DELETE_RUNNER, "not in the file", runner="old", runner_id=4)
    result = ApplyResult(
        "prod",
        (
            ActionResult(create, ActionStatus.OK),
            ActionResult(delete, ActionStatus.SKIPPED, "changed since the plan"),
        ),
        unreachable={"vm-c": "timed out"},
    )

    _render(AppContext(), result)

    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "STATUS   ACTION               DETAIL",
        "OK       create-runner:build  missing",
        "SKIPPED  delete-runner:old    changed since the plan",
        "unreachable  vm-c: timed out",
        "Fleet prod: 1 ok, 0 failed, 1 skipped; NOT converged: re-run to finish",
    ]
