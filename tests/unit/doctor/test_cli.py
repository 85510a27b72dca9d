"""``runnerctl doctor`` through the CLI: inputs, exact output, JSON contract, exit codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.context import AppContext, Factories
from provisioner.cli.doctor import EXIT_FINDINGS, parse_since
from provisioner.doctor import JobRef
from provisioner.errors import UsageError
from provisioner.gitlab.jobs import JobDetail
from provisioner.gitlab.models import ConnectionSettings, FailureReason, JobStatus, VerifyResult
from tests.conftest import Cli

TOKEN = "Qq1plainAccessToken2468"
ENV = {"GITLAB_URL": "https://gitlab.example.com", "GITLAB_TOKEN": TOKEN}
LOG = (
    "Running with gitlab-runner 17.11.0\n"
    "\x1b[0Ksection_start:1:get_sources\r\x1b[0K\x1b[36;1mGetting source\x1b[0m\n"
    "fatal: unable to access 'http://nonexistent.invalid/grp/app.git/': "
    "Could not resolve host: nonexistent.invalid\n"
    "\x1b[31;1mERROR: Job failed: exit code 128\x1b[0;m\n"
)
EVIDENCE = (
    "fatal: unable to access 'http://nonexistent.invalid/grp/app.git/': "
    "Could not resolve host: nonexistent.invalid"
)


def test_a_saved_log_with_a_finding_exits_10_with_the_evidence_line(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "job.log"
    path.write_text(LOG)
    code, out, err = cli("doctor", "--log", str(path))
    assert code == EXIT_FINDINGS == 10
    assert err == ""
    assert out.splitlines()[:3] == [
        f"doctor: {path} (4 lines)",
        "1. [DNS/network] a host name does not resolve (matched)",
        f"   line 3: {EVIDENCE}",
    ]
    assert "   fix:" in out


def test_json_has_the_contract_shape_best_finding_first(cli: Cli) -> None:
    code, out, _ = cli("doctor", "--log", "-", "--output", "json", input=LOG)
    assert code == 10
    document = json.loads(out)
    (finding,) = document["findings"]
    assert set(finding) >= {"id", "category", "title", "evidence", "causes", "fix", "confidence"}
    assert finding["id"] == "could-not-resolve-host"
    assert finding["category"] == "DNS/network"
    assert finding["evidence"] == {"line": 3, "text": EVIDENCE}
    assert finding["confidence"] == "matched"
    assert isinstance(finding["causes"], list)
    assert isinstance(finding["fix"], list)
    assert document["source"] == "stdin"
    assert document["job"] is None


def test_no_known_failure_says_so_and_exits_0(cli: Cli) -> None:
    code, out, _ = cli("doctor", "--log", "-", input="$ make\nall good\n")
    assert code == 0
    assert out == "doctor: stdin (2 lines)\nNo known failure found in this log.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name one thing to diagnose"),
        (("--log", "-", "--group", "g"), "name one thing to diagnose"),
        (("grp/app#1", "--job", "2"), "JOB and --project/--job name the job twice"),
        (("--project", "grp/app"), "--project and --job go together"),
        (("not-a-job",), "not a job: 'not-a-job'"),
        (("--group", "g", "--since", "yesterday"), "--since 'yesterday' is not a duration"),
    ],
)
def test_bad_input_is_a_usage_error(cli: Cli, args: tuple[str, ...], message: str) -> None:
    code, out, err = cli("doctor", *args, env=ENV)
    assert code == 2
    assert out == ""
    assert err.startswith(f"Error: {message}")
    assert "\nHint: " in err


def test_an_unreadable_log_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("doctor", "--log", str(tmp_path / "missing.log"))
    assert code == 2
    assert err.startswith(f"Error: cannot read {tmp_path / 'missing.log'}: No such file")


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("https://gitlab.example.com/grp/sub/app/-/jobs/42", JobRef("grp/sub/app", 42)),
        ("http://127.0.0.1:8080/root/proj-1/-/jobs/7/", JobRef("root/proj-1", 7)),
        ("grp/app#9", JobRef("grp/app", 9)),
    ],
)
def test_job_references(text: str, ref: JobRef) -> None:
    assert JobRef.parse(text) == ref


def test_since() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now=now) == datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now=now) == datetime(2026, 12, 3, 11, 30, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_since("1y", now=now)


class FakeGitLab:
    """The job calls doctor makes, answered from memory."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.calls: list[tuple[str, Any]] = []

    def job_detail(self, project: str, job_id: int) -> JobDetail:
        self.calls.append(("job", (project, job_id)))
        return JobDetail(
            id=job_id,
            project=project,
            name="build",
            stage="build",
            status=JobStatus.FAILED,
            failure_reason=FailureReason.SCRIPT_FAILURE,
            runner_id=5,
            runner="shell-1",
            tags=("linux",),
            web_url=f"https://gitlab.example.com/{project}/-/jobs/{job_id}",
        )

    def job_log(self, project: str, job_id: int) -> str:
        self.calls.append(("log", (project, job_id)))
        return LOG

    def group_failed_jobs(self, group: str, *, since: datetime | None) -> list[JobDetail]:
        self.calls.append(("group", (group, since)))
        return [self.job_detail(f"{group}/app", 1), self.job_detail(f"{group}/sub/lib", 2)]


