"""`runnerctl host check|provision`: bad input is refused with a hint before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli


def test_provision_needs_hosts_or_an_inventory(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("host", "provision")
    assert (code, out) == (2, "")
    assert "Error: Name the hosts: HOST arguments or --inventory FILE (one of them)." in err
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all: {}\n")
    code, _, err = cli("host", "provision", "ops@vm1", "--inventory", str(inventory))
    assert code == 2
    assert "HOST arguments or --inventory" in err


def test_bad_host_names_and_files_are_usage_errors(cli: Cli, tmp_path: Path) -> None:
    for args in (
        ("host", "check", "ops@vm1:99999"),
        ("host", "check", "ops@vm1", "--key-file", str(tmp_path / "missing")),
        ("host", "check", "ops@vm1", "--become-password-file", str(tmp_path / "missing")),
        ("host", "check", "ops@vm1", "--gitlab-url", "gitlab.example.test"),
    ):
        code, out, err = cli(*args)
        assert (code, out) == (2, ""), args
        assert "Error: " in err, args
        assert "Hint: " in err, args
        assert "unexpected" not in err, args


def test_bad_vars_file_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "vars.yml"
    bad.write_text("- not a mapping\n")
    code, _, err = cli("host", "provision", "ops@vm1", "--vars", str(bad))
    assert code == 2
    assert "Error: " in err
    assert not (Path.home() / ".cache" / "runnerctl" / "ansible").exists()


@pytest.mark.parametrize("command", ["show", "validate", "lint"])
def test_config_commands_take_host(cli: Cli, command: str) -> None:
    code, out, _ = cli("config", command, "--help")
    assert code == 0
    assert "--host" in out
    assert "--ssh-key" in out


def test_register_takes_host(cli: Cli) -> None:
    code, out, _ = cli("register", "--help")
    assert code == 0
    assert "--host" in out
