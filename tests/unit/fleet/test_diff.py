"""diff.plan: every rule of the fleet design, ownership, and "a second plan is empty"."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from provisioner.errors import UsageError
from provisioner.fleet.diff import plan
from provisioner.fleet.model import ActionKind, FleetPlan, Observed
from tests.unit.fleet.factories import (
    NOW,
    URL,
    FakeApply,
    entry,
    fleet,
    host,
    observed,
    owned,
    rdef,
    rotation,
)

BUILD = rdef("build", "vm-a", "vm-b", tags=("linux", "docker"))
DEPLOY = rdef("deploy", "vm-c", executor="shell", entry={}, scope="group:ops/ci", paused=True)
FLEET = fleet(BUILD, DEPLOY)


def converged() -> Observed:
    """The state a successful apply of FLEET leaves."""
    return observed(
        (owned(BUILD, 10), owned(DEPLOY, 11, scope_paths=("ops/ci",))),
        host("vm-a", entry(BUILD, 10)),
        host("vm-b", entry(BUILD, 10)),
        host("vm-c", entry(DEPLOY, 11, token="glrt-CCC")),
    )


def keys(p: FleetPlan) -> list[str]:
    return [a.key for a in p.actions]


def test_converged_state_plans_nothing() -> None:
    p = plan(FLEET, converged(), now=NOW)
    assert p.actions == ()
    assert not p.changes
    assert p.unmanaged == ()
    assert p.state_digest == converged().digest()


def test_empty_gitlab_and_bare_hosts_plan_everything_in_order() -> None:
    state = observed(
        (), host("vm-a", runner_installed=False), host("vm-b"), host("vm-c", service_active=False)
    )
    p = plan(FLEET, state, now=NOW)
    assert keys(p) == [
        "provision-host:@vm-a",
        "provision-host:@vm-c",
        "create-runner:build",
        "create-runner:deploy",
    ]
    assert p.actions[0].reason == "gitlab-runner is not installed"
    assert p.actions[1].reason == "the gitlab-runner service is not active"
    assert p.actions[2].hosts == ("vm-a", "vm-b")
    assert p.actions[3].changes == {"scope": "group:ops/ci", "executor": "shell", "tags": ["linux"]}


def test_unreachable_host_gets_no_action_and_no_rotation() -> None:
    state = converged()
    hosts = (host("vm-a", error="boom", reachable=False, entries=()), *state.hosts[1:])
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert p.actions == ()
    assert p.unreachable == {"vm-a": "boom"}


def test_unreachable_host_does_not_stop_the_others() -> None:
    state = converged()
    hosts = (host("vm-a", reachable=False, error="timeout"), host("vm-b"), state.hosts[2])
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["write-entry:build@vm-b"]  # vm-a may hold the token: no rotation
    assert p.unreachable == {"vm-a": "timeout"}


def test_settings_drift_is_one_update_with_changes() -> None:
    state = converged()
    runners = (
        replace(state.runners[0], paused=True, tags=("linux", "arm"), maximum_timeout=99),
        state.runners[1],
    )
    p = plan(FLEET, replace(state, runners=runners), now=NOW)
    assert keys(p) == ["update-runner:build"]
    assert p.actions[0].runner_id == 10
    assert p.actions[0].changes == {
        "tags": {"from": ["arm", "linux"], "to": ["docker", "linux"]},
        "paused": {"from": True, "to": False},
    }  # maximum_timeout is not set in FLEET.toml: not compared


def test_description_locked_run_untagged_access_level_timeout_compared() -> None:
    rd = replace(BUILD, maximum_timeout=3600)
    fl = fleet(rd, DEPLOY)
    state = converged()
    r = replace(
        state.runners[0],
        description="old",
        locked=False,
        run_untagged=True,
        access_level="ref_protected",
        maximum_timeout=600,
    )
    p = plan(fl, replace(state, runners=(r, state.runners[1])), now=NOW)
    assert set(p.actions[0].changes) == {
        "description",
        "locked",
        "run_untagged",
        "access_level",
        "maximum_timeout",
    }


def test_duplicates_keep_the_newest_and_delete_the_others() -> None:
    state = converged()
    old = owned(BUILD, 5)
    p = plan(FLEET, replace(state, runners=(old, *state.runners)), now=NOW)
    assert keys(p) == ["delete-runner:build"]
    assert p.actions[0].runner_id == 5
    assert p.actions[0].reason == "a newer runner #10 has the same name"


def test_owned_runner_not_in_file_is_deleted_with_its_entries() -> None:
    gone = rdef("gone", "vm-a")
    state = converged()
    hosts = (host("vm-a", entry(BUILD, 10), entry(gone, 7)), *state.hosts[1:])
    p = plan(FLEET, replace(state, runners=(*state.runners, owned(gone, 7)), hosts=hosts), now=NOW)
    assert keys(p) == ["remove-entry:gone@vm-a", "delete-runner:gone"]
    assert {a.runner_id for a in p.actions} == {7}


def test_unmarked_runners_never_get_an_action() -> None:
    state = converged()
    foreign = (
        owned(BUILD, 20, maintenance_note=None),  # same description
        owned(rdef("x", tags=("docker",)), 21, maintenance_note="hand-made"),  # shared tag
        owned(rdef("other", tags=("gpu",)), 22, maintenance_note=None),  # unrelated
        owned(BUILD, 23, maintenance_note="managed-by: runnerctl fleet=staging runner=build"),
    )
    p = plan(FLEET, replace(state, runners=(*state.runners, *foreign)), now=NOW)
    assert p.actions == ()
    assert [(u.runner_id, u.reason) for u in p.unmanaged] == [
        (20, "same description as fleet runner 'build'"),
        (21, "shares tag(s) docker with fleet runner 'build'"),
        (23, "same description as fleet runner 'build' (owned by fleet 'staging')"),
    ]


def test_adopt_marks_an_unmarked_runner_and_treats_it_as_owned() -> None:
    state = converged()
    hand_made = owned(
        DEPLOY, 30, maintenance_note="made by hand", paused=False, scope_paths=("ops/ci",)
    )
    runners = (state.runners[0], hand_made)
    hosts = (*state.hosts[:2], host("vm-c", entry(DEPLOY, 30)))
    p = plan(FLEET, replace(state, runners=runners, hosts=hosts), adopt=["deploy"], now=NOW)
    assert keys(p) == ["adopt-runner:deploy", "update-runner:deploy"]
    assert (
        p.actions[0].changes["maintenance_note"]["to"]
        == "managed-by: runnerctl fleet=prod runner=deploy"
    )
    # without --adopt: a create, and the hand-made runner is left alone
    p = plan(FLEET, replace(state, runners=runners, hosts=hosts), now=NOW)
    assert keys(p) == ["create-runner:deploy"]
    assert [u.runner_id for u in p.unmanaged if u.host is None] == [30]


def test_adopt_of_an_unknown_runner_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--adopt nope"):
        plan(FLEET, converged(), adopt=["nope"], now=NOW)


def test_no_host_holds_the_token_rotates_to_every_host() -> None:
    state = converged()
    hosts = (host("vm-a"), host("vm-b"), state.hosts[2])
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["rotate-token:build"]
    assert p.actions[0].reason == "no host holds its token"
    assert p.actions[0].hosts == ("vm-a", "vm-b")


def test_hosts_disagreeing_on_the_token_rotate() -> None:
    state = converged()
    hosts = (
        host("vm-a", entry(BUILD, 10, token="glrt-X")),
        host(
            "vm-b",
            entry(
                BUILD, 10, token="glrt-Y", settings={"docker": {"image": "python:3.12"}, "limit": 9}
            ),
        ),
        state.hosts[2],
    )
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["rotate-token:build"]  # replaces the write-entry of the drifted host
    assert p.actions[0].reason == "hosts disagree on its token"
    assert "glrt-" not in str(p.to_json())


@pytest.mark.parametrize(("days_left", "due"), [(6, True), (8, False)])
def test_rotation_before_expiry(days_left: int, due: bool) -> None:
    rd = replace(BUILD, token_rotation=rotation(before=7))
    state = converged()
    r = replace(state.runners[0], token_expires_at=NOW + timedelta(days=days_left))
    p = plan(fleet(rd, DEPLOY), replace(state, runners=(r, state.runners[1])), now=NOW)
    assert keys(p) == (["rotate-token:build"] if due else [])


@pytest.mark.parametrize(("age", "due"), [(31, True), (29, False)])
def test_rotation_every(age: int, due: bool) -> None:
    rd = replace(BUILD, token_rotation=rotation(every=30))
    state = converged()
    e = entry(BUILD, 10, token_obtained_at=NOW - timedelta(days=age))
    hosts = (host("vm-a", e), state.hosts[1], state.hosts[2])
    p = plan(fleet(rd, DEPLOY), replace(state, hosts=hosts), now=NOW)
    assert keys(p) == (["rotate-token:build"] if due else [])
    if due:
        assert p.actions[0].reason.startswith("the token was obtained at 2026-11-02")


def test_missing_entry_on_one_host_is_written_from_the_sibling() -> None:
    state = converged()
    hosts = (state.hosts[0], host("vm-b"), state.hosts[2])
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["write-entry:build@vm-b"]
    assert p.actions[0].changes == {}


def test_drifted_entry_lists_the_drifted_keys_never_the_token() -> None:
    state = converged()
    drifted = entry(
        BUILD,
        10,
        executor="shell",
        url="https://old.example.com",
        settings={"docker": {"image": "python:3.9", "pull_policy": ["always"]}, "limit": 2},
    )
    hosts = (state.hosts[0], host("vm-b", drifted), state.hosts[2])
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["write-entry:build@vm-b"]
    assert p.actions[0].changes == {
        "executor": {"from": "shell", "to": "docker"},
        "url": {"from": "https://old.example.com", "to": URL},
        "docker.image": {"from": "python:3.9", "to": "python:3.12"},
    }


def test_entry_on_a_host_not_listed_is_removed() -> None:
    state = converged()
    hosts = (*state.hosts[:2], host("vm-c", entry(DEPLOY, 11, token="glrt-CCC"), entry(BUILD, 10)))
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert keys(p) == ["remove-entry:build@vm-c"]


def test_scope_change_recreates_the_runner() -> None:
    state = converged()
    r = replace(state.runners[1], scope_paths=("ops/other",))
    p = plan(FLEET, replace(state, runners=(state.runners[0], r)), now=NOW)
    assert keys(p) == ["create-runner:deploy", "remove-entry:deploy@vm-c", "delete-runner:deploy"]


def test_foreign_entry_named_like_a_fleet_runner_is_listed_not_touched() -> None:
    state = converged()
    hosts = (
        *state.hosts[:2],
        host("vm-c", entry(DEPLOY, 11, token="glrt-CCC"), entry(BUILD, 99, name="build")),
    )
    p = plan(FLEET, replace(state, hosts=hosts), now=NOW)
    assert p.actions == ()
    assert [(u.host, u.runner_id) for u in p.unmanaged] == [("vm-c", 99)]


def test_plan_json_round_trips() -> None:
    p = plan(FLEET, observed((), host("vm-a"), host("vm-b"), host("vm-c")), now=NOW)
    assert FleetPlan.from_json(p.to_json()) == p


# ---- the property: what apply does, the next plan reads back as converged


def _drifted_states() -> list[tuple[str, Observed]]:
    base = converged()
    r0, r1 = base.runners
    a, b, c = base.hosts
    return [
        ("empty", observed((), host("vm-a", runner_installed=False), host("vm-b"), host("vm-c"))),
        (
            "paused+tag+entry",
            replace(
                base,
                runners=(replace(r0, paused=True, tags=("x",)), r1),
                hosts=(a, host("vm-b"), c),
            ),
        ),
        ("no tokens", replace(base, hosts=(host("vm-a"), host("vm-b"), host("vm-c")))),
        (
            "stray+dup",
            replace(
                base,
                runners=(owned(BUILD, 3), owned(rdef("gone"), 4), r0, r1),
                hosts=(a, b, replace(c, entries=(*c.entries, entry(BUILD, 10)))),
            ),
        ),
        ("disagree", replace(base, hosts=(a, host("vm-b", entry(BUILD, 10, token="glrt-Z")), c))),
        (
            "drifted entries",
            replace(
                base, hosts=(host("vm-a", entry(BUILD, 10, executor="shell", settings={})), b, c)
            ),
        ),
        ("scope", replace(base, runners=(r0, replace(r1, runner_type="instance_type")))),
    ]


@pytest.mark.parametrize(
    ("label", "state"), _drifted_states(), ids=[s[0] for s in _drifted_states()]
)
def test_second_plan_after_apply_is_empty(label: str, state: Observed) -> None:
    first = plan(FLEET, state, now=NOW)
    assert first.changes, label
    after = FakeApply(FLEET, state).run(first.actions)
    second = plan(FLEET, after, now=NOW)
    assert second.actions == (), (label, [a.key for a in second.actions])


def test_actions_are_ordered_by_kind_then_runner_then_host() -> None:
    state = _drifted_states()[3][1]
    p = plan(FLEET, state, now=NOW)
    order = list(ActionKind)
    ranks = [(order.index(a.kind), a.runner or "", a.host or "") for a in p.actions]
    assert ranks == sorted(ranks)
