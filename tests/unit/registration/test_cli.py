"""The register CLI's bad-input paths (no GitLab needed: they fail before any request)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli import main as main_module

runner = CliRunner()


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["runnerctl", *args])
    with pytest.raises(SystemExit) as info:
        main_module.main()
    return int(info.value.code or 0)


def test_help_lists_the_registration_commands() -> None:
    result = runner.invoke(main_module.app, ["--help"])
    assert result.exit_code == 0
    for command in ("register", "unregister", "runners", "token"):
        assert command in result.stdout


def test_unknown_executor_exits_2_with_the_choices(tmp_path: Path) -> None:
    result = runner.invoke(
        main_module.app,
        ["register", "-e", "podman", "-s", "instance", "-c", str(tmp_path / "c.toml")],
    )
    assert result.exit_code == 2
    assert "'shell', 'docker', 'kubernetes'" in result.output
    assert not (tmp_path / "c.toml").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-e", "shell", "-s", "org:x"], "Valid scopes: instance, group:PATH"),
        (["-e", "shell", "-s", "instance", "--docker-image", "x"], "--docker-image do not apply"),
        (["-e", "docker", "-s", "instance", "--shell", "sh"], "--shell do not apply"),
        (["-e", "shell", "-s", "instance"], "No GitLab URL"),
    ],
)
def test_bad_input_exits_2_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    args: list[str],
    needle: str,
) -> None:
    monkeypatch.delenv("GITLAB_URL", raising=False)
    monkeypatch.delenv("CI_SERVER_URL", raising=False)
    config = tmp_path / "config.toml"
    code = _main(monkeypatch, "register", *args, "-t", "x", "-c", str(config))
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert "Hint:" in err
    assert not config.exists()


def test_missing_token_exits_2_without_touching_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("GITLAB_URL", "https://gitlab.example")
    config = tmp_path / "config.toml"
    code = _main(
        monkeypatch, "register", "-e", "shell", "-s", "instance", "-t", "x", "-c", str(config)
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "No GitLab access token" in err
    assert "GITLAB_TOKEN" in err
    assert not config.exists()


def test_legacy_env_var_must_be_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("REG_TOKEN", raising=False)
    code = _main(
        monkeypatch,
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-t",
        "x",
        "--legacy-registration-token-env",
        "REG_TOKEN",
        "-c",
        str(tmp_path / "c.toml"),
    )
    assert code == 2
    assert "REG_TOKEN is empty or unset" in capsys.readouterr().err


def test_unregister_needs_exactly_one_selector(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(monkeypatch, "unregister") == 2
    assert "NAME or --id" in capsys.readouterr().err
