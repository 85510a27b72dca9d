"""README.md's exit-code table is what the commands do: every code in it, run for real.

The table is parsed from README.md; each code it lists needs at least one case below (a code
added to the table without a case fails here). Each case runs ``runnerctl`` in its own process
(code 1, a bug, is injected in-process: no real command may have one) and asserts the exit code
and the ``Error:`` / ``Hint:`` lines; the verdict codes that are results rather than errors
(a lint finding) assert their verdict line instead.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from tests.conftest import REPO_ROOT, Cli, run_runnerctl
from tests.helpers import seed_pipeline

pytestmark = pytest.mark.sandbox

RUNNER = (
    '[[runners]]\n  name = "{name}"\n  url = "{url}"\n  id = 1\n'
    '  token = "{token}"\n  executor = "shell"\n'
)


def readme_codes() -> dict[int, str]:
    """The rows of README.md's "Exit codes" table: code -> meaning."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


@dataclass(frozen=True)
class Case:
    """One command line and what it must print (``{…}`` is filled from the setup)."""

    code: int
    argv: tuple[str, ...]
    lines: tuple[str, ...]  # exact lines of stderr (or stdout) that must appear
    env: dict[str, str] | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _closed_port() -> int:
    return _free_port()  # nothing listens there once the probe socket is closed


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return str(path)


FLEET = (
    '[fleet]\nname = "{name}"\ngitlab_url = "{url}"\nssh_user = "ops"\n\n'
    '[[hosts]]\nname = "vm"\naddress = "127.0.0.1:{port}"\n\n'
    '[[runners]]\nname = "{name}-r"\nhost = "vm"\nexecutor = "shell"\n'
)


@pytest.fixture
def setup(tmp_path: Path, sandbox: Any) -> Iterator[dict[str, str]]:
    """Files the cases read, and the sandbox's address (fleet "held"'s lock is held)."""
    from provisioner.fleet.lock import fleet_lock

    # Valid for gitlab-runner, but the sandbox knows no such runner token.
    config = "concurrent = 1\n\n" + RUNNER.format(
        name="refused", url=sandbox.url, token="glrt-nobody-knows-this-000000"
    )
    risky = config.replace('executor = "shell"', 'executor = "docker"') + (
        '  [runners.docker]\n    image = "alpine"\n    privileged = true\n'
    )
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    group = sandbox.gitlab().groups.create(
        {"name": sandbox.unique("red"), "path": sandbox.unique("red")}
    )
    project = sandbox.new_project(group=group)
    seed_pipeline(sandbox, project.id, "main", "failed", age=5)
    closed = str(_closed_port())
    files = {
        "url": sandbox.url,
        "valid": _write(tmp_path / "valid.toml", config),
        "refused": _write(tmp_path / "refused.toml", config),
        "risky": _write(tmp_path / "risky.toml", risky),
        "bad_token": _write(tmp_path / "bad-token", "glpat-this-token-is-not-known-0\n"),
        "dir": str(a_dir),
        "tmp": str(tmp_path),
        "closed_port": closed,
        "root_token": sandbox.root_token,
        "red_group": group.full_path,
        "job_log": _write(
            tmp_path / "job.log",
            "Fetching changes...\nremote: HTTP Basic: Access denied\n"
            "ERROR: Job failed: exit code 1\n",
        ),
        "held_fleet": _write(
            tmp_path / "held.toml", FLEET.format(name="held", url=sandbox.url, port=closed)
        ),
        "cut_fleet": _write(
            tmp_path / "cut.toml",
            FLEET.format(name=sandbox.unique("cut"), url=sandbox.url, port=closed),
        ),
        "pid": str(os.getpid()),
    }
    with fleet_lock("held", tmp_path / "state" / "runnerctl"):
        yield files


