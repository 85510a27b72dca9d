"""``runnerctl smoke`` refuses bad options with exit 2 before it talks to GitLab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.smoke import smoke_sentence
from provisioner.smoke import events as ev
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


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            ev.ProjectReady("root/runnerctl-smoke", created=True),
            "project root/runnerctl-smoke created",
        ),
        (ev.ProjectReady("ops/smoke", created=False), "project ops/smoke exists"),
        (
            ev.KeyPairReady(generated=True),
            "cosign key pair generated and stored as CI/CD variables (password masked)",
        ),
        (
            ev.KeyPairReady(generated=False),
            "cosign key pair found in the project's CI/CD variables",
        ),
        (
            ev.TemplateSynced(pushed=True, files=9, commit="0123456789abcdef"),
            "smoke project pushed (9 files, commit 01234567)",
        ),
        (ev.TemplateSynced(pushed=False), "smoke project is up to date"),
        (
            ev.PipelineCreated(12, "http://127.0.0.1:8929/root/s/-/pipelines/12"),
            "pipeline #12 created: http://127.0.0.1:8929/root/s/-/pipelines/12",
        ),
        (ev.CheckFinished("pypi registry", passed=True), "check pypi registry: ok"),
        (
            ev.CheckFinished("altered copy rejected", passed=False),
            "check altered copy rejected: FAILED",
        ),
        (ev.OldVersionsDeleted(3, keep=5), "deleted 3 old smoke versions (keeping 5)"),
    ],
)
def test_the_cli_owns_the_wording_of_smoke_events(event: ev.SmokeEvent, line: str) -> None:
    assert smoke_sentence(event) == line


def test_ctrl_c_during_smoke_says_the_pipeline_was_canceled_and_writes_junit(
    cli: Cli, tmp_path: Path
) -> None:
    from provisioner.cli.context import AppContext, Factories
    from provisioner.gitlab.models import ConnectionSettings, Variable

    from .fakes import FakeGitLab

    class CtrlC(FakeGitLab):
        """Ctrl-C at the second poll, once the first jobs are known."""

        seen = 0

        def pipeline_jobs(self, project_id: int, pipeline_id: int) -> Any:
            self.seen += 1
            if self.seen == 2:
                raise KeyboardInterrupt
            return super().pipeline_jobs(project_id, pipeline_id)

    fake = CtrlC(settings=ConnectionSettings(url="https://gitlab.example", token="glpat-x"))
    fake.variables.update(
        {
            "COSIGN_PRIVATE_KEY": Variable("COSIGN_PRIVATE_KEY", "priv", "file"),
            "COSIGN_PUBLIC_KEY": Variable("COSIGN_PUBLIC_KEY", "pub", "file"),
            "COSIGN_PASSWORD": Variable("COSIGN_PASSWORD", "pw", masked=True),
        }
    )
    junit = tmp_path / "smoke.xml"
    code, out, err = cli(
        "smoke", "--tag", "t1", "--junit", str(junit),
        env={"GITLAB_URL": "https://gitlab.example", "GITLAB_TOKEN": "glpat-unit0000000000000000"},
        app=AppContext(factories=Factories(gitlab=lambda _settings: fake)),
    )  # fmt: skip
    assert code == 130
    assert "Interrupted: pipeline #101 canceled" in err
    assert fake.cancelled == [101]
    assert "Smoke interrupted: pipeline #101 canceled" in out
    report = junit.read_text()
    assert '<failure message="stage test running: pipeline #101 canceled" />' in report
