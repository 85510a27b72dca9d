"""Pipelines from .gitlab-ci.yml: stages, when, needs, allow_failure, retry/cancel, errors."""

from __future__ import annotations

import subprocess
from typing import Any

import gitlab
import pytest

from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox

# These tests drive pipelines they create through the API, as runnerctl does; like the smoke
# template, their configuration keeps the commits' own push pipelines from starting.
API_ONLY = 'workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE != "push"\n'


def _setup(sandbox: RunningSandbox, ci: str) -> tuple[Any, RunnerClient]:
    gl = sandbox.gitlab()
    project = sandbox.new_project(files={".gitlab-ci.yml": API_ONLY + ci})
    assert gl.user is not None
    created = gl.user.runners.create(
        {"runner_type": "project_type", "project_id": project.id, "tag_list": [project.path]}
    )
    return project, RunnerClient(sandbox.url, created.token)


def _statuses(project: Any, pipeline_id: int) -> dict[str, str]:
    pipeline = project.pipelines.get(pipeline_id)
    return {j.name: j.status for j in pipeline.jobs.list(get_all=True)}


def _take(runner: RunnerClient) -> dict[str, Any]:
    resp = runner.request_job()
    assert resp.status_code == 201, resp.text
    job: dict[str, Any] = resp.json()
    return job


def test_stages_wait_and_when_rules(sandbox: RunningSandbox) -> None:
    ci = """
stages: [build, test, cleanup]
.base:
  tags: [TAG]
build:
  extends: .base
  stage: build
  script: [make]
unit:
  extends: .base
  stage: test
  script: [exit 1]
lint:
  extends: .base
  stage: test
  allow_failure: true
  script: [exit 1]
report:
  extends: .base
  stage: cleanup
  when: on_failure
  script: [echo failed]
always:
  extends: .base
  stage: cleanup
  when: always
  script: [echo always]
deploy:
  extends: .base
  stage: cleanup
  script: [echo never runs]
manual:
  extends: .base
  stage: cleanup
  when: manual
  script: [echo manual]
"""
    project, runner = _setup(sandbox, "")
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {
                    "action": "update",
                    "file_path": ".gitlab-ci.yml",
                    "content": API_ONLY + ci.replace("TAG", project.path),
                }
            ],
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})
    assert pipeline.status == "pending"
    assert _statuses(project, pipeline.id) == {
        "build": "pending",
        "unit": "created",
        "lint": "created",
        "report": "created",
        "always": "created",
        "deploy": "created",
        "manual": "created",
    }
    build = _take(runner)
    assert build["job_info"]["name"] == "build"
    assert runner.request_job().status_code == 204  # later stages wait
    assert project.pipelines.get(pipeline.id).status == "running"
    runner.run_job(build)
    first, second = _take(runner), _take(runner)
    assert {first["job_info"]["name"], second["job_info"]["name"]} == {"unit", "lint"}
    runner.run_job(first, state="failed", failure_reason="script_failure", exit_code=1)
    runner.run_job(second, state="failed", failure_reason="script_failure", exit_code=1)
    statuses = _statuses(project, pipeline.id)
    assert statuses["deploy"] == "skipped"
    assert statuses["manual"] == "skipped"
    assert statuses["report"] == "pending"
    assert statuses["always"] == "pending"
    for _ in range(2):
        runner.run_job(_take(runner))
    final = project.pipelines.get(pipeline.id)
    assert final.status == "failed"
    unit = project.jobs.get(next(j for j in final.jobs.list() if j.name == "unit").id)
    assert unit.failure_reason == "script_failure"
    assert unit.allow_failure is False
    assert final.finished_at is not None
    assert final.detailed_status["group"] == "failed"


def test_needs_skip_stage_order(sandbox: RunningSandbox) -> None:
    ci = """
stages: [a, b, c]
slow:
  stage: a
  tags: [TAG]
  script: [sleep 1]
fast:
  stage: a
  tags: [TAG]
  script: [echo ok]
after-fast:
  stage: b
  needs: [fast]
  tags: [TAG]
  script: [echo ok]
last:
  stage: c
  tags: [TAG]
  script: [echo ok]
"""
    project, runner = _setup(sandbox, "x: 1")
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {
                    "action": "update",
                    "file_path": ".gitlab-ci.yml",
                    "content": API_ONLY + ci.replace("TAG", project.path),
                }
            ],
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})
    taken = {job["job_info"]["name"]: job for job in (_take(runner), _take(runner))}
    assert set(taken) == {"slow", "fast"}
    assert _statuses(project, pipeline.id)["after-fast"] == "created"
    runner.run_job(taken["fast"])
    # "after-fast" needs only "fast": it runs while stage a is still busy; "last" waits.
    statuses = _statuses(project, pipeline.id)
    assert statuses["after-fast"] == "pending"
    assert statuses["last"] == "created"
    after = _take(runner)
    assert after["job_info"]["name"] == "after-fast"
    assert [d["name"] for d in after["dependencies"]] == ["fast"]
    assert "artifacts_file" not in after["dependencies"][0]  # fast uploaded none
    runner.run_job(after)
    runner.run_job(taken["slow"])
    runner.run_job(_take(runner))
    assert project.pipelines.get(pipeline.id).status == "success"


