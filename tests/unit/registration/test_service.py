"""register / unregister / rotate against the in-memory GitLab and a real ConfigStore."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ConfigError, UsageError
from provisioner.gitlab.models import AccessLevel
from provisioner.registration import (
    DockerOptions,
    Executor,
    ExecutorConfig,
    Scope,
    parse_scope,
)
from provisioner.registration.service import (
    Action,
    RegisterRequest,
    mask_tokens,
    register,
    rotate_token,
    unregister,
)
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


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    return ConfigStore(tmp_path / "config.toml")


def _entries(store: ConfigStore) -> list[dict[str, Any]]:
    return list(tomllib.loads(store.path.read_text()).get("runners", []))


def test_first_run_creates_with_three_requests_then_reruns_with_two(store: ConfigStore) -> None:
    fake = FakeGitLab()
    api = make_api(fake)
    first = register(_request(), gitlab=api, store=store)
    assert first.action is Action.CREATED
    assert first.requests == 3
    assert first.config_changed
    assert len(fake.runners) == 1
    before = store.path.read_bytes()
    second = register(_request(), gitlab=make_api(fake), store=store)
    assert second.action is Action.UNCHANGED
    assert second.requests == 2
    assert not second.config_changed
    assert store.path.read_bytes() == before
    assert len(fake.runners) == 1
    assert second.runner_id == first.runner_id


def test_group_path_costs_one_lookup(store: ConfigStore) -> None:
    fake = FakeGitLab()
    result = register(
        _request(scope=parse_scope("group:platform/ci")), gitlab=make_api(fake), store=store
    )
    assert result.requests == 4
    assert next(iter(fake.runners.values())).group_id == 7
    numeric = register(
        _request(name="ci-2", scope=parse_scope("group:7")), gitlab=make_api(fake), store=store
    )
    assert numeric.requests == 3


def test_changed_flags_update_the_server_not_the_file(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    before = store.path.read_bytes()
    result = register(
        _request(
            tags=("py", "linux"),
            locked=True,
            access_level=AccessLevel.REF_PROTECTED,
            maximum_timeout=3600,
        ),
        gitlab=make_api(fake),
        store=store,
    )
    assert result.action is Action.UPDATED
    assert result.server_changes == ("access_level", "locked", "maximum_timeout", "tag_list")
    runner = next(iter(fake.runners.values()))
    assert sorted(runner.tag_list) == ["linux", "py"]
    assert runner.access_level == "ref_protected"
    assert store.path.read_bytes() == before


def test_changed_executor_options_update_only_managed_keys(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    text = store.path.read_text().replace(
        "  [runners.docker]\n", '  # keep me\n  [runners.docker]\n    dns = ["10.0.0.1"]\n'
    )
    store.path.write_text(text)
    again = register(_request(), gitlab=make_api(fake), store=store)
    assert again.action is Action.UNCHANGED  # user keys and comments do not count as drift
    changed = register(
        _request(
            executor=ExecutorConfig(Executor.DOCKER, docker=DockerOptions(image="python:3.12"))
        ),
        gitlab=make_api(fake),
        store=store,
    )
    assert changed.action is Action.UPDATED
    assert changed.config_changes == ("docker",)
    out = store.path.read_text()
    assert "# keep me" in out
    assert 'dns = ["10.0.0.1"]' in out
    entry = _entries(store)[0]
    assert entry["docker"]["image"] == "python:3.12"
    assert entry["docker"]["pull_policy"] == ["always"]
    assert entry["docker"]["allowed_images"] == ["python:3.12"]
    assert "-  token" not in changed.diff  # the diff touches the docker section only


def test_switching_executor_drops_the_old_section(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    result = register(
        _request(executor=ExecutorConfig(Executor.SHELL)), gitlab=make_api(fake), store=store
    )
    assert result.action is Action.UPDATED
    entry = _entries(store)[0]
    assert entry["executor"] == "shell"
    assert "docker" not in entry
    assert entry["shell"] == "bash"


def test_refused_token_is_replaced_and_the_stale_runner_removed(store: ConfigStore) -> None:
    fake = FakeGitLab()
    first = register(_request(), gitlab=make_api(fake), store=store)
    fake.runners[first.runner_id].token = "glrt-changedbehindourback00"  # type: ignore[index]
    result = register(_request(), gitlab=make_api(fake), store=store)
    assert result.action is Action.REPLACED
    assert result.stale_runner_id == first.runner_id
    assert list(fake.runners) == [result.runner_id]
    entry = _entries(store)[0]
    assert entry["id"] == result.runner_id
    assert entry["token"] == fake.runners[result.runner_id].token  # type: ignore[index]


def test_config_write_failure_rolls_the_runner_back(tmp_path: Path) -> None:
    fake = FakeGitLab()

    def fail(stage: str, _temp: Path) -> None:
        if stage == "before-rename":
            raise OSError(28, "No space left on device")

    path = tmp_path / "config.toml"
    ConfigStore(path).update(lambda _doc: None, create=True)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        register(_request(), gitlab=make_api(fake), store=ConfigStore(path, hook=fail))
    assert "No space left" in info.value.message
    assert fake.runners == {}
    assert ("DELETE", "/runners/101") in fake.log
    assert path.read_bytes() == before


def test_dry_run_changes_nothing_and_shows_the_plan(store: ConfigStore) -> None:
    fake = FakeGitLab()
    result = register(
        _request(scope=parse_scope("group:platform/ci")),
        gitlab=make_api(fake),
        store=store,
        dry_run=True,
    )
    assert result.dry_run
    assert [f"{c.method} {c.path}" for c in result.calls] == [
        "GET /groups/platform/ci",
        "POST /user/runners",
        "POST /runners/verify",
        "GET /runners/<new id>",
    ]
    assert '+  name = "ci-1"' in result.diff
    assert '+  token = "[MASKED]"' in result.diff
    assert not store.path.exists()
    # Only the read-only scope check reaches GitLab.
    assert fake.log == [("GET", "/personal_access_tokens/self")]


def test_invalid_config_stops_before_any_request(store: ConfigStore) -> None:
    store.path.write_text('concurrent = "lots"\n')
    fake = FakeGitLab()
    with pytest.raises(ConfigError) as info:
        register(_request(), gitlab=make_api(fake), store=store)
    assert info.value.exit_code == 3
    assert "config validate" in (info.value.hint or "")
    assert fake.log == []


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"tags": ()}, "without tags"),
        ({"maximum_timeout": 60}, "below GitLab's minimum"),
        ({"tags": ("a,b",)}, "Invalid tag"),
        ({"name": " "}, "1 to 1024"),
        ({"limit": -1}, "--limit"),
    ],
)
def test_bad_requests_are_refused_up_front(
    store: ConfigStore, kw: dict[str, Any], needle: str
) -> None:
    fake = FakeGitLab()
    with pytest.raises(UsageError) as info:
        register(_request(**kw), gitlab=make_api(fake), store=store)
    assert needle in info.value.message
    assert fake.log == []
    assert not store.path.exists()


def test_rotation_in_the_same_second_still_wins_over_the_disk(store: ConfigStore) -> None:
    fake = FakeGitLab()
    frozen = datetime(2026, 5, 1, 12, 0, 0, 500, tzinfo=UTC)
    register(_request(), gitlab=make_api(fake), store=store, now=lambda: frozen)
    old = _entries(store)[0]
    result = rotate_token("ci-1", gitlab=make_api(fake), store=store, now=lambda: frozen)
    new = _entries(store)[0]
    assert new["token"] != old["token"]
    assert new["token"] == fake.runners[old["id"]].token
    assert new["token_obtained_at"] > old["token_obtained_at"]
    assert result.new_token_verified
    assert result.old_token_refused
    assert "glrt-" not in repr(result)


def test_unregister_last_runner_leaves_a_loadable_file(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    result = unregister(
        name="ci-1", runner_id=None, keep_server=False, gitlab=make_api(fake), store=store
    )
    assert result.deleted_in_gitlab
    assert fake.runners == {}
    assert "runners" not in tomllib.loads(store.path.read_text())
    store.load()  # still loads
    again = register(_request(), gitlab=make_api(fake), store=store)
    assert again.action is Action.CREATED


def test_unregister_unknown_name_lists_what_exists(store: ConfigStore) -> None:
    fake = FakeGitLab()
    register(_request(), gitlab=make_api(fake), store=store)
    before = store.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        unregister(
            name="nope", runner_id=None, keep_server=False, gitlab=make_api(fake), store=store
        )
    assert info.value.exit_code == 2
    assert "'ci-1'" in (info.value.hint or "")
    assert store.path.read_bytes() == before
    assert len(fake.runners) == 1


def test_keep_server_only_drops_the_entry(store: ConfigStore) -> None:
    fake = FakeGitLab()
    first = register(_request(), gitlab=make_api(fake), store=store)
    register(_request(name="ci-2"), gitlab=make_api(fake), store=store)
    result = unregister(
        name=None, runner_id=first.runner_id, keep_server=True, gitlab=None, store=store
    )
    assert not result.deleted_in_gitlab
    assert len(fake.runners) == 2
    assert [e["name"] for e in _entries(store)] == ["ci-2"]


def test_secrets_reach_the_sink_and_never_the_result_repr(store: ConfigStore) -> None:
    fake = FakeGitLab()
    seen: list[str] = []
    result = register(_request(), gitlab=make_api(fake), store=store, on_secret=seen.append)
    token = _entries(store)[0]["token"]
    assert token in seen
    assert token not in repr(result)
    assert token not in result.diff


def test_mask_tokens_hides_every_token_shape() -> None:
    text = '+  token = "t1_legacyshape"\n   token = "glrt-abc"\n   name = "x"\n'
    masked = mask_tokens(text)
    assert "t1_legacyshape" not in masked
    assert "glrt-abc" not in masked
    assert 'name = "x"' in masked


def test_mask_tokens_hides_other_secrets_in_diff_context() -> None:
    text = (
        '   SecretKey = "s3-secret-value"\n'
        '+  bearer_token = "k8s-bearer-value"\n'
        '-  environment = ["DB_PASSWORD=hunter2hunter2", "LANG=C.UTF-8"]\n'
        '   Type = "s3"\n'
    )
    masked = mask_tokens(text)
    for secret in ("s3-secret-value", "k8s-bearer-value", "hunter2hunter2"):
        assert secret not in masked
    assert '"LANG=C.UTF-8"' in masked
    assert 'Type = "s3"' in masked
    assert '-  environment = ["DB_PASSWORD=[MASKED]", "LANG=C.UTF-8"]' in masked


def test_legacy_registration_without_access_token_and_its_rollback(tmp_path: Path) -> None:
    fake = FakeGitLab(legacy_enabled=True)
    api = make_api(fake, token="")
    assert not api.authenticated
    store = ConfigStore(tmp_path / "config.toml")
    result = register(
        _request(legacy_registration_token=fake.registration_token), gitlab=api, store=store
    )
    assert result.action is Action.CREATED
    assert any("deprecated" in w for w in result.warnings)
    assert _entries(store)[0]["token"].startswith("t1_")
    assert result.requests == 2  # register + verify; no read-back without an access token

    def fail(stage: str, _temp: Path) -> None:
        if stage == "before-rename":
            raise OSError(28, "No space left on device")

    with pytest.raises(ConfigError):
        register(
            _request(name="ci-2", legacy_registration_token=fake.registration_token),
            gitlab=make_api(fake, token=""),
            store=ConfigStore(store.path, hook=fail),
        )
    assert [r.description for r in fake.runners.values()] == ["ci-1"]  # deleted by its token
    assert ("DELETE", "/runners") in fake.log
