"""fleet apply end to end with fakes: the lock, saved plans and their digest check."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import UsageError
from provisioner.fleet.converge import Converged, PlanFn, converge, read_plan
from provisioner.fleet.lock import FleetRefusedError, fleet_lock
from provisioner.fleet.model import Action, ActionKind, Fleet, FleetPlan, Observed
from provisioner.fleet.service import save_plan as write_plan
from tests.unit.fleet.apply_fakes import Clock, FakeGitLab, FakeHosts, fleet_of, runner_def

World = tuple[Fleet, FakeGitLab, FakeHosts, Clock]


@pytest.fixture
def setup(tmp_path: Path) -> World:
    clock = Clock()
    gitlab = FakeGitLab(clock)
    return (
        fleet_of(runner_def("build", "vm-a")),
        gitlab,
        FakeHosts(tmp_path / "hosts", gitlab),
        clock,
    )


def planner(calls: list[Sequence[str]]) -> PlanFn:
    def make_plan(
        fleet: Fleet, observed: Observed, adopt: Sequence[str], now: datetime
    ) -> FleetPlan:
        calls.append(adopt)
        actions: tuple[Action, ...] = ()
        if not any(h.entries for h in observed.hosts):
            actions = (
                Action(ActionKind.CREATE_RUNNER, "missing", runner="build", hosts=("vm-a",)),
            )
        return FleetPlan(fleet.name, now, observed.digest(), actions)

    return make_plan


def go(setup: World, tmp_path: Path, **kw: Any) -> tuple[Converged, list[Sequence[str]]]:
    fleet, gitlab, hosts, clock = setup
    calls: list[Sequence[str]] = []
    done = converge(
        fleet,
        observe=lambda f: hosts.observe(f, clock),
        make_plan=planner(calls),
        gitlab=gitlab,
        hosts=hosts,
        lock_dir=tmp_path / "state",
        now=clock.now,
        **kw,
    )
    return done, calls


def test_apply_plans_then_a_second_apply_has_nothing_to_do(setup: World, tmp_path: Path) -> None:
    first, calls = go(setup, tmp_path, adopt=("x",))
    assert first.result.converged
    assert [a.key for a in first.plan.actions] == ["create-runner:build"]
    assert calls == [("x",)]
    second, _ = go(setup, tmp_path)
    assert second.plan.actions == ()
    assert second.result.converged


def test_a_saved_plan_is_applied_when_the_state_is_unchanged(setup: World, tmp_path: Path) -> None:
    fleet, _gitlab, hosts, clock = setup
    observed = hosts.observe(fleet, clock)
    plan = planner([])(fleet, observed, (), clock.now())
    write_plan(plan, tmp_path / "plan.json")
    assert (tmp_path / "plan.json").stat().st_mode & 0o777 == 0o600
    done, calls = go(setup, tmp_path, plan_file=tmp_path / "plan.json")
    assert calls == []  # no re-plan: the saved plan itself is applied
    assert done.plan == plan
    assert done.result.converged
    assert [e["name"] for e in hosts.entries("vm-a")] == ["build"]


def test_a_stale_saved_plan_is_refused_and_nothing_changes(setup: World, tmp_path: Path) -> None:
    fleet, gitlab, hosts, clock = setup
    plan = planner([])(fleet, hosts.observe(fleet, clock), (), clock.now())
    write_plan(plan, tmp_path / "plan.json")
    go(setup, tmp_path)  # someone applied meanwhile
    before = hosts.path("vm-a").read_text()
    with pytest.raises(FleetRefusedError) as caught:
        go(setup, tmp_path, plan_file=tmp_path / "plan.json")
    assert caught.value.exit_code == 13
    assert "changed since" in caught.value.message
    assert "fleet plan" in str(caught.value.hint)
    assert hosts.path("vm-a").read_text() == before
    assert len(gitlab.runners) == 1


def test_apply_is_refused_while_another_holds_the_lock(setup: World, tmp_path: Path) -> None:
    with fleet_lock("prod", tmp_path / "state"), pytest.raises(FleetRefusedError):
        go(setup, tmp_path)
    _fleet, gitlab, hosts, _clock = setup
    assert gitlab.calls == []
    assert not hosts.path("vm-a").exists()


def test_bad_plan_files_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    with pytest.raises(UsageError, match="cannot read"):
        read_plan(path)
    path.write_text("{nope")
    with pytest.raises(UsageError, match="not a fleet plan"):
        read_plan(path)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(UsageError, match="format 1"):
        read_plan(path)
    path.write_text(json.dumps({"format": 1, "fleet": "prod"}))
    with pytest.raises(UsageError, match="malformed"):
        read_plan(path)


def test_a_plan_of_another_fleet_is_refused(setup: World, tmp_path: Path) -> None:
    clock = setup[3]
    plan = FleetPlan("staging", clock.now(), "x", ())
    write_plan(plan, tmp_path / "plan.json")
    with pytest.raises(UsageError, match="plan of fleet 'staging'"):
        go(setup, tmp_path, plan_file=tmp_path / "plan.json")


def test_a_plan_that_is_not_approved_changes_nothing(setup: World, tmp_path: Path) -> None:
    asked: list[FleetPlan] = []

    def no(plan: FleetPlan) -> bool:
        asked.append(plan)
        return False

    with pytest.raises(UsageError, match="Apply cancelled"):
        go(setup, tmp_path, approve=no)
    assert [a.key for a in asked[0].actions] == ["create-runner:build"]
    assert setup[1].calls == []
    assert not setup[2].path("vm-a").exists()
