"""The entry point: version, help, and the one error boundary."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import typer

from provisioner import __version__
from provisioner.cli import main as main_module
from provisioner.errors import ConfigError, ProvisionerError
from tests.conftest import Cli, CliResult

Boom = Callable[..., CliResult]


@pytest.fixture
def boom(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Boom:
    """``runnerctl config show`` whose domain step logs a token and raises ``error``."""
    config = tmp_path / "config.toml"
    config.write_text("concurrent = 1\n")

    def invoke(error: BaseException, *extra: str) -> CliResult:
        def fail(*_args: Any, **_kwargs: Any) -> NoReturn:
            logging.getLogger("provisioner.test").error("token glrt-abcdefgh12345678 leaked?")
            raise error

        monkeypatch.setattr("provisioner.runner_config.build_model", fail)
        return cli("config", "show", "-c", str(config), *extra)

    return invoke


def test_version_prints_the_package_version(cli: Cli) -> None:
    code, out, _ = cli("--version")
    assert code == 0
    assert out == f"runnerctl {__version__}\n"


def test_help_lists_command_groups(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0
    assert "config" in out
    assert "--output" in out


def test_unknown_output_format_is_a_usage_error(cli: Cli) -> None:
    assert cli("--output", "yaml", "config", "--help").exit_code == 2


def test_error_boundary_prints_message_hint_and_exits_with_code(boom: Boom) -> None:
    error = ConfigError(
        "cannot parse /etc/x.toml: token glrt-abcdefgh12345678 at line 3",
        hint="fix line 3 and run 'runnerctl config validate'",
    )
    code, out, err = boom(error)
    assert code == 3
    assert out == ""
    assert "glrt-abcdefgh12345678" not in err
    assert "ERROR" in err
    assert "token glrt-[MASKED] leaked?" in err
    assert err.endswith(
        "Error: cannot parse /etc/x.toml: token glrt-[MASKED] at line 3\n"
        "Hint: fix line 3 and run 'runnerctl config validate'\n"
    )


def test_debug_adds_a_redacted_traceback(boom: Boom) -> None:
    code, _, err = boom(ProvisionerError("bad glpat-abcdefgh12345678", exit_code=4), "--debug")
    assert code == 4
    assert "Traceback (most recent call last)" in err
    assert "glpat-abcdefgh12345678" not in err
    assert err.endswith("Error: bad glpat-[MASKED]\n")


def test_callback_installs_a_redacting_rich_handler(cli: Cli) -> None:
    from rich.logging import RichHandler

    from provisioner.secrets import RedactingFilter

    code, _, _ = cli("-v", "config", "--help")
    assert code == 0
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h, RichHandler)]
    assert len(handlers) == 1
    assert any(isinstance(f, RedactingFilter) for f in handlers[0].filters)
    assert root.level == logging.INFO
    root.removeHandler(handlers[0])


def test_the_fallback_outside_the_app_masks_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = typer.Typer(pretty_exceptions_enable=False)  # no boundary inside: main() catches

    @plain.command()
    def boom() -> None:
        raise ValueError("Invalid header value b'glpat-abcdefgh12345678\\nx'")

    @plain.command()
    def other() -> None:
        """A second command so Typer keeps sub-command parsing."""

    monkeypatch.setattr(main_module, "app", plain)
    monkeypatch.setattr(sys, "argv", ["runnerctl", "boom"])
    with pytest.raises(SystemExit) as exited:
        main_module.main()
    assert exited.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "Error: unexpected ValueError: Invalid header value b'glpat-[MASKED]\\nx'\n"
        f"Hint: {main_module.BUG_HINT}\n"
    )


def test_an_unexpected_error_is_exit_1_with_the_bug_hint(boom: Boom) -> None:
    code, out, err = boom(KeyError("x"))
    assert code == 1
    assert out == ""
    assert err.endswith(
        "Error: unexpected KeyError: 'x'\n"
        "Hint: this is a bug: run again with --debug and report it\n"
    )
    assert "Traceback" not in err


def test_keyboard_interrupt_is_130(boom: Boom) -> None:
    code, _, err = boom(KeyboardInterrupt())
    assert code == 130
    assert err.endswith("Interrupted.\n")


def test_debug_comes_from_the_parsed_options_not_argv(
    boom: Boom, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["runnerctl", "--debug", "config", "show"])  # ignored
    assert "Traceback" not in boom(KeyError("x")).stderr
    assert "Traceback (most recent call last)" in boom(KeyError("x"), "--debug").stderr


def test_json_output_adds_one_error_document_on_stdout(boom: Boom) -> None:
    code, out, err = boom(
        ConfigError("bad glrt-abcdefgh12345678 here", hint="fix it"), "-o", "json"
    )
    assert code == 3
    assert json.loads(out) == {
        "error": {"message": "bad glrt-[MASKED] here", "hint": "fix it", "exit_code": 3}
    }
    assert err.endswith("Error: bad glrt-[MASKED] here\nHint: fix it\n")


def test_usage_errors_and_exit_pass_through_the_boundary(cli: Cli) -> None:
    code, out, err = cli("config", "show", "--no-such-option")
    assert code == 2
    assert out == ""
    assert "No such option: --no-such-option" in err
    assert "Error: unexpected" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["register", "-e", "shell", "--output", "json"],
            ["--output", "json", "register", "-e", "shell"],
        ),
        (["-v", "config", "show", "-vv", "--debug"], ["-v", "-vv", "--debug", "config", "show"]),
        (["smoke", "--output=json", "--tag", "t"], ["--output=json", "smoke", "--tag", "t"]),
        (["x", "--", "-v", "--debug"], ["x", "--", "-v", "--debug"]),
        (["config", "show", "-o"], ["config", "show", "-o"]),
    ],
)
def test_global_options_are_hoisted_from_after_the_subcommand(
    argv: list[str], expected: list[str]
) -> None:
    assert main_module.hoist_global_options(argv) == expected


def test_global_options_work_after_the_subcommand(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = cli("config", "show", "-c", str(missing), "--output", "json", "--debug")
    assert code == 3
    assert json.loads(out)["error"]["exit_code"] == 3
    assert "Traceback (most recent call last)" in err


def test_verbose_shows_as_a_repeatable_flag_in_help(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0
    line = next(row for row in out.splitlines() if "--verbose" in row)
    assert "-v" in line
    assert "[repeatable]" in line
    assert "<int>" not in line
    assert "INTEGER" not in line
