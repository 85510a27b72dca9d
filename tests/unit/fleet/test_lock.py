"""The fleet lock: one apply at a time per fleet, the second one told who holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.fleet.lock import FleetRefusedError, fleet_lock, lock_path, state_dir


def test_a_second_apply_is_refused_at_once_with_the_holders_pid(tmp_path: Path) -> None:
    with fleet_lock("prod", tmp_path) as path:
        assert path == tmp_path / "fleet-prod.lock"
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(FleetRefusedError) as caught, fleet_lock("prod", tmp_path):
            pass  # pragma: no cover
        assert caught.value.exit_code == 13
        assert f"(pid {os.getpid()})" in caught.value.message
        assert str(path) in str(caught.value.hint)
        with fleet_lock("staging", tmp_path):  # another fleet is independent
            pass
    with fleet_lock("prod", tmp_path):  # released at the end
        pass
    assert (tmp_path / "fleet-prod.lock").read_text() == ""


def test_the_lock_lives_in_the_xdg_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert lock_path("prod") == tmp_path / "state" / "runnerctl" / "fleet-prod.lock"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == Path.home() / ".local" / "state" / "runnerctl"
