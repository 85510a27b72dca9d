"""The runner job protocol, with requests shaped exactly as gitlab-runner sends them."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient, variables

pytestmark = pytest.mark.sandbox

# The tests drive the pipelines they create through the API: the commits' own push pipelines
# are kept from starting, as the smoke template does.
CI = """
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE != "push"
stages: [build, test]
variables:
  GLOBAL_VAR: from-yaml
build:
  stage: build
  image: python:3.12-slim
  tags: [TAG]
  before_script: [echo before]
  script: [python -m build]
  after_script: [echo after]
  variables:
    JOB_VAR: job-level
  artifacts:
    paths: [dist/]
    reports:
      junit: report.xml
    expire_in: 1 week
  cache:
    key: pip
    paths: [.cache/pip]
  id_tokens:
    SIGSTORE_ID_TOKEN:
      aud: sigstore
test:
  stage: test
  tags: [TAG]
  script: [ls dist]
"""


@pytest.fixture
def setup(sandbox: RunningSandbox) -> tuple[Any, RunnerClient, Any]:
    gl = sandbox.gitlab()
    project = sandbox.new_project(files={"README.md": "r"})
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {
                    "action": "create",
                    "file_path": ".gitlab-ci.yml",
                    "content": CI.replace("TAG", project.path),
                }
            ],
        }
    )
    project.variables.create({"key": "DEPLOY_KEY", "value": "k3y-material-1234", "masked": True})
    project.variables.create(
        {"key": "HIDDEN_KEY", "value": "h1dden-material-99", "masked_and_hidden": True}
    )
    project.variables.create(
        {"key": "KUBECONFIG", "value": "apiVersion: v1\n", "variable_type": "file"}
    )
    assert gl.user is not None
    created = gl.user.runners.create(
        {
            "runner_type": "project_type",
            "project_id": project.id,
            "tag_list": [project.path, "extra"],
            "maximum_timeout": 1800,
        }
    )
    return project, RunnerClient(sandbox.url, created.token), created


def test_job_request_payload(sandbox: RunningSandbox, setup: tuple[Any, RunnerClient, Any]) -> None:
    project, runner, created = setup
    pipeline = project.pipelines.create(
        {"ref": "main", "variables": [{"key": "TRIGGERED", "value": "yes"}]}
    )
    resp = runner.request_job()
    assert resp.status_code == 201
    assert resp.headers["content-type"] == "application/json"
    job = resp.json()
    assert job["token"].startswith("glcbt-")
    assert job["allow_git_fetch"] is True
    assert job["job_info"]["name"] == "build"
    assert job["job_info"]["project_id"] == project.id
    git = job["git_info"]
    assert git["sha"] == pipeline.sha
    assert git["ref"] == "main"
    assert git["ref_type"] == "branch"
    assert git["refspecs"] == [
        f"+refs/pipelines/{pipeline.id}:refs/pipelines/{pipeline.id}",
        "+refs/heads/main:refs/remotes/origin/main",
    ]
    assert git["depth"] == 20
    host = sandbox.url.split("://")[1]
    assert git["repo_url"] == (
        f"http://gitlab-ci-token:{job['token']}@{host}/{project.path_with_namespace}.git"
    )
    assert job["runner_info"]["timeout"] == 1800  # capped by the runner's maximum_timeout
    vs = variables(job)
    assert vs["CI_JOB_TOKEN"] == {
        "key": "CI_JOB_TOKEN",
        "value": job["token"],
        "public": False,
        "masked": True,
    }
    assert vs["CI_SERVER_URL"]["value"] == sandbox.url
    assert vs["CI_API_V4_URL"]["value"] == f"{sandbox.url}/api/v4"
    assert vs["CI_PROJECT_PATH"]["value"] == project.path_with_namespace
    assert vs["CI_PROJECT_ID"]["value"] == str(project.id)
    assert vs["CI_PIPELINE_ID"]["value"] == str(pipeline.id)
    assert vs["CI_COMMIT_SHA"]["value"] == pipeline.sha
    assert vs["CI_JOB_ID"]["value"] == str(job["id"])
    assert vs["CI_JOB_NAME"]["value"] == "build"
    assert vs["CI_REPOSITORY_URL"]["value"] == git["repo_url"]
    assert vs["GLOBAL_VAR"]["value"] == "from-yaml"
    assert vs["JOB_VAR"]["value"] == "job-level"
    assert vs["TRIGGERED"]["value"] == "yes"
    assert vs["DEPLOY_KEY"]["masked"] is True
    assert vs["CI_SERVER_FQDN"]["value"] == host
    assert vs["CI_TEMPLATE_REGISTRY_HOST"]["value"] == "registry.gitlab.com"
    assert vs["CI_DEPENDENCY_PROXY_SERVER"]["value"] == host
    top = project.path_with_namespace.split("/")[0]
    assert vs["CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX"]["value"] == (
        f"{host}/{top}/dependency_proxy/containers"
    )
    assert vs["CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX"]["value"] == (
        f"{host}/{project.namespace['full_path']}/dependency_proxy/containers"
    )
    # Hidden variables are unreadable through the API, yet jobs get their value (masked).
    assert vs["HIDDEN_KEY"]["value"] == "h1dden-material-99"
    assert vs["HIDDEN_KEY"]["masked"] is True
    assert vs["KUBECONFIG"].get("file") is True
    assert [s["name"] for s in job["steps"]] == ["script", "after_script"]
    assert job["steps"][0]["script"] == ["echo before", "python -m build"]
    assert job["steps"][1]["when"] == "always"
    assert job["image"]["name"] == "python:3.12-slim"
    assert job["services"] == []
    kinds = {a["artifact_type"]: a for a in job["artifacts"]}
    assert kinds["archive"]["paths"] == ["dist/"]
    assert kinds["archive"]["expire_in"] == "1 week"
    assert kinds["junit"]["paths"] == ["report.xml"]
    assert job["cache"][0]["key"] == "pip"
    assert job["cache"][0]["paths"] == [".cache/pip"]
    assert job["dependencies"] == []

    # The id token is a JWT signed by the key the sandbox publishes.
    token = vs["SIGSTORE_ID_TOKEN"]["value"]
    assert vs["SIGSTORE_ID_TOKEN"]["masked"] is True
    config = requests.get(f"{sandbox.url}/.well-known/openid-configuration", timeout=10).json()
    assert config["issuer"] == sandbox.url
    keys = jwt.PyJWKClient(config["jwks_uri"])
    claims = jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token).key,
        algorithms=["RS256"],
        audience="sigstore",
        issuer=sandbox.url,
    )
    assert claims["sub"] == f"project_path:{project.path_with_namespace}:ref_type:branch:ref:main"
    assert claims["project_id"] == str(project.id)
    assert claims["job_id"] == str(job["id"])
    assert claims["runner_id"] == created.id

    # Running job: the pipeline and the job say so; the runner was seen.
    assert project.jobs.get(job["id"]).status == "running"
    assert project.jobs.get(job["id"]).runner["id"] == created.id
    assert sandbox.gitlab().runners.get(created.id).status == "online"


def test_trace_update_artifacts_round_trip(
    sandbox: RunningSandbox, setup: tuple[Any, RunnerClient, Any]
) -> None:
    project, runner, _ = setup
    pipeline = project.pipelines.create({"ref": "main"})
    job = runner.request_job().json()
    first = runner.patch_trace(job, b"Running build\n", 0)
    assert first.status_code == 202
    assert first.headers["Range"] == "0-14"
    assert first.headers["Job-Status"] == "running"
    # GitLab's pace: every 60 s, and every 3 s once someone reads the log.
    assert first.headers["X-GitLab-Trace-Update-Interval"] == "60"
    project.jobs.get(job["id"]).trace()
    watched = runner.patch_trace(job, b"watched\n", 14)
    assert watched.status_code == 202
    assert watched.headers["X-GitLab-Trace-Update-Interval"] == "3"
    assert runner.update(job, "running").headers["X-GitLab-Trace-Update-Interval"] == "3"
    stale = runner.patch_trace(job, b"again\n", 0)
    assert stale.status_code == 416
    assert stale.headers["Range"] == "0-22"
    assert runner.patch_trace(job, b"done\n", 22).status_code == 202
    no_range = requests.patch(
        f"{sandbox.url}/api/v4/jobs/{job['id']}/trace",
        data=b"x",
        headers={"JOB-TOKEN": job["token"]},
        timeout=10,
    )
    assert no_range.status_code == 400
    assert no_range.json() == {"message": "400 Missing header Content-Range"}
    keepalive = runner.update(job, "running")
    assert keepalive.status_code == 200
    assert keepalive.headers["Job-Status"] == "running"

    upload = runner.upload_artifacts(job, {"dist/pkg-1.0.tar.gz": b"sdist", "dist/x.whl": b"w"})
    assert upload.status_code == 201
    junit = runner.upload_artifacts(job, {"report.xml": b"<testsuites/>"}, artifact_type="junit")
    assert junit.status_code == 201
    final = runner.update(job, "success", b"Running build\nwatched\ndone\n")
    assert final.status_code == 200
    assert final.headers["Job-Status"] == "success"

    # The job token died with the job.
    assert runner.update(job, "success").status_code == 403
    dead = runner.patch_trace(job, b"late\n", 27)
    assert dead.status_code == 403
    assert dead.headers["Job-Status"] == "success"
    api = requests.get(f"{sandbox.url}/api/v4/job", headers={"JOB-TOKEN": job["token"]}, timeout=10)
    assert api.status_code == 401

    trace = project.jobs.get(job["id"], lazy=True).trace()
    assert trace == b"Running build\nwatched\ndone\n"
    built = project.jobs.get(job["id"])
    assert built.status == "success"
    assert built.artifacts_file["filename"] == "artifacts.zip"
    assert {a["file_type"] for a in built.attributes["artifacts"]} == {"archive", "junit"}

    test = runner.request_job().json()
    assert test["job_info"]["name"] == "test"
    (dep,) = test["dependencies"]
    assert dep["id"] == job["id"]
    assert dep["name"] == "build"
    assert dep["artifacts_file"]["filename"] == "artifacts.zip"
    download = runner.download_artifacts(dep)
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        assert zf.read("dist/pkg-1.0.tar.gz") == b"sdist"
    assert project.jobs.get(job["id"], lazy=True).artifact("dist/x.whl") == b"w"
    runner.run_job(test, state="failed", failure_reason="script_failure", exit_code=3)
    done = project.jobs.get(test["id"])
    assert done.failure_reason == "script_failure"
    assert project.pipelines.get(pipeline.id).status == "failed"


def test_no_job_tags_and_bad_tokens(
    sandbox: RunningSandbox, setup: tuple[Any, RunnerClient, Any]
) -> None:
    project, runner, created = setup
    empty = runner.request_job()
    assert empty.status_code == 204
    assert empty.headers["X-GitLab-Last-Update"]
    gl = sandbox.gitlab()
    assert gl.user is not None
    other = gl.user.runners.create(
        {
            "runner_type": "project_type",
            "project_id": project.id,
            "tag_list": ["windows"],
            "run_untagged": True,
        }
    )
    other_client = RunnerClient(sandbox.url, other.token)
    project.pipelines.create({"ref": "main"})
    assert other_client.request_job().status_code == 204  # lacks the job's tag
    mine = gl.runners.get(created.id)
    mine.paused = True
    mine.save()
    assert runner.request_job().status_code == 204  # paused runners get nothing
    mine.paused = False
    mine.save()
    assert runner.request_job().status_code == 201
    forbidden = RunnerClient(sandbox.url, "glrt-t3_unknown").request_job()
    assert forbidden.status_code == 403
    # A runner token is not a job token.
    resp = requests.get(
        f"{sandbox.url}/api/v4/projects/{project.id}/packages",
        headers={"JOB-TOKEN": runner.token},
        timeout=10,
    )
    assert resp.status_code == 401


def test_commit_timestamp_is_the_commits_time(
    sandbox: RunningSandbox, setup: tuple[Any, RunnerClient, Any], tmp_path: Path
) -> None:
    """``CI_COMMIT_TIMESTAMP`` is when the commit was made, not when the pipeline was."""
    project, runner, _ = setup
    host = sandbox.url.split("://")[1]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Old",
        "GIT_AUTHOR_EMAIL": "old@example.invalid",
        "GIT_COMMITTER_NAME": "Old",
        "GIT_COMMITTER_EMAIL": "old@example.invalid",
        "GIT_AUTHOR_DATE": "2021-02-03T04:05:06+02:00",
        "GIT_COMMITTER_DATE": "2021-02-03T04:05:06+02:00",
    }
    remote = f"http://root:{sandbox.root_token}@{host}/{project.path_with_namespace}.git"
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

    git("clone", "-q", remote, str(work))
    (work / "old.txt").write_text("old\n")
    git("add", "old.txt")
    git("commit", "-q", "-m", "an old commit")
    git("push", "-q", "origin", "HEAD:main")
    pipeline = project.pipelines.create({"ref": "main"})
    job = runner.request_job().json()
    assert job["git_info"]["sha"] == pipeline.sha
    assert variables(job)["CI_COMMIT_TIMESTAMP"]["value"] == "2021-02-03T02:05:06Z"