def test_manual_job_play_and_success(sandbox: RunningSandbox) -> None:
    project, runner = _setup(sandbox, "")
    ci = f"""
build:
  stage: build
  tags: [{project.path}]
  script: [echo ok]
release:
  stage: deploy
  tags: [{project.path}]
  when: manual
  script: [echo ok]
"""
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {"action": "update", "file_path": ".gitlab-ci.yml", "content": API_ONLY + ci}
            ],
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})
    runner.run_job(_take(runner))
    pipeline = project.pipelines.get(pipeline.id)
    assert pipeline.status == "success"  # a manual job with allow_failure does not block
    release = next(j for j in pipeline.jobs.list() if j.name == "release")
    assert release.status == "manual"
    project.jobs.get(release.id, lazy=True).play()
    assert project.jobs.get(release.id).status == "pending"
    played = _take(runner)
    assert played["id"] == release.id
    runner.run_job(played)
    assert project.pipelines.get(pipeline.id).status == "success"


def test_retry_and_cancel(sandbox: RunningSandbox) -> None:
    project, runner = _setup(sandbox, "")
    ci = f"""
build:
  stage: build
  tags: [{project.path}]
  script: [echo ok]
test:
  stage: test
  tags: [{project.path}]
  script: [echo ok]
"""
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {"action": "update", "file_path": ".gitlab-ci.yml", "content": API_ONLY + ci}
            ],
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})
    job = _take(runner)
    runner.run_job(job, state="failed", failure_reason="script_failure", exit_code=2)
    assert project.pipelines.get(pipeline.id).status == "failed"
    assert _statuses(project, pipeline.id)["test"] == "skipped"
    retried = project.jobs.get(job["id"], lazy=True).retry()
    assert retried["id"] != job["id"]
    assert retried["status"] == "pending"
    again = _take(runner)
    assert again["id"] == retried["id"]
    runner.run_job(again)
    test_job = _take(runner)
    assert test_job["job_info"]["name"] == "test"
    project.pipelines.get(pipeline.id).cancel()
    assert project.jobs.get(test_job["id"]).status == "canceled"
    # The runner learns about the cancel on its next update.
    resp = runner.patch_trace(test_job, b"more\n", 0)
    assert resp.status_code == 403
    assert resp.headers["Job-Status"] == "canceled"
    assert project.pipelines.get(pipeline.id).status == "canceled"
    with_retried = project.pipelines.get(pipeline.id).jobs.list(include_retried=True)
    assert len(with_retried) == 3


def test_filters_order_and_latest(sandbox: RunningSandbox) -> None:
    project, _ = _setup(sandbox, "job:\n  script: [echo ok]\n")
    project.commits.create(
        {
            "branch": "dev",
            "start_branch": "main",
            "commit_message": "dev",
            "actions": [{"action": "create", "file_path": "d", "content": "d"}],
        }
    )
    p1 = project.pipelines.create({"ref": "main"})
    p2 = project.pipelines.create({"ref": "dev"})
    p3 = project.pipelines.create({"ref": "main"})
    assert [p.id for p in project.pipelines.list(get_all=True)] == [p3.id, p2.id, p1.id]
    assert [p.id for p in project.pipelines.list(ref="main", sort="asc", get_all=True)] == [
        p1.id,
        p3.id,
    ]
    assert [p.id for p in project.pipelines.list(status="pending", ref="dev")] == [p2.id]
    assert project.pipelines.latest(ref="main").id == p3.id
    assert (p3.iid, p1.iid) == (3, 1)
    newest = project.pipelines.list(
        ref="main", order_by="id", sort="desc", per_page=1, get_all=False
    )
    assert [p.id for p in newest] == [p3.id]


def test_pipeline_errors_as_gitlab_reports_them(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files={".gitlab-ci.yml": "job: [unclosed\n"})
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.pipelines.create({"ref": "main"})
    assert err.value.response_code == 400
    assert isinstance(err.value.error_message, dict)
    assert err.value.error_message["base"]
    with pytest.raises(gitlab.GitlabCreateError) as missing_ref:
        project.pipelines.create({"ref": "nope"})
    assert missing_ref.value.error_message == {"base": ["Reference not found"]}
    empty = sandbox.new_project(files={"README.md": "x"})
    with pytest.raises(gitlab.GitlabCreateError) as no_config:
        empty.pipelines.create({"ref": "main"})
    assert no_config.value.error_message == {"base": ["Missing CI config file"]}
    no_jobs = sandbox.new_project(files={".gitlab-ci.yml": "variables: {A: b}\n"})
    with pytest.raises(gitlab.GitlabCreateError) as nothing:
        no_jobs.pipelines.create({"ref": "main"})
    assert nothing.value.error_message == {
        "base": ["jobs config should contain at least one visible job"]
    }


