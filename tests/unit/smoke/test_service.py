"""run_smoke with an in-memory GitLab: failure, timeout, key reuse, template push, retention."""

from __future__ import annotations

from itertools import count

import pytest

from provisioner.errors import UsageError
from provisioner.events import NULL_REPORTER, Event
from provisioner.gitlab.models import Package, Variable
from provisioner.secrets import redact
from provisioner.smoke import service
from provisioner.smoke.events import (
    CheckFinished,
    JobsChanged,
    KeyPairReady,
    PipelineCreated,
    ProjectReady,
    TemplateSynced,
)
from provisioner.smoke.service import (
    SigningMode,
    SmokeRequest,
    SmokeStatus,
    how_to_look,
    parse_timeout,
    run_smoke,
)
from provisioner.smoke.signing import KeyPair
from provisioner.smoke.template import MARKER_FILE, template_digest, template_files

from .fakes import FakeGitLab

URL = "http://127.0.0.1:8929"


def _keys(fake: FakeGitLab) -> None:
    fake.variables.update(
        {
            "COSIGN_PRIVATE_KEY": Variable("COSIGN_PRIVATE_KEY", "priv", "file"),
            "COSIGN_PUBLIC_KEY": Variable("COSIGN_PUBLIC_KEY", "pub", "file"),
            "COSIGN_PASSWORD": Variable("COSIGN_PASSWORD", "pw", masked=True),
        }
    )


def _run(fake: FakeGitLab, request: SmokeRequest, events: list[Event] | None = None) -> object:
    ticks = count()
    return run_smoke(
        request,
        gitlab=fake,
        gitlab_url=URL,
        report=(events if events is not None else []).append,
        clock=lambda: float(next(ticks)),
        sleep=lambda _s: None,
    )


def test_failed_verify_is_a_result_with_the_trace_tail_and_skipped_later_stages() -> None:
    fake = FakeGitLab(final={"verify": "failed", "publish": "skipped"})
    _keys(fake)
    result = _run(fake, SmokeRequest(tag="t1", variables={"SMOKE_TAMPER": "wheel-after-sign"}))
    assert result.status is SmokeStatus.FAILED
    assert result.failing_job == "verify"
    assert result.message == "Pipeline #101 failed: job 'verify' (verify) failed."
    assert result.trace_tail.splitlines()[-1] == "Error: invalid signature"
    assert len(result.trace_tail.splitlines()) == service.TRACE_TAIL_LINES
    assert {s.name: s.status for s in result.stages}["publish"] == "skipped"
    assert result.checks == ()
    assert fake.pipeline_vars == [
        {
            "SMOKE_RUNNER_TAG": "t1",
            "PYTHON_IMAGE": "runnerctl/python:3.11",
            "SMOKE_SIGNING": "key",
            "SMOKE_TAMPER": "wheel-after-sign",
        }
    ]


def test_no_runner_times_out_with_gitlabs_stuck_text_and_cancels() -> None:
    fake = FakeGitLab(never_picked=True)
    _keys(fake)
    result = _run(fake, SmokeRequest(tag="nobody", timeout=5))
    assert result.status is SmokeStatus.TIMED_OUT
    assert result.message.startswith("No runner picked up the job 'test' within 5 s.")
    assert result.message.endswith(
        "This job is stuck because you don't have any active runners online or available "
        "with any of these tags assigned to them: nobody"
    )
    assert fake.cancelled == [101]


def test_first_run_creates_project_keys_and_pushes_then_second_run_reuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeGitLab(final={"test": "failed"})
    generated: list[int] = []

    def generate() -> KeyPair:
        generated.append(1)
        return KeyPair("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----", "PUB", "s3cret-pw-123")

    monkeypatch.setattr(service.signing, "generate_key_pair", generate)
    secrets: list[str] = []
    first = run_smoke(
        SmokeRequest(tag="t"),
        gitlab=fake,
        gitlab_url=URL,
        on_secret=secrets.append,
        sleep=lambda _s: None,
    )
    assert first.project == "root/runnerctl-smoke"
    assert first.key_created
    assert first.pushed
    assert secrets == ["s3cret-pw-123"]
    assert fake.variables["COSIGN_PRIVATE_KEY"].variable_type == "file"
    assert fake.variables["COSIGN_PUBLIC_KEY"].variable_type == "file"
    assert fake.variables["COSIGN_PASSWORD"].masked
    assert fake.files[MARKER_FILE].strip() == template_digest(template_files())

    fake.polls = 0
    second = _run(fake, SmokeRequest(tag="t"))
    assert not second.key_created
    assert not second.pushed
    assert generated == [1]
    assert fake.commits == 1


