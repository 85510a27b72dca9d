"""``runnerctl smoke`` refuses bad options with exit 2 before it talks to GitLab."""

from __future__ import annotations

import pytest

from tests.conftest import Cli


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
    cli: Cli,
) -> None:
    env = {"GITLAB_TOKEN": "glpat-unit-test-token-0000", "SMOKE_RUNNER_TAG": None}
    code, out, err = cli("smoke", "--gitlab-url", "http://127.0.0.1:9", *args, env=env)
    assert code == 2, err
    assert f"Error: {message}" in err
    assert "Hint: " in err
    assert "glpat-unit-test-token" not in out + err
