"""The stand-in runner's pure parts: config narrowing, job decoding, masking, trace protocol."""

from __future__ import annotations

import gzip
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ConfigError
from provisioner.sandbox_runner import artifacts as art
from provisioner.sandbox_runner.build import go_duration, render_script
from provisioner.sandbox_runner.config import load_setup, parse_size
from provisioner.sandbox_runner.executors import _doublestar, docker_connect_message
from provisioner.sandbox_runner.job import ArtifactSpec, parse_job
from provisioner.sandbox_runner.protocol import (
    PatchResult,
    UpdateResult,
    base_url,
    map_failure_reason,
)
from provisioner.sandbox_runner.sources import (
    CREDENTIAL_HELPER,
    clone_url_for,
    git_env,
    strip_credentials,
)
from provisioner.sandbox_runner.trace import JobTrace, Masker

TOKEN = "glcbt-64_abcdefghijklmnopqrst"
PAYLOAD: dict[str, Any] = {
    "id": 42,
    "token": TOKEN,
    "job_info": {"name": "build", "stage": "build", "project_id": 7},
    "git_info": {
        "repo_url": f"http://gitlab-ci-token:{TOKEN}@127.0.0.1:8929/grp/app.git",
        "ref": "main",
        "sha": "a" * 40,
        "ref_type": "branch",
        "refspecs": ["+refs/pipelines/3:refs/pipelines/3"],
        "depth": 20,
    },
    "runner_info": {"timeout": 600},
    "variables": [
        {"key": "CI_PROJECT_PATH", "value": "grp/app", "public": True},
        {"key": "CI_JOB_TOKEN", "value": TOKEN, "public": False, "masked": True},
        {"key": "KUBECONFIG", "value": "x: 1\n", "public": False, "file": True},
        {"key": "REPEATED", "value": "first"},
        {"key": "REPEATED", "value": "second"},
    ],
    "steps": [{"name": "script", "script": ["make"], "timeout": 600, "when": "on_success"}],
    "image": {"name": "runnerctl/python:3.11", "entrypoint": None, "pull_policy": ["never"]},
    "artifacts": [
        {"name": "", "paths": ["dist/"], "when": "on_success", "artifact_type": "archive"}
    ],
    "dependencies": [
        {"id": 41, "name": "prep", "token": TOKEN, "artifacts_file": {"filename": "a.zip"}},
        {"id": 40, "name": "lint", "token": TOKEN},
    ],
    "features": {"failure_reasons": ["script_failure", "image_pull_failure"]},
}


def test_parse_job_reads_the_job_response() -> None:
    job = parse_job(PAYLOAD)
    assert (job.id, job.name, job.project_path, job.timeout) == (42, "build", "grp/app", 600)
    assert job.git.refspecs == ("+refs/pipelines/3:refs/pipelines/3",)
    assert job.image == "runnerctl/python:3.11"
    assert job.image_pull_policy == ("never",)
    assert job.variable("REPEATED") == "second"
    assert job.masked_values == (TOKEN,)
    assert [d.has_artifacts for d in job.dependencies] == [True, False]
    assert job.artifacts[0].paths == ("dist/",)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("script_failure", "script_failure"),
        ("job_execution_timeout", "job_execution_timeout"),
        ("image_pull_failure", "image_pull_failure"),
        ("runner_configuration_error", "script_failure"),
        ("something_new", "unknown_failure"),
    ],
)
def test_failure_reasons_are_mapped_like_gitlab_runner(reason: str, expected: str) -> None:
    supported = frozenset({"script_failure", "image_pull_failure"})
    assert map_failure_reason(reason, supported) == expected
    assert map_failure_reason("image_pull_failure", frozenset()) == "runner_system_failure"


def test_base_url_strips_slash_and_ci() -> None:
    assert base_url("https://gitlab.example.com/ci/") == "https://gitlab.example.com"
    assert base_url("http://127.0.0.1:8929/") == "http://127.0.0.1:8929"


