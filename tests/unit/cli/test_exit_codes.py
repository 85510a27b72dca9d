"""Bad input ends as ``Error:`` / ``Hint:`` with the README's exit code, before any real work.

Each case used to be a traceback with exit 1, or the wrong code (issue 12).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli

NOT_UTF8 = b"\xff\xfe\x00 glpat-\xe9\n"
# A Docker Engine that is not there: a usage error must be reported before Docker is needed.
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def _assert_error(err: str, code: int, expected_code: int, message: str) -> None:
    assert code == expected_code, err
    lines = err.splitlines()
    assert f"Error: {message}" in lines, err
    assert any(line.startswith("Hint: ") for line in lines), err
    assert "Traceback" not in err


def test_demo_data_dir_that_is_a_file_exits_8(cli: Cli, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = cli("demo", "--data-dir", str(afile), env=NO_DOCKER)
    _assert_error(err, code, 8, f"--data-dir {afile} is a file, not a directory.")
    assert afile.read_text() == "mine"


def test_demo_data_dir_under_a_file_exits_8(cli: Cli, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, _, err = cli("demo", "--data-dir", str(afile / "demo"), env=NO_DOCKER)
    _assert_error(err, code, 8, f"Cannot use --data-dir {afile / 'demo'}: Not a directory.")


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_demo_port_out_of_range_is_a_usage_error(cli: Cli, tmp_path: Path, port: str) -> None:
    code, _, err = cli("demo", "--data-dir", str(tmp_path / "d"), "--port", port, env=NO_DOCKER)
    _assert_error(err, code, 2, f"--port {port} is not a TCP port.")
    assert "Hint: Pick a free port from 1 to 65535 (the default is 8929)." in err
    assert not (tmp_path / "d").exists()


def test_host_provision_vars_not_utf8_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "vars.yml"
    bad.write_bytes(NOT_UTF8)
    code, _, err = cli("host", "provision", "--vars", str(bad), "ops@10.0.0.5")
    _assert_error(err, code, 2, f"{bad} is not UTF-8 text")


def test_token_file_not_utf8_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "token"
    bad.write_bytes(NOT_UTF8)
    code, out, err = cli(
        "runners", "list", "--gitlab-url", "https://gitlab.example", "--token-file", str(bad)
    )
    _assert_error(err, code, 2, f"The token file {bad} is not UTF-8 text.")
    assert "glpat-" not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["image", "build", "--python", "2.7"], "Python version '2.7' is not of the form 3.X"),
        (
            ["image", "build", "--python", "3.11", "--python", "3"],
            "Python version '3' is not of the form 3.X",
        ),
        (["image", "base", "--suite", "buster"], "Unknown Debian suite 'buster'"),
    ],
)
def test_image_option_errors_are_usage_errors_before_docker(
    cli: Cli, args: list[str], message: str
) -> None:
    code, _, err = cli(*args, env=NO_DOCKER)
    _assert_error(err, code, 2, message)
    assert "Docker" not in err
