"""The intent journal: what a killed ``register`` created is deleted or adopted by the next run."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.journal import Journal
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigStore
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs (no rollback, no cleanup)."""


def _request(name: str = "ci-1") -> RegisterRequest:
    return RegisterRequest(
        name=name,
        scope=Scope(parse_scope("instance").runner_type),
        gitlab_url=BASE,
        executor=ExecutorConfig(Executor.SHELL),
        tags=("py",),
    )


def _ids(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [r["id"] for r in tomllib.loads(path.read_text()).get("runners", [])]


def test_a_run_killed_before_the_rename_is_cleaned_up_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGitLab()
    path = tmp_path / "config.toml"

    def kill(stage: str, _temp: Path) -> None:
        if stage == "before-rename":
            raise _Killed

    # No rollback can run after a SIGKILL: stand in for it by making the rollback a no-op.
    monkeypatch.setattr("provisioner.registration.apply._rollback", lambda *_a: False)
    with pytest.raises(_Killed):
        register(_request(), gitlab=make_api(fake), store=ConfigStore(path, hook=kill))
    monkeypatch.undo()
    journal = Journal(path)
    (intent,) = journal.intents()
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    (orphan,) = fake.runners.values()
    assert orphan.maintenance_note == intent.marker
    assert _ids(path) == []

    result = register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    assert orphan.id not in fake.runners
    assert list(fake.runners) == _ids(path) == [result.runner_id]
    assert any(f"Runner {orphan.id} ('ci-1')" in w for w in result.warnings)
    assert not journal.path.exists()


def test_a_run_killed_after_the_rename_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeGitLab()
    path = tmp_path / "config.toml"

    def killed(*_args: Any) -> None:
        raise _Killed

    monkeypatch.setattr(Journal, "forget", killed)
    with pytest.raises(_Killed):
        register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    monkeypatch.undo()
    assert len(list(Journal(path).intents())) == 1
    kept = _ids(path)
    assert list(fake.runners) == kept

    again = register(_request("ci-2"), gitlab=make_api(fake), store=ConfigStore(path))
    assert not any("killed" in w for w in again.warnings)
    assert sorted(fake.runners) == sorted(_ids(path)) == sorted([*kept, again.runner_id])
    assert not Journal(path).path.exists()


def test_an_ordinary_run_leaves_no_journal_and_costs_no_request(tmp_path: Path) -> None:
    fake = FakeGitLab()
    path = tmp_path / "config.toml"
    first = register(_request(), gitlab=make_api(fake), store=ConfigStore(path))
    assert first.requests == 3
    assert not Journal(path).path.exists()