def test_keyless_refused_off_gitlab_com_before_anything_changes() -> None:
    fake = FakeGitLab()
    with pytest.raises(UsageError, match=r"gitlab\.com only"):
        _run(fake, SmokeRequest(tag="t", signing=SigningMode.KEYLESS))
    assert fake.projects == {}
    assert fake.pipeline_vars == []


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SmokeRequest(tag=" "), "No runner tag"),
        (SmokeRequest(tag="t", keep=0), "--keep"),
        (SmokeRequest(tag="t", timeout=0), "--timeout"),
    ],
)
def test_bad_requests_are_usage_errors(request_: SmokeRequest, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _run(FakeGitLab(), request_)


def test_prune_keeps_the_newest_versions_of_the_package_only() -> None:
    fake = FakeGitLab()
    fake.packages = [
        Package(1, "pkg", "0.1.0.dev1", "pypi"),
        Package(2, "pkg", "0.1.0.dev1", "generic"),
        Package(3, "pkg", "0.1.0.dev10", "pypi"),
        Package(4, "pkg", "0.1.0.dev2", "pypi"),
        Package(5, "other", "0.1.0.dev1", "pypi"),
    ]
    project = fake.create_project("root/pkg")
    deleted = service._prune(project, "pkg", 2, fake, NULL_REPORTER)
    assert deleted == ("0.1.0.dev1",)
    assert sorted(fake.deleted) == [1, 2]


def test_parse_timeout() -> None:
    assert parse_timeout("15m") == 900
    assert parse_timeout("90s") == 90
    assert parse_timeout("2") == 2
    assert parse_timeout("1h") == 3600
    with pytest.raises(UsageError, match="Cannot read the timeout"):
        parse_timeout("soon")


def test_how_to_look_names_the_registries() -> None:
    fake = FakeGitLab(final={"test": "failed"})
    _keys(fake)
    result = _run(fake, SmokeRequest(tag="t"))
    lines = how_to_look(result)
    assert lines[0] == (
        f'curl -u "any:$GITLAB_TOKEN" {URL}/api/v4/projects/1/packages/pypi/simple/runnerctl-smoke/'
    )
    assert lines[1].endswith("/generic/runnerctl-smoke/0.1.0.dev1/cosign.pub")
    assert lines[2].startswith(
        f"pip download --no-deps --index-url {URL}/api/v4/projects/1/packages/pypi/simple "
        "runnerctl-smoke==0.1.0.dev1"
    )
    # What the CLI prints goes through the redactor: no line may look like a secret to it.
    assert [redact(line) for line in lines] == list(lines)


def test_a_run_reports_typed_events_in_order_and_no_sentences() -> None:
    fake = FakeGitLab(final={"test": "failed"})
    _keys(fake)
    events: list[Event] = []
    _run(fake, SmokeRequest(tag="t"), events)
    jobs = [e for e in events if isinstance(e, JobsChanged)]
    others = [e for e in events if not isinstance(e, JobsChanged)]
    pushed = others[2]
    assert isinstance(pushed, TemplateSynced)
    assert len(pushed.commit) >= 8
    assert others[:3] == [
        ProjectReady("root/runnerctl-smoke", created=True),
        KeyPairReady(generated=False),
        TemplateSynced(pushed=True, files=len(template_files()), commit=pushed.commit),
    ]
    assert isinstance(others[3], PipelineCreated)
    assert others[3].pipeline_id == 101
    assert jobs, "the job table was never updated"
    # A failed pipeline is not checked further: no registry check was reported.
    assert not any(isinstance(e, CheckFinished) for e in events)
    assert all(not isinstance(e, str) for e in events)


def test_ctrl_c_while_following_cancels_the_pipeline_and_keeps_what_ran(tmp_path: object) -> None:
    from pathlib import Path

    from provisioner.smoke.junit import write_junit

    fake = FakeGitLab()
    _keys(fake)
    ticks = count()

    def ctrl_c(_seconds: float) -> None:
        raise KeyboardInterrupt

    result = run_smoke(
        SmokeRequest(tag="t1"),
        gitlab=fake,
        gitlab_url=URL,
        clock=lambda: float(next(ticks)),
        sleep=ctrl_c,
    )
    assert result.status is SmokeStatus.INTERRUPTED
    assert result.message == "pipeline #101 canceled"
    assert fake.cancelled == [101]
    assert result.checks == ()
    assert {s.name for s in result.stages} >= {"test", "build"}
    report = Path(str(tmp_path)) / "junit.xml"
    write_junit(result, report)
    assert "pipeline #101 canceled" in report.read_text()