def test_pipeline_ref_is_in_the_repository(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files={".gitlab-ci.yml": "job:\n  script: [echo ok]\n"})
    pipeline = project.pipelines.create(
        {
            "ref": "main",
            "variables": [{"key": "DEPLOY", "value": "yes", "variable_type": "env_var"}],
        }
    )
    repo = sandbox.data_dir / "repos" / f"{project.id}.git"
    sha = subprocess.run(
        ["git", f"--git-dir={repo}", "rev-parse", f"refs/pipelines/{pipeline.id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert sha == pipeline.sha
    assert pipeline.before_sha == "0" * 40
    assert [v.key for v in pipeline.variables.list()] == ["DEPLOY"]


# push pipelines -----------------------------------------------------------------------------

PUSH_CI = "job:\n  tags: [$UNDEFINED_TAG, plain]\n  script: [echo push]\n"


def _commit(project: Any, message: str, content: str, path: str = "f.txt") -> Any:
    return project.commits.create(
        {
            "branch": "main",
            "commit_message": message,
            "actions": [{"action": "create", "file_path": path, "content": content}],
        }
    )


def test_api_commits_create_push_pipelines_honouring_skip_ci(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files={".gitlab-ci.yml": PUSH_CI})
    [first] = project.pipelines.list(get_all=True)
    assert first.source == "push"
    assert first.status == "pending"
    assert first.sha == project.commits.list(get_all=False)[0].id
    # An undefined variable in tags stays literal: the job waits for that very tag.
    [job] = project.pipelines.get(first.id).jobs.list(get_all=True)
    assert job.tag_list == ["$UNDEFINED_TAG", "plain"]
    for message in ("docs [ci skip]", "[SKIP CI] docs", "x [skip-ci]"):
        commit = _commit(project, message, message, path=sandbox.unique("f"))
        latest = project.pipelines.list(get_all=False, per_page=1)[0]
        assert latest.sha == commit.id
        assert latest.status == "skipped"
        assert latest.source == "push"
        assert project.pipelines.get(latest.id).jobs.list(get_all=True) == []
    # The one-file endpoints commit too.
    project.files.create(
        {"file_path": "g.txt", "branch": "main", "content": "g", "commit_message": "add g"}
    )
    latest = project.pipelines.list(get_all=False, per_page=1)[0]
    assert (latest.status, latest.source) == ("pending", "push")
    assert len(project.pipelines.list(get_all=True)) == 5


def test_workflow_rules_on_pipeline_source_keep_push_pipelines_away(
    sandbox: RunningSandbox,
) -> None:
    ci = (
        'workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE == "api"\n'
        "job:\n  tags: [$SMOKE_RUNNER_TAG]\n  script: [echo only-api]\n"
    )
    project = sandbox.new_project(files={".gitlab-ci.yml": ci})
    _commit(project, "more", "more")
    assert project.pipelines.list(get_all=True) == []
    created = project.pipelines.create(
        {"ref": "main", "variables": [{"key": "SMOKE_RUNNER_TAG", "value": "t1"}]}
    )
    assert created.source == "api"
    [job] = project.pipelines.get(created.id).jobs.list(get_all=True)
    assert job.tag_list == ["t1"]
    # No CI configuration at all: no pipeline either.
    plain = sandbox.new_project(files={"README.md": "r"})
    assert plain.pipelines.list(get_all=True) == []


def test_git_push_creates_push_pipelines_and_honours_ci_skip(
    sandbox: RunningSandbox, tmp_path: Any
) -> None:
    import os

    project = sandbox.new_project(files={".gitlab-ci.yml": PUSH_CI})
    host = sandbox.url.split("://")[1]
    remote = f"http://root:{sandbox.root_token}@{host}/{project.path_with_namespace}.git"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "P",
        "GIT_AUTHOR_EMAIL": "p@example.invalid",
        "GIT_COMMITTER_NAME": "P",
        "GIT_COMMITTER_EMAIL": "p@example.invalid",
    }
    work = tmp_path / "work"

    def git(*args: str) -> None:
        done = subprocess.run(
            ["git", "-c", "credential.helper=", *args],
            cwd=work if work.exists() else tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def pushed(name: str, *push_args: str) -> str:
        (work / name).write_text(name)
        git("add", name)
        git("commit", "-q", "-m", f"add {name}")
        git("push", "-q", *push_args, "origin", "HEAD:main")
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
        ).stdout.strip()

    git("clone", "-q", remote, str(work))
    before = len(project.pipelines.list(get_all=True))
    sha = pushed("a")
    latest = project.pipelines.list(get_all=False, per_page=1)[0]
    assert (latest.sha, latest.source, latest.status) == (sha, "push", "pending")
    sha = pushed("b", "-o", "ci.skip")
    latest = project.pipelines.list(get_all=False, per_page=1)[0]
    assert (latest.sha, latest.status) == (sha, "skipped")
    git("push", "-q", "origin", "HEAD:refs/heads/feature")
    latest = project.pipelines.list(get_all=False, per_page=1)[0]
    assert (latest.ref, latest.sha, latest.status) == ("feature", sha, "pending")
    git("push", "-q", "origin", ":refs/heads/feature")  # a deletion gets no pipeline
    assert len(project.pipelines.list(get_all=True)) == before + 3
