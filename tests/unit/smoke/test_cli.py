"""``runnerctl smoke`` refuses bad options with exit 2 before it talks to GitLab."""

from __future__ import annotations

import sys

import pytest

from provisioner.cli import main as main_module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tag", "t", "--signing", "maybe"], "Unknown signing mode 'maybe'."),
        (["--tag", "t", "--timeout", "soon"], "Cannot read the timeout 'soon'."),
        (["--tag", "t", "--variable", "NOEQUALS"], "--variable 'NOEQUALS' is not KEY=VALUE."),
        (["--tag", "t", "--signing", "keyless"], "Keyless signing cannot run against 127.0.0.1"),
        (["--tag", "", "--keep", "1"], "No runner tag given."),
    ],
)
def test_bad_options_exit_2_with_a_hint(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-unit-test-token-0000")
    monkeypatch.delenv("SMOKE_RUNNER_TAG", raising=False)
    argv = ["runnerctl", "smoke", "--gitlab-url", "http://127.0.0.1:9", *args]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main_module.main()
    out = capsys.readouterr()
    assert info.value.code == 2, out.err
    assert f"Error: {message}" in out.err
    assert "Hint: " in out.err
    assert "glpat-unit-test-token" not in out.out + out.err