def test_clone_urls_never_carry_the_token() -> None:
    job = parse_job(PAYLOAD)
    assert clone_url_for(job, None) == "http://127.0.0.1:8929/grp/app.git"
    assert (
        clone_url_for(job, "https://git.internal:8443/") == "https://git.internal:8443/grp/app.git"
    )
    assert strip_credentials("http://u:p@h/x.git") == "http://h/x.git"
    env = git_env({"PATH": "/bin"}, TOKEN)
    assert TOKEN not in CREDENTIAL_HELPER
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert TOKEN in env.values()  # only in the environment of git, read by the helper


def test_masker_masks_values_and_prefixed_tokens() -> None:
    masker = Masker(["s3cret-value"], ["glpat-", "glcbt-"])
    text = masker("a s3cret-value b glpat-AbCdEf123456 c glcbt-64_xyz")
    assert text == "a [MASKED] b glpat-[MASKED] c glcbt-[MASKED]"
    assert Masker(["abc"], [])("abc") == "abc"  # too short to mask safely


class FakeClient:
    """Records PATCHes; answers like the sandbox (202, 416 with Range, 403 when canceled)."""

    def __init__(self) -> None:
        self.stored = b""
        self.patches: list[tuple[int, bytes]] = []
        self.canceled = threading.Event()
        self.lose_next = False

    def patch_trace(self, job_id: int, token: str, data: bytes, start: int) -> PatchResult:
        self.patches.append((start, data))
        if self.canceled.is_set():
            return PatchResult(403, None, "canceled", None)
        if start != len(self.stored):
            return PatchResult(416, len(self.stored), "running", None)
        if self.lose_next:  # GitLab kept only half of it
            self.lose_next = False
            self.stored += data[: len(data) // 2]
            return PatchResult(416, len(self.stored), "running", None)
        self.stored += data
        return PatchResult(202, len(self.stored), "running", 0.05)

    def update_job(self, job_id: int, token: str, state: str, trace: bytes) -> UpdateResult:
        return UpdateResult(200, "running")


def test_trace_streams_masked_whole_lines_and_resumes_after_416() -> None:
    client = FakeClient()
    trace = JobTrace(client, 1, TOKEN, Masker(["hunter2-secret"], ["glcbt-"]))  # type: ignore[arg-type]
    trace.write("password is hunt")
    trace.write("er2-secret and token " + TOKEN + "\nnext line\n")
    client.lose_next = True
    trace.write("partial without newline")
    data = trace.finish(timeout=5)
    assert b"hunter2" not in data
    assert TOKEN.encode() not in data
    assert data == (
        b"password is [MASKED] and token glcbt-[MASKED]\nnext line\npartial without newline"
    )
    assert client.stored == data
    assert all(b"hunt" not in chunk or b"[MASKED]" in chunk for _, chunk in client.patches)


def test_trace_sees_a_canceled_job() -> None:
    client = FakeClient()
    client.canceled.set()
    trace = JobTrace(client, 1, TOKEN, Masker([], []), interval=0.05)  # type: ignore[arg-type]
    trace.line("hello")
    assert trace.aborted.wait(5)
    assert trace.abort_status == "canceled"
    trace.finish(timeout=2)


def test_render_script_echoes_and_quotes() -> None:
    script = render_script(
        ("echo 'hi'", "make\nmake install"),
        exports=[("A", "it's"), ("BAD-NAME", "x"), ("B", "$HOME")],
        workdir="/builds/grp/app",
    )
    assert "set -e\n" in script
    assert "export A='it'\"'\"'s'\n" in script
    assert "BAD-NAME" not in script
    assert "export B='$HOME'\n" in script  # values are literal, never expanded
    assert "cd '/builds/grp/app'\n" in script
    assert "$ make # collapsed multi-line command" in script


@pytest.mark.parametrize(("seconds", "text"), [(3, "3s"), (90, "1m30s"), (3600, "1h0m0s")])
def test_go_duration(seconds: int, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0, None), ("", None), (1024, 1024), ("512m", 512 << 20), ("1.5g", 3 << 29)],
)
def test_parse_size(value: object, expected: int | None) -> None:
    assert parse_size(value, what="memory") == expected


def test_parse_size_refuses_garbage() -> None:
    with pytest.raises(ConfigError, match="not a size"):
        parse_size("lots", what="memory")


