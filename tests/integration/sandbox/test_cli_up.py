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

pytestmark = pytest.mark.sandbox

RUNNERCTL = str(RUNNERCTL_PATH)


def _start(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [RUNNERCTL, "sandbox", "up", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert proc.stdout is not None
    url_line = proc.stdout.readline()
    token_line = proc.stdout.readline()
    assert url_line.startswith("GitLab sandbox: http://127.0.0.1:"), url_line
    assert token_line.startswith("Root token: glpat-"), token_line
    return proc, url_line.split(": ", 1)[1].strip(), token_line.split(": ", 1)[1].strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_up_prints_url_and_token_and_keeps_state(tmp_path: Path) -> None:
    data = tmp_path / "gitlab"
    proc, url, token = _start(data)
    try:
        token_file = data / "root_token"
        assert token_file.read_text().strip() == token
        assert token_file.stat().st_mode & 0o777 == 0o600
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
    proc, url2, token2 = _start(data)
    try:
        assert token2 == token
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
