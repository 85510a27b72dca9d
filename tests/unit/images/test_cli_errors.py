"""The image commands' error paths that need no daemon: exit 6 with a hint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provisioner.cli import main as main_module


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    sys_argv = ["runnerctl", *argv]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", sys_argv)
        with pytest.raises(SystemExit) as exited:
            main_module.main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["image", "verify", "runnerctl/python:3.11"],
        ["image", "build", "--python", "3.11"],
        ["image", "base", "--suite", "bookworm"],
        ["image", "push", "runnerctl/python:3.11", "127.0.0.1:5000"],
    ],
)
def test_no_daemon_exits_6_with_a_hint(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-dockerd.sock")
    code, out, err = _run(argv, capsys)
    assert code == 6
    assert out == ""
    assert "Error: Cannot reach the Docker daemon" in err
    assert err.endswith("Hint: start dockerd or run make setup\n")


def test_bad_user_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["image", "build", "--user", "admin"], capsys)
    assert code == 2
    assert "Unknown --user 'admin'" in err
    assert "Hint: use root or ci" in err
