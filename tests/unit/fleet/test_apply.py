"""fleet apply's executor: order, per-host isolation, rotation, conditional deletes, recap."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from provisioner.fleet.apply import ActionStatus, ApplyResult, ApplySettings, apply
from provisioner.fleet.junit import junit_xml, write_junit
from provisioner.fleet.model import Action, ActionKind, Fleet, FleetPlan, marker
from provisioner.gitlab.models import RunnerType
from provisioner.registration.scope import Scope
from tests.unit.fleet.apply_fakes import URL, Clock, FakeGitLab, FakeHosts, fleet_of, runner_def

TOKEN_RE = re.compile(r"glrt-[0-9a-f]+")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gitlab(clock: Clock) -> FakeGitLab:
    return FakeGitLab(clock)


@pytest.fixture
def hosts(tmp_path: Path, gitlab: FakeGitLab) -> FakeHosts:
    return FakeHosts(tmp_path, gitlab)


def plan_of(*actions: Action, unreachable: dict[str, str] | None = None) -> FleetPlan:
    return FleetPlan("prod", Clock().now(), "digest", actions, unreachable=unreachable or {})


def run(
    fleet: Fleet,
    plan: FleetPlan,
    gitlab: FakeGitLab,
    hosts: FakeHosts,
    clock: Clock,
    *,
    now: Callable[[], datetime] | None = None,
) -> ApplyResult:
    return apply(
        fleet,
        plan,
        hosts.observe(fleet, clock),
        gitlab=gitlab,
        hosts=hosts,
        settings=ApplySettings(parallel=2, reconnect_timeout=30, poll_interval=5),
        now=now or clock.now,
        clock=clock.monotonic,
        sleep=clock.sleep,
    )


def statuses(result: ApplyResult) -> dict[str, tuple[str, str]]:
    return {r.action.key: (r.status.value, r.detail) for r in result.results}


def seed_entry(hosts: FakeHosts, host: str, text: str) -> None:
    hosts.path(host).parent.mkdir(parents=True, exist_ok=True)
    hosts.path(host).write_text(text)


def shared_rotation(gitlab: FakeGitLab, hosts: FakeHosts) -> tuple[str, Fleet, Action]:
    """Runner 9, ``shared`` on vm-a and vm-b with one token, and the action rotating it."""
    old = gitlab.add(9, note=marker("prod", "shared"))
    for host in ("vm-a", "vm-b"):
        seed_entry(
            hosts,
            host,
            f'[[runners]]\nname = "shared"\nurl = "{URL}"\nid = 9\ntoken = "{old}"\n'
            'token_obtained_at = 2026-01-01T00:00:00Z\nexecutor = "shell"\n',
        )
    fleet = fleet_of(runner_def("shared", "vm-a", "vm-b"))
    action = Action(
        ActionKind.ROTATE_TOKEN, "due", runner="shared", runner_id=9, hosts=("vm-a", "vm-b")
    )
    return old, fleet, action


def test_create_writes_one_entry_per_host_with_the_marker_and_settings(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    build = runner_def(
        "build",
        "vm-a",
        "vm-b",
        executor="docker",
        tags=("linux", "docker"),
        scope=Scope(RunnerType.GROUP, "platform/ci"),
        entry={"docker": {"image": "python:3.12"}, "environment": ["A=1"]},
    )
    fleet = fleet_of(build)
    action = Action(
        ActionKind.CREATE_RUNNER, "not in GitLab", runner="build", hosts=("vm-a", "vm-b")
    )

    result = run(fleet, plan_of(action), gitlab, hosts, clock)

    assert result.converged
    assert statuses(result) == {"create-runner:build": ("ok", "")}
    (created,) = gitlab.runners.values()
    assert created.note == marker("prod", "build")
    assert created.spec is not None
    assert created.spec.group_id == 7
    assert created.spec.tag_list == ("docker", "linux")
    for host in ("vm-a", "vm-b"):
        (entry,) = hosts.entries(host)
        assert entry["id"] == created.id
        assert entry["token"] == created.token
        assert entry["url"] == URL
        assert entry["name"] == "build"
        assert entry["executor"] == "docker"
        assert entry["docker"] == {"image": "python:3.12"}
        assert entry["environment"] == ["A=1"]
    assert hosts.entries("vm-c") == []


def test_order_follows_the_action_kinds_and_each_host_gets_one_transaction(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    old_token = gitlab.add(7)
    seed_entry(
        hosts,
        "vm-a",
        f'[[runners]]\nname = "old"\nurl = "{URL}"\nid = 7\ntoken = "{old_token}"\n'
        'executor = "shell"\n',
    )
    fleet = fleet_of(runner_def("build", "vm-a", "vm-b"))
    plan = plan_of(
        Action(ActionKind.PROVISION_HOST, "service inactive", host="vm-b"),
        Action(ActionKind.CREATE_RUNNER, "missing", runner="build", hosts=("vm-a", "vm-b")),
        Action(ActionKind.REMOVE_ENTRY, "not in the file", runner="old", runner_id=7, host="vm-a"),
        Action(ActionKind.DELETE_RUNNER, "not in the file", runner="old", runner_id=7),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert result.converged, statuses(result)
    kinds = [c[0] for c in gitlab.calls]
    assert kinds == ["create", "delete"]
    assert hosts.provisioned == [["vm-b"]]
    assert hosts.transactions == {"vm-a": 1, "vm-b": 1}
    assert [e["name"] for e in hosts.entries("vm-a")] == ["build"]
    assert 7 not in gitlab.runners
    # The delete is conditional on the state the plan was made from.
    assert gitlab.calls[-1] == ("delete", 7, plan.created_at)


def test_rotation_writes_every_host_and_waits_for_each_manager(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    old, fleet, action = shared_rotation(gitlab, hosts)

    result = run(fleet, plan_of(action), gitlab, hosts, clock)

    assert statuses(result) == {"rotate-token:shared": ("ok", "every manager reconnected")}
    new = gitlab.runners[9].token
    assert new != old
    for host in ("vm-a", "vm-b"):
        (entry,) = hosts.entries(host)
        assert entry["token"] == new
        assert entry["token_obtained_at"] >= clock.wall - timedelta(seconds=5)
    assert set(gitlab.managers_seen[9]) == {"s_vm-a", "s_vm-b"}


def test_reconnect_is_judged_in_gitlabs_clock_whatever_ours_says(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    old, fleet, action = shared_rotation(gitlab, hosts)
    for host in ("vm-a", "vm-b"):
        gitlab.contact(f"s_{host}", old)  # both managers ran before the reset
    skewed = Clock()
    skewed.wall = clock.wall + timedelta(hours=1)  # this machine's clock runs an hour ahead

    result = run(fleet, plan_of(action), gitlab, hosts, clock, now=skewed.now)

    assert statuses(result) == {"rotate-token:shared": ("ok", "every manager reconnected")}
    new = gitlab.runners[9].token
    assert all(entry["token"] == new for h in ("vm-a", "vm-b") for entry in hosts.entries(h))


def test_rotation_fails_when_a_manager_never_reconnects(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    _old, fleet, action = shared_rotation(gitlab, hosts)
    hosts.silent.add("vm-b")

    result = run(fleet, plan_of(action), gitlab, hosts, clock)

    assert not result.converged
    assert statuses(result) == {
        "rotate-token:shared": ("failed", "no contact from vm-b within 30 s of the token reset")
    }
    # Both hosts still hold the new token: a re-run only has to wait again.
    assert {hosts.entries(h)[0]["token"] for h in ("vm-a", "vm-b")} == {gitlab.runners[9].token}
    # vm-a's reload took 1 s; then a poll every 5 s until the 30 s deadline.
    assert clock.sleeps == [1, 5, 5, 5, 5, 5, 5]


def test_no_reset_when_a_host_of_the_runner_failed_to_provision(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    old = gitlab.add(9)
    hosts.provision_errors["vm-b"] = "apt failed"
    fleet = fleet_of(runner_def("shared", "vm-a", "vm-b"), runner_def("solo", "vm-c"))
    plan = plan_of(
        Action(ActionKind.PROVISION_HOST, "not installed", host="vm-b"),
        Action(ActionKind.CREATE_RUNNER, "missing", runner="solo", hosts=("vm-c",)),
        Action(
            ActionKind.ROTATE_TOKEN, "due", runner="shared", runner_id=9, hosts=("vm-a", "vm-b")
        ),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result) == {
        "provision-host:@vm-b": ("failed", "apt failed"),
        "create-runner:solo": ("ok", ""),
        "rotate-token:shared": ("skipped", "host vm-b failed: apt failed"),
    }
    assert gitlab.runners[9].token == old
    assert ("reset", 9) not in gitlab.calls
    assert [e["name"] for e in hosts.entries("vm-c")] == ["solo"]
    assert not result.converged


def test_a_host_that_cannot_be_reached_fails_only_its_own_actions(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    hosts.broken["vm-b"] = "timed out"
    fleet = fleet_of(runner_def("shared", "vm-a", "vm-b"), runner_def("solo", "vm-c"))
    plan = plan_of(
        Action(ActionKind.CREATE_RUNNER, "missing", runner="shared", hosts=("vm-a", "vm-b")),
        Action(ActionKind.CREATE_RUNNER, "missing", runner="solo", hosts=("vm-c",)),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result) == {
        "create-runner:shared": ("failed", "vm-b: cannot connect to 10.0.0.2: timed out"),
        "create-runner:solo": ("ok", ""),
    }
    assert [e["name"] for e in hosts.entries("vm-a")] == ["shared"]
    assert [e["name"] for e in hosts.entries("vm-c")] == ["solo"]
    assert not result.converged
    assert result.count(ActionStatus.FAILED) == 1


def test_missing_entry_gets_the_token_a_sibling_holds_and_drift_is_repaired(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    token = gitlab.add(9, note=marker("prod", "shared"))
    seed_entry(
        hosts,
        "vm-a",
        f'[[runners]]\nname = "shared"\nurl = "{URL}"\nid = 9\ntoken = "{token}"\n'
        'token_obtained_at = 2026-11-01T00:00:00Z\nexecutor = "docker"\nlimit = 3\n'
        '[runners.docker]\nimage = "old:1"\nprivileged = true\n',
    )
    fleet = fleet_of(
        runner_def("shared", "vm-a", "vm-b", executor="docker", entry={"docker": {"image": "py:3"}})
    )
    plan = plan_of(
        Action(ActionKind.WRITE_ENTRY, "drifted", runner="shared", runner_id=9, host="vm-a"),
        Action(ActionKind.WRITE_ENTRY, "missing", runner="shared", runner_id=9, host="vm-b"),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert result.converged, statuses(result)
    (a,) = hosts.entries("vm-a")
    (b,) = hosts.entries("vm-b")
    assert a["token"] == b["token"] == token
    assert a["docker"] == {"image": "py:3", "privileged": True}  # undeclared keys stay
    assert b["docker"] == {"image": "py:3"}
    assert a["limit"] == 3
    assert str(b["token_obtained_at"]).startswith("2026-11-01")
    assert not [c for c in gitlab.calls if c[0] in ("reset", "create")]


def test_missing_entry_without_any_sibling_token_fails_alone(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    gitlab.add(9)
    fleet = fleet_of(runner_def("shared", "vm-a", "vm-b"), runner_def("solo", "vm-b"))
    plan = plan_of(
        Action(ActionKind.CREATE_RUNNER, "missing", runner="solo", hosts=("vm-b",)),
        Action(ActionKind.WRITE_ENTRY, "missing", runner="shared", runner_id=9, host="vm-b"),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result)["write-entry:shared@vm-b"][0] == "failed"
    assert "no host holds the token of runner 9" in statuses(result)["write-entry:shared@vm-b"][1]
    assert statuses(result)["create-runner:solo"] == ("ok", "")
    assert [e["name"] for e in hosts.entries("vm-b")] == ["solo"]


def test_update_adopt_and_conditional_delete(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    gitlab.add(3, note="hand-made")
    gitlab.add(4, note=marker("prod", "build"))
    gitlab.add(5, note=marker("prod", "gone"))
    gitlab.runners[5].changed_since_plan = True
    fleet = fleet_of(runner_def("build", "vm-a"), runner_def("legacy", "vm-a"))
    plan = plan_of(
        Action(ActionKind.ADOPT_RUNNER, "--adopt legacy", runner="legacy", runner_id=3),
        Action(
            ActionKind.UPDATE_RUNNER,
            "drifted",
            runner="build",
            runner_id=4,
            changes={
                "tags": {"from": ["a"], "to": ["z", "b"]},
                "paused": {"from": True, "to": False},
            },
        ),
        Action(ActionKind.DELETE_RUNNER, "not in the file", runner="gone", runner_id=5),
        Action(ActionKind.DELETE_RUNNER, "not in the file", runner="gone2", runner_id=6),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result) == {
        "adopt-runner:legacy": ("ok", "runner 3 marked"),
        "update-runner:build": ("ok", "paused, tags"),
        "delete-runner:gone": ("skipped", "changed since the plan"),
        "delete-runner:gone2": ("ok", "already deleted"),
    }
    assert gitlab.runners[3].note == marker("prod", "legacy") + "\nhand-made"
    assert ("update", 4, {"tag_list": ["b", "z"], "paused": False}) in gitlab.calls
    assert 5 in gitlab.runners
    assert not result.converged


def test_delete_waits_until_no_host_holds_the_entry(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    gitlab.add(5, note=marker("prod", "gone"))
    hosts.broken["vm-a"] = "connection refused"
    fleet = fleet_of()
    plan = plan_of(
        Action(ActionKind.REMOVE_ENTRY, "not in the file", runner="gone", runner_id=5, host="vm-a"),
        Action(ActionKind.DELETE_RUNNER, "not in the file", runner="gone", runner_id=5),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result)["delete-runner:gone"] == ("skipped", "its entry is still on vm-a")
    assert 5 in gitlab.runners


def test_recap_and_junit_hold_no_token(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock, tmp_path: Path
) -> None:
    fleet = fleet_of(runner_def("build", "vm-a"))
    plan = plan_of(
        Action(ActionKind.CREATE_RUNNER, "missing", runner="build", hosts=("vm-a",)),
        unreachable={"vm-c": "No route to host"},
    )

    result = run(fleet, plan, gitlab, hosts, clock)
    write_junit(result, tmp_path / "out" / "junit.xml")

    text = (tmp_path / "out" / "junit.xml").read_text()
    assert text == junit_xml(result)
    assert '<testcase classname="fleet.create-runner" name="create-runner:build">' in text
    assert 'name="reach:vm-c"' in text
    assert 'tests="2" failures="1"' in text
    assert not TOKEN_RE.search(text)
    assert not TOKEN_RE.search(repr(result.to_json()) + repr(result))
    assert TOKEN_RE.search(hosts.path("vm-a").read_text())
    assert not result.converged  # vm-c was never reached


def test_duplicates_of_one_runner_are_each_deleted(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    gitlab.add(5, note=marker("prod", "build"))
    gitlab.add(6, note=marker("prod", "build"))
    fleet = fleet_of(runner_def("build", "vm-a"))
    plan = plan_of(
        Action(ActionKind.DELETE_RUNNER, "a newer runner", runner="build", runner_id=5),
        Action(ActionKind.DELETE_RUNNER, "a newer runner", runner="build", runner_id=6),
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert [(r.action.runner_id, r.status.value) for r in result.results] == [(5, "ok"), (6, "ok")]
    assert gitlab.runners == {}


def test_no_reset_while_a_host_of_the_runner_is_unreachable(
    gitlab: FakeGitLab, hosts: FakeHosts, clock: Clock
) -> None:
    gitlab.add(9)
    fleet = fleet_of(runner_def("shared", "vm-a", "vm-b"))
    plan = plan_of(
        Action(
            ActionKind.ROTATE_TOKEN, "due", runner="shared", runner_id=9, hosts=("vm-a", "vm-b")
        ),
        unreachable={"vm-b": "timed out"},
    )

    result = run(fleet, plan, gitlab, hosts, clock)

    assert statuses(result) == {"rotate-token:shared": ("skipped", "host vm-b failed: timed out")}
    assert gitlab.calls == []