CASES = [
    Case(0, ("config", "validate", "--config", "{valid}"), ()),
    Case(
        2,
        ("demo", "--data-dir", "{tmp}/demo", "--port", "99999"),
        (
            "Error: --port 99999 is not a TCP port.",
            "Hint: Pick a free port from 1 to 65535 (the default is 8929).",
        ),
    ),
    Case(
        2,
        ("image", "build", "--python", "2.7"),
        ("Error: Python version '2.7' is not of the form 3.X", "Hint: e.g. --python 3.11"),
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    ),
    Case(
        3,
        ("config", "show", "--config", "{dir}"),
        ("Error: {dir} is a directory, not a config file",),
    ),
    Case(
        4,
        ("runners", "list", "--gitlab-url", "{url}", "--token-file", "{bad_token}"),
        (
            "Error: GitLab answered 401 while listing runners: 401 Unauthorized",
            "Hint: The token from token file {bad_token} is invalid, expired or revoked. "
            "Create a new access token with the create_runner (or api) scope. Pass a personal, "
            "group or project access token with the create_runner (or api) scope in "
            "GITLAB_TOKEN, --token-file FILE or --gitlab-config-section NAME; never on the "
            "command line.",
        ),
    ),
    Case(
        5,
        ("config", "show", "--host", "root@127.0.0.1:{closed_port}"),
        (
            "Error: root@127.0.0.1:{closed_port}: cannot connect (Unable to connect to port "
            "{closed_port} on 127.0.0.1)",
            "Hint: Check that sshd runs on 127.0.0.1 port {closed_port} and that the address "
            "is routable from here.",
        ),
    ),
    Case(
        6,
        ("image", "verify", "runnerctl/python:3.11"),
        ("Hint: start dockerd or run make setup",),
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    ),
    Case(
        7,
        ("smoke", "--gitlab-url", "{url}", "--tag", "no-runner-has-this-tag", "--timeout", "2s"),
        (
            "Hint: Start the runner registered with this tag and check it is online with "
            "'runnerctl runners list'; its tags must include the one given to --tag.",
        ),
        env={"GITLAB_TOKEN": "{root_token}"},
    ),
    Case(
        8,
        ("sandbox", "runner", "--config", "{refused}", "--once"),
        (
            "Error: No runner in {refused} can take jobs: refused.",
            "Hint: The lines above say why each was refused. Re-register a runner whose token "
            "GitLab refuses (`runnerctl register`, or `runnerctl token rotate NAME`); the "
            "stand-in runner runs the shell and docker executors only.",
        ),
    ),
    Case(
        8,
        ("demo", "--data-dir", "{valid}"),
        (
            "Error: --data-dir {valid} is a file, not a directory.",
            "Hint: Pass a directory (it is created if missing), e.g. --data-dir ~/runnerctl-demo.",
        ),
    ),
    # A verdict, not an error: the lint result is the output, and its last line says why.
    Case(
        9,
        ("config", "lint", "--config", "{risky}"),
        ("2 findings (1 high, 1 low): failed (--fail-on high)",),
    ),
    # Verdicts too: the findings (or the table) are the output, the code says what was found.
    Case(
        10,
        ("doctor", "--log", "{job_log}"),
        ("   line 2: remote: HTTP Basic: Access denied",),
    ),
    Case(
        11,
        ("pipelines", "--group", "{red_group}", "--once", "--ref", "any"),
        (),
        env={"GITLAB_URL": "{url}", "GITLAB_TOKEN": "{root_token}"},
    ),
    # A verdict: the recap says what did not converge (here: the only host cannot be reached).
    Case(
        12,
        ("fleet", "apply", "{cut_fleet}", "--auto-approve", "--gitlab-url", "{url}"),
        (
            "unreachable  vm: ops@127.0.0.1:{closed_port}: cannot connect (Unable to connect to "
            "port {closed_port} on 127.0.0.1)",
        ),
        env={"GITLAB_TOKEN": "{root_token}", "XDG_STATE_HOME": "{tmp}/state"},
    ),
    Case(
        13,
        ("fleet", "apply", "{held_fleet}", "--auto-approve", "--gitlab-url", "{url}"),
        (
            "Error: Another `fleet apply` of fleet 'held' is running (pid {pid}).",
            "Hint: Wait for it to finish, then re-run; the lock is {tmp}/state/runnerctl/"
            "fleet-held.lock.",
        ),
        env={"GITLAB_TOKEN": "{root_token}", "XDG_STATE_HOME": "{tmp}/state"},
    ),
]


# Codes that report a verdict on stdout rather than an error.
VERDICTS = (9, 10, 11, 12)


def _fill(value: str, setup: dict[str, str]) -> str:
    return value.format(**setup)


def test_every_code_in_the_readme_table_has_a_case() -> None:
    codes = readme_codes()
    assert sorted(codes) == list(range(len(codes))), codes  # 0..N, none skipped
    covered = {case.code for case in CASES} | {1}  # 1 is injected below
    assert sorted(codes) == sorted(covered), f"codes without a case: {set(codes) - covered}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.code}-{'-'.join(c.argv[:2])}" for c in CASES])
def test_the_command_exits_with_its_documented_code(case: Case, setup: dict[str, str]) -> None:
    assert case.code in readme_codes()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GITLAB_URL", "GITLAB_TOKEN", "CI_SERVER_URL")
    }
    env.update(GITLAB_TOKEN=(Path(setup["tmp"]) / "bad-token").read_text().strip())
    env.update({k: _fill(v, setup) for k, v in (case.env or {}).items()})
    argv = [_fill(a, setup) for a in case.argv]

    proc = run_runnerctl(*argv, env=env, timeout=120)

    assert proc.returncode == case.code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    output = (proc.stderr + proc.stdout).splitlines()
    for line in case.lines:
        assert _fill(line, setup) in output, "\n".join(output)
    if case.code == 0:
        assert not any(line.startswith("Error:") for line in output)
    elif case.code not in VERDICTS:  # every error prints an Error: and a Hint: line
        assert sum(line.startswith("Error: ") for line in output) == 1, output
        assert sum(line.startswith("Hint: ") for line in output) == 1, output


def test_1_is_an_unexpected_error_with_the_bug_hint(cli: Cli) -> None:
    def broken(_settings: Any) -> Any:
        raise RuntimeError("an invariant broke")

    app = AppContext(factories=Factories(gitlab=broken))
    env = {"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": "glpat-" + "x" * 20}

    code, _, err = cli("runners", "list", env=env, app=app)

    assert code == 1
    assert 1 in readme_codes()
    assert err.splitlines()[-2:] == [
        "Error: unexpected RuntimeError: an invariant broke",
        "Hint: this is a bug: run again with --debug and report it",
    ]