def _app() -> tuple[AppContext, list[FakeGitLab]]:
    made: list[FakeGitLab] = []

    def factory(settings: ConnectionSettings) -> Any:
        made.append(FakeGitLab(settings))
        return made[-1]

    return AppContext(factories=Factories(gitlab=factory)), made


def test_a_job_by_url_is_fetched_and_keyed_on_its_failure_reason(cli: Cli) -> None:
    app, made = _app()
    url = "https://gitlab.example.com/grp/app/-/jobs/42"
    code, out, _ = cli("doctor", url, "-o", "json", env=ENV, app=app)
    assert code == 10
    document = json.loads(out)
    assert made[0].calls == [("job", ("grp/app", 42)), ("log", ("grp/app", 42))]
    assert document["job"]["failure_reason"] == "script_failure"
    assert document["job"]["runner"] == "shell-1"
    assert document["findings"][0]["id"] == "could-not-resolve-host"
    assert TOKEN not in out


def test_a_job_by_project_and_id_in_text(cli: Cli) -> None:
    app, _ = _app()
    code, out, _ = cli("doctor", "--project", "grp/app", "--job", "42", env=ENV, app=app)
    assert code == 10
    assert out.splitlines()[1] == (
        "job 42 'build' of grp/app: failed, failure_reason script_failure, stage build, "
        "runner shell-1, tags linux"
    )


def test_group_scan_counts_by_category_and_runner(cli: Cli) -> None:
    app, made = _app()
    code, out, _ = cli("doctor", "--group", "grp", "--since", "2h", "-o", "json", env=ENV, app=app)
    assert code == 10
    report = json.loads(out)
    assert [j["project"] for j in report["jobs"]] == ["grp/app", "grp/sub/lib"]
    assert report["by_category"] == {"DNS/network": 2}
    assert report["by_runner"] == {"shell-1": {"DNS/network": 2}}
    assert report["runner_faults"] == 2
    assert made[0].calls[0][0] == "group"


class FakeSession:
    """An SSH session whose commands run here: the probe script really runs."""

    def __init__(self, config_text: str) -> None:
        self.config_text = config_text
        self.commands: list[tuple[str, bytes | None]] = []

    def sftp(self, *, as_root: bool = True) -> Any:
        session = self

        class _SFTP:
            def read_text(self, path: str) -> str | None:
                session.commands.append((f"read {path}", None))
                return session.config_text

            def close(self) -> None:
                pass

        return _SFTP()

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 120) -> Any:
        import subprocess
        import sys

        from provisioner.ssh import CommandResult

        self.commands.append((command, stdin))
        assert command == "python3 -"
        done = subprocess.run(
            [sys.executable, "-"], input=stdin, capture_output=True, timeout=60, check=False
        )
        return CommandResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def _doctor_on_host(cli: Cli, session: Any, verifier: Any) -> tuple[int, str, str]:
    """``doctor --log - --host ops@vm-1 -o json`` with a fake SSH session and token verifier."""
    app = AppContext(
        factories=Factories(
            ssh=lambda _target, _options: session,
            gitlab=lambda _settings: verifier,
        )
    )
    return cli(
        "doctor", "--log", "-", "--host", "ops@vm-1", "-o", "json", app=app, env=ENV, input=LOG
    )


def test_host_probes_run_over_ssh_and_never_send_the_token(cli: Cli, tmp_path: Path) -> None:
    token = "glrt-HostRunnerToken0123456789"
    config_text = (
        "concurrent = 1\n\n[[runners]]\n"
        'name = "vm-1"\nurl = "http://127.0.0.1:9"\n'
        f'token = "{token}"\nexecutor = "shell"\nbuilds_dir = "{tmp_path}"\n'
    )
    session = FakeSession(config_text)
    verified: list[str] = []

    class Verifier:
        def verify(self, sent: str) -> VerifyResult:
            verified.append(sent)
            return VerifyResult(valid=False)

    code, out, err = _doctor_on_host(cli, session, Verifier())
    assert code == 10, err
    document = json.loads(out)
    assert document["runner"] == "vm-1"
    # The log says a host did not resolve, but GitLab's host does on the runner host.
    assert document["findings"][0]["confidence"] == "probe-refuted"
    probes = {p["probe"]: p for p in document["probes"]}
    assert probes["dns@host"]["verdict"] == "pass"
    assert probes["tcp@host"]["verdict"] == "fail"  # nothing listens on port 9
    assert probes["verify@host"]["verdict"] == "fail"
    assert verified == [token]
    assert session.commands[0][0] == "read /etc/gitlab-runner/config.toml"
    script = session.commands[1][1]
    assert script is not None
    assert token.encode() not in script
    assert token not in out
    assert token not in err


