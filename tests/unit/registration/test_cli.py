"""The register CLI's bad-input paths (no GitLab needed: they fail before any request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


def test_help_lists_the_registration_commands(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0
    for command in ("register", "unregister", "runners", "token"):
        assert command in out


def test_unknown_executor_exits_2_with_the_choices(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("register", "-e", "podman", "-s", "instance", "-c", str(tmp_path / "c.toml"))
    assert code == 2
    assert "'shell', 'docker', 'kubernetes'" in err
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
    cli: Cli,
    tmp_path: Path,
    args: list[str],
    needle: str,
) -> None:
    config = tmp_path / "config.toml"
    code, _, err = cli(
        "register",
        *args,
        "-t",
        "x",
        "-c",
        str(config),
        env={"GITLAB_URL": None, "CI_SERVER_URL": None},
    )
    assert code == 2
    assert needle in err
    assert "Hint:" in err
    assert not config.exists()


def test_missing_token_exits_2_without_touching_anything(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    code, _, err = cli(
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-t",
        "x",
        "-c",
        str(config),
        env={"GITLAB_URL": "https://gitlab.example"},
    )
    assert code == 2
    assert "No GitLab access token" in err
    assert "GITLAB_TOKEN" in err
    assert not config.exists()


def test_legacy_env_var_must_be_set(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli(
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
        env={"REG_TOKEN": None},
    )
    assert code == 2
    assert "REG_TOKEN is empty or unset" in err


def test_unregister_needs_exactly_one_selector(cli: Cli) -> None:
    code, _, err = cli("unregister")
    assert code == 2
    assert "NAME or --id" in err