def test_doublestar_patterns_like_allowed_images() -> None:
    assert _doublestar("runnerctl/*", "runnerctl/python:3.11")
    assert not _doublestar("runnerctl/*", "evil/runnerctl/python")
    assert _doublestar("registry.local/**", "registry.local/a/b:1")
    assert not _doublestar("python:3.?", "python:3.11")


def test_docker_connect_messages_are_the_cli_wording() -> None:
    assert docker_connect_message("unix:///x.sock", "No such file") == (
        "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"
    )
    denied = docker_connect_message("unix:///var/run/docker.sock", "Permission denied")
    assert denied.startswith(
        "permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock"
    )
    assert denied.endswith("dial unix /var/run/docker.sock: connect: permission denied")


BASE = """concurrent = 2
check_interval = 1

[[runners]]
  name = "one"
  url = "http://127.0.0.1:8929"
  token = "glrt-t1_aaaaaaaaaaaaaaaaaaaa"
  executor = "docker"
  limit = 3
  [runners.docker]
    image = "runnerctl/python:3.11"
    privileged = PRIV
    memory = "256m"
    cpus = "1.5"
    shm_size = 1048576
    extra_hosts = ["gitlab.local:127.0.0.1"]
"""


def test_load_setup_narrows_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE.replace("PRIV", "false"))
    setup = load_setup(path)
    assert (setup.concurrent, setup.check_interval) == (2, 1.0)
    (entry,) = setup.runners
    assert (entry.name, entry.limit, entry.short_token) == ("one", 3, "t1_aaaaa")
    assert entry.docker is not None
    assert (entry.docker.memory, entry.docker.cpus, entry.docker.shm_size) == (
        256 << 20,
        1.5,
        1 << 20,
    )
    assert entry.docker.extra_hosts == ("gitlab.local:127.0.0.1",)


def test_load_setup_refuses_privileged_and_invalid(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BASE.replace("PRIV", "true"))
    with pytest.raises(ConfigError, match="privileged = true is refused") as info:
        load_setup(path)
    assert info.value.exit_code == 3
    path.write_text(BASE.replace("PRIV", '"yes"'))
    with pytest.raises(ConfigError, match="not a valid gitlab-runner config"):
        load_setup(path)
    path.write_text("concurrent = 1\n")
    with pytest.raises(ConfigError, match="no \\[\\[runners\\]\\] entry"):
        load_setup(path)


def test_artifacts_round_trip_keeps_modes_and_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "dist" / "sub").mkdir(parents=True)
    (root / "dist" / "a.txt").write_text("a")
    (root / "dist" / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (root / "dist" / "sub" / "run.sh").chmod(0o755)
    (root / "dist" / "skip.log").write_text("x")
    (root / "report.xml").write_text("<testsuite/>")
    lines: list[str] = []
    spec = ArtifactSpec(name="", paths=("dist/", "missing/*.bin"), exclude=("dist/*.log",))
    entries = art.collect(root, spec, lines.append, lines.append)
    assert entries == ["dist/", "dist/sub/", "dist/a.txt", "dist/sub/run.sh"]
    assert lines[0] == "dist/: found 4 matching artifact files and directories"
    assert lines[1].startswith("missing/*.bin: no matching files")
    archive = tmp_path / "a.zip"
    art.write_zip(root, entries, archive)
    out = tmp_path / "out"
    assert art.extract_zip(archive, out) == 2
    assert (out / "dist" / "sub" / "run.sh").stat().st_mode & 0o777 == 0o755
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", "no")
    assert art.extract_zip(evil, out) == 0
    assert not (tmp_path / "escaped.txt").exists()
    gz = tmp_path / "junit.gz"
    art.write_gzip(root, ["report.xml"], gz)
    assert gzip.decompress(gz.read_bytes()) == b"<testsuite/>"


def test_trace_stops_collecting_at_the_output_limit() -> None:
    client = FakeClient()
    trace = JobTrace(client, 1, TOKEN, Masker([], []), limit=20)  # type: ignore[arg-type]
    trace.write("0123456789\n0123456789\n0123456789\n")
    trace.line("after the limit")
    data = trace.finish(timeout=5)
    assert data.startswith(b"0123456789\n012345678\n")
    assert b"Job's log exceeded limit of 20 bytes." in data
    assert b"after the limit" not in data
    assert client.stored == data
