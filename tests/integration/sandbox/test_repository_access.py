"""Real git against the sandbox: clones with a PAT or a job token, pushes, and GitLab's refusals.

Secrets reach git through GIT_ASKPASS and the environment, never through argv.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox


def git(
    args: list[str], *, cwd: Path, password: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    askpass = cwd / "askpass.sh"
    if not askpass.exists():
        askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$SANDBOX_GIT_PASSWORD"\n')
        askpass.chmod(0o700)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "LC_ALL": "C",
    }
    if password is not None:
        env.update(GIT_ASKPASS=str(askpass), SANDBOX_GIT_PASSWORD=password)
    proc = subprocess.run(
        ["git", "-c", "credential.helper=", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def url_for(sandbox: RunningSandbox, project: Any, user: str | None) -> str:
    scheme, rest = sandbox.url.split("://")
    who = f"{user}@" if user else ""
    return f"{scheme}://{who}{rest}/{project.path_with_namespace}.git"


def _user(sandbox: RunningSandbox, project: Any, level: int) -> tuple[str, str]:
    gl = sandbox.gitlab()
    name = sandbox.unique("gituser")
    user = gl.users.create(
        {"username": name, "name": name, "email": f"{name}@x.test", "password": "unused-password-1"}
    )
    token = user.personal_access_tokens.create({"name": "git", "scopes": ["api"]}).token
    if level:
        project.members.create({"user_id": user.id, "access_level": level})
    return name, token


def _job_token(sandbox: RunningSandbox, project: Any) -> dict[str, Any]:
    gl = sandbox.gitlab()
    assert gl.user is not None
    runner = gl.user.runners.create(
        {"runner_type": "project_type", "project_id": project.id, "tag_list": [project.path]}
    )
    pipeline = project.pipelines.create({"ref": "main"})
    job = RunnerClient(sandbox.url, runner.token).request_job().json()
    assert job["git_info"]["sha"] == pipeline.sha
    return dict(job)


def _ci_project(sandbox: RunningSandbox) -> Any:
    project = sandbox.new_project(files={"README.md": "hello\n"})
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {
                    "action": "create",
                    "file_path": ".gitlab-ci.yml",
                    "content": f"job:\n  tags: [{project.path}]\n  script: [echo hi]\n",
                }
            ],
        }
    )
    return project


def test_clone_with_pat_and_shallow(sandbox: RunningSandbox, tmp_path: Path) -> None:
    project = sandbox.new_project(files={"README.md": "hello\n"})
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "second",
            "actions": [{"action": "create", "file_path": "two.txt", "content": "2\n"}],
        }
    )
    git(
        ["clone", url_for(sandbox, project, "root"), "full"],
        cwd=tmp_path,
        password=sandbox.root_token,
    )
    assert (tmp_path / "full" / "README.md").read_text() == "hello\n"
    log = git(["log", "--format=%s"], cwd=tmp_path / "full").stdout.split()
    assert log == ["second", "initial"]
    git(
        ["clone", "--depth", "1", url_for(sandbox, project, "anything"), "shallow"],
        cwd=tmp_path,
        password=sandbox.root_token,
    )
    assert git(["rev-list", "--count", "HEAD"], cwd=tmp_path / "shallow").stdout.strip() == "1"
    assert (tmp_path / "shallow" / ".git" / "shallow").exists()


def test_runner_style_fetch_with_job_token(sandbox: RunningSandbox, tmp_path: Path) -> None:
    project = _ci_project(sandbox)
    job = _job_token(sandbox, project)
    info = job["git_info"]
    work = tmp_path / "build"
    work.mkdir()
    git(["init", "-q"], cwd=work)
    git(["remote", "add", "origin", url_for(sandbox, project, "gitlab-ci-token")], cwd=work)
    git(
        ["fetch", "origin", "--no-recurse-submodules", *info["refspecs"], "--depth", "1"],
        cwd=work,
        password=job["token"],
    )
    git(["checkout", "-f", "-q", info["sha"]], cwd=work)
    assert (work / ".gitlab-ci.yml").exists()
    head = git(["rev-parse", "HEAD"], cwd=work).stdout.strip()
    assert head == info["sha"]


def test_refusals_print_what_gitlab_makes_git_print(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    project = _ci_project(sandbox)
    anon = git(["clone", url_for(sandbox, project, None), "a"], cwd=tmp_path, check=False)
    assert anon.returncode == 128
    assert "could not read Username for" in anon.stderr

    bad = git(
        ["clone", url_for(sandbox, project, "root"), "b"],
        cwd=tmp_path,
        password="glpat-wrong",
        check=False,
    )
    assert bad.returncode == 128
    assert "remote: HTTP Basic: Access denied." in bad.stderr
    assert "fatal: Authentication failed for" in bad.stderr

    outsider, token = _user(sandbox, project, 0)
    hidden = git(
        ["clone", url_for(sandbox, project, outsider), "c"],
        cwd=tmp_path,
        password=token,
        check=False,
    )
    assert hidden.returncode == 128
    assert (
        "remote: The project you were looking for could not be found or you don't have "
        "permission to view it."
    ) in hidden.stderr
    assert "not found" in hidden.stderr

    other = _ci_project(sandbox)
    job = _job_token(sandbox, other)
    denied = git(
        ["clone", url_for(sandbox, project, "gitlab-ci-token"), "d"],
        cwd=tmp_path,
        password=job["token"],
        check=False,
    )
    assert denied.returncode == 128
    assert (
        f"remote: Authentication by CI/CD job token not allowed from "
        f"{other.path_with_namespace} to {project.path_with_namespace}."
    ) in denied.stderr
    assert "The requested URL returned error: 403" in denied.stderr
    project.manager.gitlab.http_post(
        f"/projects/{project.id}/job_token_scope/allowlist",
        post_data={"target_project_id": other.id},
    )
    git(
        ["clone", url_for(sandbox, project, "gitlab-ci-token"), "e"],
        cwd=tmp_path,
        password=job["token"],
    )


def test_push_needs_developer(sandbox: RunningSandbox, tmp_path: Path) -> None:
    project = sandbox.new_project(files={"README.md": "hello\n"})
    dev, dev_token = _user(sandbox, project, 30)
    reporter, rep_token = _user(sandbox, project, 20)
    git(["clone", url_for(sandbox, project, dev), "w"], cwd=tmp_path, password=dev_token)
    work = tmp_path / "w"
    (work / "pushed.txt").write_text("from git\n")
    git(["add", "pushed.txt"], cwd=work)
    git(
        ["-c", "user.name=Dev", "-c", "user.email=dev@x.test", "commit", "-q", "-m", "push"],
        cwd=work,
    )
    git(["push", "origin", "HEAD:main"], cwd=work, password=dev_token)
    assert project.files.raw("pushed.txt", ref="main") == b"from git\n"
    git(["remote", "set-url", "origin", url_for(sandbox, project, reporter)], cwd=work)
    (work / "more.txt").write_text("no\n")
    git(["add", "more.txt"], cwd=work)
    git(["-c", "user.name=R", "-c", "user.email=r@x.test", "commit", "-q", "-m", "no"], cwd=work)
    refused = git(["push", "origin", "HEAD:main"], cwd=work, password=rep_token, check=False)
    assert refused.returncode != 0
    assert "remote: You are not allowed to push code to this project." in refused.stderr