def test_a_token_in_the_log_is_masked_in_the_evidence(cli: Cli) -> None:
    secret = "glcbt-64_abcdefghijklmnopqrstu"
    line = f"fatal: Authentication failed for 'https://gitlab-ci-token:{secret}@gl.example/a.git/'"
    code, out, err = cli("doctor", "--log", "-", "-o", "json", input=line + "\n")
    assert code == 10
    assert secret not in out + err
    evidence = json.loads(out)["findings"][0]["evidence"]
    assert evidence == {"line": 1, "text": line.replace(secret, "[MASKED]")}


class DockerHostSession(FakeSession):
    """A runner host whose docker refuses the login user: ``docker run`` works through sudo."""

    def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 120) -> Any:
        from provisioner.ssh import CommandResult

        if not command.startswith("docker "):
            return super().run(command, stdin=stdin, timeout=timeout)
        self.commands.append((command, stdin))
        denied = "permission denied while trying to connect to the Docker daemon socket"
        return CommandResult(1, "", denied)

    def sudo(self, command: str, *, stdin: bytes | None = None, timeout: float = 120) -> Any:
        import subprocess
        import sys

        from provisioner.ssh import CommandResult

        self.commands.append((f"sudo {command}", stdin))
        if command.startswith("docker image inspect"):
            return CommandResult(1, "", "Error: No such image: runnerctl/python:3.11")
        assert command.endswith(" python3 -")
        done = subprocess.run(
            [sys.executable, "-"], input=stdin, capture_output=True, timeout=60, check=False
        )
        return CommandResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_the_container_probe_runs_on_the_remote_host_on_the_runners_network(cli: Cli) -> None:
    config_text = (
        "concurrent = 1\n\n[[runners]]\n"
        'name = "dock-1"\nurl = "http://127.0.0.1:9"\ntoken = "glrt-DockerHostToken0123456"\n'
        'executor = "docker"\n[runners.docker]\nimage = "alpine:3.20"\nnetwork_mode = "ci-net"\n'
    )
    session = DockerHostSession(config_text)
    code, out, err = _doctor_on_host(cli, session, FakeVerifier())
    assert code == 10, err
    document = json.loads(out)
    assert document["findings"][0]["source"] == "job-log"
    probes = {p["probe"]: p for p in document["probes"]}
    assert probes["dns@container"]["verdict"] == "pass"
    assert probes["journal@container"]["verdict"] == "skip"
    docker_commands = [c for c, _ in session.commands if "docker" in c]
    assert docker_commands == [
        "docker image inspect runnerctl/python:3.11",
        "sudo docker image inspect runnerctl/python:3.11",
        "docker run --rm -i --network ci-net alpine:3.20 python3 -",
        "sudo docker run --rm -i --network ci-net alpine:3.20 python3 -",
    ]
    script = dict(session.commands)[
        "sudo docker run --rm -i --network ci-net alpine:3.20 python3 -"
    ]
    assert script is not None
    assert b'"where": "container"' in script
    assert b"glrt-" not in script


def test_a_container_that_cannot_run_is_a_skipped_probe(cli: Cli) -> None:
    config_text = (
        "concurrent = 1\n\n[[runners]]\n"
        'name = "dock-1"\nurl = "http://127.0.0.1:9"\ntoken = "glrt-DockerHostToken0123456"\n'
        'executor = "docker"\n[runners.docker]\nimage = "alpine:3.20"\n'
    )

    class NoDocker(FakeSession):
        def run(self, command: str, *, stdin: bytes | None = None, timeout: float = 120) -> Any:
            from provisioner.ssh import CommandResult

            if command.startswith("docker "):
                return CommandResult(127, "", "sh: 1: docker: not found")
            return super().run(command, stdin=stdin, timeout=timeout)

    code, out, err = _doctor_on_host(cli, NoDocker(config_text), FakeVerifier())
    assert code == 10, err
    probes = {p["probe"]: p for p in json.loads(out)["probes"]}
    assert probes["container"]["verdict"] == "skip"
    assert probes["container"]["evidence"] == (
        "the container probe failed on ops@vm-1 "
        "(docker run --rm -i --network bridge alpine:3.20 python3 -): sh: 1: docker: not found"
    )
    assert probes["dns@host"]["verdict"] == "pass"


class FakeVerifier:
    def verify(self, sent: str) -> VerifyResult:
        return VerifyResult(valid=sent.startswith("glrt-"), runner_id=7)
