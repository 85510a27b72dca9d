"""The registration plan: decided once from read-only calls, frozen, rendered or executed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.executors import executor_settings
from provisioner.registration.plan import RegistrationPlan, Undo, plan_registration
from provisioner.registration.service import Action, RegisterRequest, register
from provisioner.runner_config import ConfigStore
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api


def _request(**kw: Any) -> RegisterRequest:
    base: dict[str, Any] = {
        "name": "ci-1",
        "scope": Scope(parse_scope("instance").runner_type),
        "gitlab_url": BASE,
        "executor": ExecutorConfig(Executor.DOCKER),
        "tags": ("py",),
    }
    base.update(kw)
    return RegisterRequest(**base)


def _plan(store: ConfigStore, fake: FakeGitLab, request: RegisterRequest) -> RegistrationPlan:
    return plan_registration(
        request,
        store.load(),
        executor_settings(request.executor),
        gitlab=make_api(fake),
        sink=lambda _secret: None,
    )


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    return ConfigStore(tmp_path / "config.toml")


def test_a_new_runner_plans_the_create_calls_and_its_rollback(store: ConfigStore) -> None:
    store.update(lambda _doc: None, create=True)
    fake = FakeGitLab()
    plan = _plan(store, fake, _request(scope=parse_scope("project:platform/ci/app")))
    assert plan.action is Action.CREATED
    assert plan.creates
    assert plan.checked == ()
    assert [str(c) for c in plan.calls] == [
        "GET /projects/platform/ci/app  (resolve project:platform/ci/app to its id)",
        "POST /user/runners  (create the runner (project:platform/ci/app))",
        "POST /runners/verify  (check the new token)",
        "GET /runners/<new id>  (read back tags and flags)",
    ]
    assert plan.rollback == (Undo.DELETE_BY_ID,)
    assert fake.log == []  # deciding made no request


def test_the_plan_is_frozen(store: ConfigStore) -> None:
    store.update(lambda _doc: None, create=True)
    plan = _plan(store, FakeGitLab(), _request())
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.action = Action.UNCHANGED  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.settings["executor"] = "shell"  # type: ignore[index]


def test_an_existing_runner_plans_only_reads_then_the_update(store: ConfigStore) -> None:
    fake = FakeGitLab()
    first = register(_request(), gitlab=make_api(fake), store=store)
    fake.log.clear()
    plan = _plan(store, fake, _request(tags=("py", "linux"), locked=True))
    assert plan.action is Action.UPDATED
    assert not plan.creates
    assert plan.rollback == ()
    assert dict(plan.server_changes) == {"tag_list": ["linux", "py"], "locked": True}
    assert dict(plan.config_changes) == {}
    assert [(c.method, c.path, c.done) for c in plan.calls] == [
        ("POST", "/runners/verify", True),
        ("GET", f"/runners/{first.runner_id}", True),
        ("PUT", f"/runners/{first.runner_id}", False),
    ]
    # Only the read-only calls were made; nothing changed in GitLab.
    assert [m for m, _ in fake.log] == ["POST", "GET"]
    assert fake.runners[first.runner_id].locked is False  # type: ignore[index]


def test_a_refused_token_plans_a_replacement_and_the_stale_delete(store: ConfigStore) -> None:
    fake = FakeGitLab()
    first = register(_request(), gitlab=make_api(fake), store=store)
    fake.runners[first.runner_id].token = "glrt-changedbehindourback00"  # type: ignore[index]
    plan = _plan(store, fake, _request())
    assert plan.action is Action.REPLACED
    assert plan.stale_id == first.runner_id
    assert plan.calls[-1].method == "DELETE"
    assert plan.calls[-1].path == f"/runners/{first.runner_id}"
    assert "no longer accepts the token" in plan.warnings[0]


def test_dry_run_renders_the_same_plan_apply_executes(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    wanted = _request(tags=("py", "gpu"))
    dry = register(wanted, gitlab=make_api(fake), store=store, dry_run=True)
    plan = _plan(store, fake, wanted)
    assert dry.calls == plan.calls
    assert dry.server_changes == tuple(sorted(plan.server_changes))
    applied = register(wanted, gitlab=make_api(fake), store=store)
    assert applied.calls == plan.calls
    assert applied.action is dry.action is Action.UPDATED
    assert ("PUT", f"/runners/{applied.runner_id}") in fake.log


def test_without_an_access_token_rollback_uses_the_runner_token(store: ConfigStore) -> None:
    store.update(lambda _doc: None, create=True)
    fake = FakeGitLab()
    plan = plan_registration(
        _request(),
        store.load(),
        executor_settings(ExecutorConfig(Executor.DOCKER)),
        gitlab=make_api(fake, token=""),
        sink=lambda _s: None,
    )
    assert plan.rollback == (Undo.DELETE_BY_TOKEN,)
