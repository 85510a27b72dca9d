"""``runnerctl sandbox up`` in the foreground: URL and token printed, state kept across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import gitlab
import pytest

from tests.conftest import RUNNERCTL as RUNNERCTL_PATH
from tests.conftest import run_runnerctl
from tests.helpers import wait_until

pytestmark = pytest.mark.sandbox

RUNNERCTL = str(RUNNERCTL_PATH)


def _start(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``sandbox up``; return the process, its URL and the token file's path."""
    proc = subprocess.Popen(
        [RUNNERCTL, "sandbox", "up", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert proc.stdout is not None
    url_line = proc.stdout.readline()
    file_line = proc.stdout.readline()
    assert url_line.startswith("GitLab sandbox: http://127.0.0.1:"), url_line
    assert file_line == f"Root token file: {data_dir / 'root_token'}\n", file_line
    return proc, url_line.split(": ", 1)[1].strip(), file_line.split(": ", 1)[1].strip()


def _up(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUNNERCTL, "sandbox", "up", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_up_prints_url_and_token_and_keeps_state(tmp_path: Path) -> None:
    data = tmp_path / "gitlab"
    proc, url, token_path = _start(data)
    try:
        token_file = Path(token_path)
        token = token_file.read_text().strip()
        assert token.startswith("glpat-")
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert (data / "sandbox.sqlite3").stat().st_mode & 0o777 == 0o600
        # One sandbox per data dir: the second is refused and names the holder.
        second = _up("--port", "0", "--data-dir", str(data))
        assert second.returncode == 8, second.stderr
        assert f"is in use by another sandbox (pid {proc.pid})" in second.stderr
        assert "Hint:" in second.stderr
        assert token not in second.stdout + second.stderr
        gl = gitlab.Gitlab(url, private_token=token)
        gl.auth()
        project = gl.projects.create({"name": "kept"})
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "c",
                "actions": [{"action": "create", "file_path": "f", "content": "data"}],
            }
        )
    finally:
        _stop(proc)
    assert proc.stdout is not None
    assert token not in proc.stdout.read()
    proc, url2, _ = _start(data, "--show-token")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Root token: {token}\n"
        token2 = token
        gl = gitlab.Gitlab(url2, private_token=token2)
        again = gl.projects.get("root/kept")
        assert again.id == project.id
        assert again.files.raw("f", ref="main") == b"data"
    finally:
        _stop(proc)


def test_bad_options_exit_with_usage_error(tmp_path: Path) -> None:
    result = run_runnerctl(
        "sandbox", "up", "--fault-rate", "3", "--data-dir", str(tmp_path), timeout=60
    )
    assert result.returncode == 2
    assert "Error: --fault-rate 3.0 is out of range" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_is_a_sandbox_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        result = run_runnerctl(
            "sandbox", "up", "--port", str(port), "--data-dir", str(tmp_path / "d"), timeout=60
        )
    assert result.returncode == 8
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Hint:" in result.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--external-url", "notaurl"), "Error: --external-url 'notaurl' is not an http(s) URL"),
        (("--external-url", "http://h:99999"), "Error: --external-url 'http://h:99999'"),
        (("--lost-answer-rate", "-1"), "Error: --lost-answer-rate -1.0 is out of range"),
        (("--schedule-tick", "0"), "Error: --schedule-tick 0.0 must be positive"),
    ],
)
def test_bad_urls_and_rates_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _up("--port", "0", "--data-dir", str(tmp_path / "d"), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Hint:" in result.stderr
    assert not (tmp_path / "d").exists()


def test_data_dir_that_is_a_file_or_unwritable_is_a_sandbox_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory\n")
    # /proc refuses new directories even to root: an unwritable place, whoever runs the tests.
    for data_dir in (afile, afile / "sub", Path("/proc/runnerctl-sandbox-data")):
        result = _up("--port", "0", "--data-dir", str(data_dir))
        assert result.returncode == 8, result.stderr
        assert f"Error: cannot use {data_dir} as the sandbox's data dir" in result.stderr
        assert "Hint: pass --data-dir a directory" in result.stderr
        assert "Traceback" not in result.stderr
    assert afile.read_text() == "not a directory\n"


@pytest.mark.parametrize("host", ["not-a-host.invalid", "10.255.255.1", "999.1.1.1"])
def test_bad_host_is_a_sandbox_error_about_the_address(tmp_path: Path, host: str) -> None:
    result = _up("--host", host, "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 8, result.stderr
    assert f"Error: cannot listen on '{host}'" in result.stderr
    assert "Hint: pass --host an IP address" in result.stderr
    assert "--port" not in result.stderr


def test_schedule_tick_fast_forwards_pipeline_schedules(tmp_path: Path) -> None:
    proc, url, token_path = _start(tmp_path / "gitlab", "--schedule-tick", "0.5")
    try:
        gl = gitlab.Gitlab(url, private_token=Path(token_path).read_text().strip())
        gl.auth()
        project = gl.projects.create({"name": "scheduled"})
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "ci",
                "actions": [
                    {
                        "action": "create",
                        "file_path": ".gitlab-ci.yml",
                        "content": "job:\n  script: [echo]\n",
                    }
                ],
            }
        )
        schedule = project.pipelineschedules.create(
            {"description": "every minute", "ref": "main", "cron": "* * * * *"}
        )
        found = wait_until(
            lambda: project.pipelines.list(source="schedule"),
            timeout=30,
            interval=0.2,
            message="no scheduled pipeline within 30 s at --schedule-tick 0.5",
        )
        assert found[0].ref == "main"
        assert project.pipelineschedules.get(schedule.id).last_pipeline["id"] >= found[0].id
    finally:
        _stop(proc)
