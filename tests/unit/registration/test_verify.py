"""``verify``: every entry checked against GitLab; --delete and --repair converge."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.service import RegisterRequest, register, rotate_token, unregister
from provisioner.registration.verify import EntryState, verify_runners
from provisioner.runner_config import ConfigStore
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api

OTHER = (
    '\n[[runners]]\n  name = "elsewhere"\n  url = "https://other.example"\n  id = 1\n'
    '  token = "glrt-otherinstance000000"\n  executor = "shell"\n'
)


class _Killed(BaseException):
    """Stands for a SIGKILL at a write stage: nothing after it runs, the file is untouched."""


def _kill_at(stage: str) -> Any:
    def hook(name: str, _temp: Path) -> None:
        if name == stage:
            raise _Killed

    return hook


def _register(fake: FakeGitLab, store: ConfigStore, name: str) -> None:
    request = RegisterRequest(
        name=name,
        scope=Scope(parse_scope("instance").runner_type),
        gitlab_url=BASE,
        executor=ExecutorConfig(Executor.SHELL),
        tags=("py",),
    )
    register(request, gitlab=make_api(fake), store=store)


def _states(fake: FakeGitLab, store: ConfigStore, **kw: Any) -> dict[str, EntryState]:
    result = verify_runners(gitlab_url=BASE + "/", gitlab=make_api(fake), store=store, **kw)
    return {e.name: e.state for e in result.entries}


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in tomllib.loads(path.read_text())["runners"]}


@pytest.fixture
def killed(tmp_path: Path) -> tuple[FakeGitLab, ConfigStore]:
    """A file where a rotate and an unregister were killed between GitLab and the rename."""
    fake = FakeGitLab()
    store = ConfigStore(tmp_path / "config.toml")
    for name in ("fine", "rotated", "unregistered"):
        _register(fake, store, name)
    with store.path.open("a") as fh:
        fh.write(OTHER)
    dying = ConfigStore(store.path, hook=_kill_at("before-rename"))
    with pytest.raises(_Killed):
        rotate_token("rotated", gitlab=make_api(fake), store=dying)
    with pytest.raises(_Killed):
        unregister(
            name="unregistered",
            runner_id=None,
            keep_server=False,
            gitlab=make_api(fake),
            store=dying,
        )
    return fake, store


def test_verify_reports_without_changing_anything(killed: tuple[FakeGitLab, ConfigStore]) -> None:
    fake, store = killed
    before = store.path.read_bytes()
    assert _states(fake, store) == {
        "fine": EntryState.VALID,
        "rotated": EntryState.TOKEN_REFUSED,
        "unregistered": EntryState.GONE,
        "elsewhere": EntryState.OTHER_INSTANCE,
    }
    assert store.path.read_bytes() == before


def test_delete_drops_only_entries_gitlab_no_longer_knows(
    killed: tuple[FakeGitLab, ConfigStore],
) -> None:
    fake, store = killed
    assert _states(fake, store, delete=True)["unregistered"] is EntryState.DELETED
    assert sorted(_entries(store.path)) == ["elsewhere", "fine", "rotated"]
    assert _states(fake, store)["rotated"] is EntryState.TOKEN_REFUSED


def test_repair_converges_whichever_command_was_killed(
    killed: tuple[FakeGitLab, ConfigStore],
) -> None:
    fake, store = killed
    states = _states(fake, store, repair=True)
    assert states["rotated"] is EntryState.REPAIRED
    assert states["unregistered"] is EntryState.DELETED
    entries = _entries(store.path)
    assert sorted(entries) == ["elsewhere", "fine", "rotated"]
    live = {r.token for r in fake.runners.values()}
    assert entries["rotated"]["token"] in live
    assert entries["fine"]["token"] in live
    assert {r.description for r in fake.runners.values()} == {"fine", "rotated"}
    assert set(_states(fake, store).values()) == {EntryState.VALID, EntryState.OTHER_INSTANCE}
