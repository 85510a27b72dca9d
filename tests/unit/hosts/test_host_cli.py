"""`runnerctl host check|provision`: bad input is refused with a hint before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli import main as main_module
from provisioner.errors import ProvisionerError, UsageError

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str, BaseException | None]:
    result = runner.invoke(main_module.app, list(args))
    error = result.exception if not isinstance(result.exception, SystemExit) else None
    return result.exit_code, result.stdout, result.stderr, error


def test_provision_needs_hosts_or_an_inventory(tmp_path: Path) -> None:
    _, _, _, error = run("host", "provision")
    assert isinstance(error, UsageError)
    assert "HOST arguments or --inventory" in error.message
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all: {}\n")
    _, _, _, error = run("host", "provision", "ops@vm1", "--inventory", str(inventory))
    assert isinstance(error, UsageError)


def test_bad_host_names_and_files_are_usage_errors(tmp_path: Path) -> None:
    for args in (
        ("host", "check", "ops@vm1:99999"),
        ("host", "check", "ops@vm1", "--key-file", str(tmp_path / "missing")),
        ("host", "check", "ops@vm1", "--become-password-file", str(tmp_path / "missing")),
        ("host", "check", "ops@vm1", "--gitlab-url", "gitlab.example.test"),
    ):
        _, _, _, error = run(*args)
        assert isinstance(error, ProvisionerError), args
        assert error.exit_code == 2, args
        assert error.hint, args


def test_bad_vars_file_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "vars.yml"
    bad.write_text("- not a mapping\n")
    _, _, _, error = run("host", "provision", "ops@vm1", "--vars", str(bad))
    assert isinstance(error, UsageError)
    assert not (Path.home() / ".cache" / "runnerctl" / "ansible").exists()


@pytest.mark.parametrize("command", ["show", "validate", "lint"])
def test_config_commands_take_host(command: str) -> None:
    code, out, _, _ = run("config", command, "--help")
    assert code == 0
    assert "--host" in out
    assert "--ssh-key" in out


def test_register_takes_host() -> None:
    code, out, _, _ = run("register", "--help")
    assert code == 0
    assert "--host" in out
