"""The entry point: version, help, and the one error boundary."""

from __future__ import annotations

import logging
import sys

import pytest
import typer
from typer.testing import CliRunner

from provisioner import __version__
from provisioner.cli import main as main_module
from provisioner.errors import ConfigError, ProvisionerError

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(main_module.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"runnerctl {__version__}\n"


def test_help_lists_command_groups() -> None:
    result = runner.invoke(main_module.app, ["--help"])
    assert result.exit_code == 0
    assert "config" in result.stdout
    assert "--output" in result.stdout


def test_unknown_output_format_is_a_usage_error() -> None:
    result = runner.invoke(main_module.app, ["--output", "yaml", "config", "--help"])
    assert result.exit_code == 2


def _failing_app(error: ProvisionerError) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(main_module.main_callback)

    @app.command()
    def boom() -> None:
        logging.getLogger("provisioner.test").error("token glrt-abcdefgh12345678 leaked?")
        raise error

    @app.command()
    def other() -> None:
        """A second command so Typer keeps sub-command parsing."""

    return app


def test_error_boundary_prints_message_hint_and_exits_with_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = ConfigError(
        "cannot parse /etc/x.toml: token glrt-abcdefgh12345678 at line 3",
        hint="fix line 3 and run 'runnerctl config validate'",
    )
    monkeypatch.setattr(main_module, "app", _failing_app(error))
    monkeypatch.setattr(sys, "argv", ["runnerctl", "boom"])
    with pytest.raises(SystemExit) as exited:
        main_module.main()
    assert exited.value.code == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "glrt-abcdefgh12345678" not in captured.err
    assert "ERROR" in captured.err
    assert "token glrt-[MASKED] leaked?" in captured.err
    assert captured.err.endswith(
        "Error: cannot parse /etc/x.toml: token glrt-[MASKED] at line 3\n"
        "Hint: fix line 3 and run 'runnerctl config validate'\n"
    )


def test_debug_adds_a_redacted_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    error = ProvisionerError("bad glpat-abcdefgh12345678", exit_code=4)
    monkeypatch.setattr(main_module, "app", _failing_app(error))
    monkeypatch.setattr(sys, "argv", ["runnerctl", "--debug", "boom"])
    with pytest.raises(SystemExit) as exited:
        main_module.main()
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "glpat-abcdefgh12345678" not in err
    assert err.endswith("Error: bad glpat-[MASKED]\n")


def test_callback_installs_a_redacting_rich_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.logging import RichHandler

    from provisioner.secrets import RedactingFilter

    app = typer.Typer()
    app.callback()(main_module.main_callback)

    @app.command()
    def noop() -> None:
        """Nothing."""

    @app.command()
    def other() -> None:
        """Nothing either."""

    result = runner.invoke(app, ["-v", "noop"])
    assert result.exit_code == 0
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h, RichHandler)]
    assert len(handlers) == 1
    assert any(isinstance(f, RedactingFilter) for f in handlers[0].filters)
    assert root.level == logging.INFO
    root.removeHandler(handlers[0])
