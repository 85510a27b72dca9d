"""No runner left behind, and a runner's identity is (URL, id) and token."""

from __future__ import annotations

import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ConfigError, GitLabError
from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.service import RegisterRequest, register, unregister
from provisioner.runner_config import ConfigStore
from tests.unit.registration.fakes import BASE, FakeGitLab, Fault, make_api


def _request(**kw: Any) -> RegisterRequest:
    base: dict[str, Any] = {
        "name": "ci-1",
        "scope": Scope(parse_scope("instance").runner_type),
        "gitlab_url": BASE,
        "executor": ExecutorConfig(Executor.SHELL),
        "tags": ("py",),
    }
    base.update(kw)
    return RegisterRequest(**base)


def test_forbidden_read_back_deletes_the_runner_with_its_own_token(tmp_path: Path) -> None:
    # A token with only create_runner: the create works, reading back and deleting by id 403.
    fake = FakeGitLab(
        faults=[
            Fault(403, "GET", "/runners/101"),
            Fault(403, "DELETE", "/runners/101"),
        ]
    )
    store = ConfigStore(tmp_path / "config.toml")
    with pytest.raises(GitLabError) as caught:
        register(_request(), gitlab=make_api(fake), store=store)
    assert fake.runners == {}
    assert ("DELETE", "/runners") in fake.log  # by the runner's token
    hint = caught.value.hint or ""
    assert "read_api" in hint
    assert "lacks the create_runner" not in hint
    assert "Runner 101, created before the failure, was deleted again" in hint
    assert not store.path.exists()


def test_sigterm_during_the_transaction_rolls_the_runner_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGitLab()
    api = make_api(fake)
    store = ConfigStore(tmp_path / "config.toml")
    real_verify = api.verify

    def verify_then_terminated(token: str) -> Any:
        result = real_verify(token)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(api, "verify", verify_then_terminated)
    before = signal.getsignal(signal.SIGTERM)  # another test in this process may have set one
    with pytest.raises(KeyboardInterrupt):
        register(_request(), gitlab=api, store=store)
    assert fake.runners == {}
    assert not store.path.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_second_interrupt_during_the_rollback_is_refused_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeGitLab(faults=[Fault(500, "GET", "/runners/101")] * 5)
    api = make_api(fake, sleeps=[])
    store = ConfigStore(tmp_path / "config.toml")
    real_delete = api.delete_runner

    def delete_while_user_presses_ctrl_c(runner_id: int) -> bool:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return bool(real_delete(runner_id))

    monkeypatch.setattr(api, "delete_runner", delete_while_user_presses_ctrl_c)
    with pytest.raises(GitLabError):
        register(_request(), gitlab=api, store=store)
    assert fake.runners == {}
    refused = [r for r in caplog.records if "Interrupt refused" in r.getMessage()]
    assert len(refused) == 1
    assert "runner 101 is being deleted again" in refused[0].getMessage()


def test_same_id_on_two_gitlab_instances_is_not_a_collision(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config.toml")
    store.path.write_text(
        'concurrent = 1\n\n[[runners]]\n  name = "on-a"\n  url = "https://a.example"\n'
        '  id = 101\n  token = "glrt-instanceAAAAAAAAAAAA"\n  executor = "shell"\n'
    )
    fake = FakeGitLab()  # its first runner gets id 101 too
    result = register(_request(), gitlab=make_api(fake), store=store)
    assert result.runner_id == 101
    entries = tomllib.loads(store.path.read_text())["runners"]
    assert [(e["url"], e["id"]) for e in entries] == [
        ("https://a.example", 101),
        (BASE, 101),
    ]
    # Removing B's runner leaves A's entry alone.
    unregister(name="ci-1", runner_id=None, keep_server=False, gitlab=make_api(fake), store=store)
    assert [e["name"] for e in tomllib.loads(store.path.read_text())["runners"]] == ["on-a"]
    assert fake.runners == {}


def test_same_id_on_the_same_instance_is_still_refused(tmp_path: Path) -> None:
    from provisioner.runner_config import ConfigDocument

    doc = ConfigDocument.empty()
    doc.add_runner({"name": "a", "url": BASE, "id": 5, "token": "glrt-one", "executor": "shell"})
    with pytest.raises(ConfigError, match="id 5 is already configured"):
        doc.add_runner({"name": "b", "url": BASE + "/", "id": 5, "token": "glrt-two"})


def test_unregister_of_a_reused_id_does_not_delete_the_other_runner(tmp_path: Path) -> None:
    fake = FakeGitLab()
    store_old = ConfigStore(tmp_path / "old.toml")
    register(_request(name="old"), gitlab=make_api(fake), store=store_old)
    (old_id,) = fake.runners
    # Deleted through the API, and its id handed out again (a server that reuses ids).
    del fake.runners[old_id]
    fake.next_id = old_id - 1
    register(_request(name="new"), gitlab=make_api(fake), store=ConfigStore(tmp_path / "new.toml"))
    assert list(fake.runners) == [old_id]
    result = unregister(
        name="old", runner_id=None, keep_server=False, gitlab=make_api(fake), store=store_old
    )
    assert list(fake.runners) == [old_id]  # "new" survives
    assert fake.runners[old_id].description == "new"
    assert not result.deleted_in_gitlab
    assert "only the config entry was removed" in result.warnings[0]


@pytest.mark.parametrize(
    ("scopes", "needle"),
    [
        (["create_runner"], "read it back (GET /runners/:id)"),
        (["read_api"], "create the runner (POST /user/runners)"),
    ],
)
def test_dry_run_checks_the_token_scopes_first(
    tmp_path: Path, scopes: list[str], needle: str
) -> None:
    fake = FakeGitLab(scopes=scopes)
    store = ConfigStore(tmp_path / "config.toml")
    with pytest.raises(GitLabError) as caught:
        register(_request(), gitlab=make_api(fake), store=store, dry_run=True)
    assert needle in caught.value.message
    assert "the real run would fail" in caught.value.message
    assert fake.runners == {}
    assert not store.path.exists()


def test_dry_run_with_create_runner_and_api_predicts_success(tmp_path: Path) -> None:
    fake = FakeGitLab(scopes=["create_runner", "api"])
    result = register(
        _request(), gitlab=make_api(fake), store=ConfigStore(tmp_path / "c.toml"), dry_run=True
    )
    assert result.dry_run
    assert fake.runners == {}
