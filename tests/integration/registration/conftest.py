"""A sandbox GitLab with a group, a subgroup and a project, plus helpers to run the real CLI.

Every ``runnerctl`` call runs as a separate process with the token in its environment (never in
argv), exactly as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import RUNNERCTL as RUNNERCTL_PATH
from tests.conftest import run_runnerctl

RUNNERCTL = str(RUNNERCTL_PATH)


@dataclass
class Lab:
    """The running sandbox and what the tests need to drive it."""

    url: str
    token: str
    group_path: str
    group_id: int
    project_path: str
    project_id: int
    handle: Any

    def api(self, token: str | None = None) -> Any:
        """Our adapter, talking to the sandbox with python-gitlab."""
        from provisioner.gitlab.client import GitLabAPI
        from provisioner.gitlab.models import ConnectionSettings

        return GitLabAPI.from_settings(ConnectionSettings(url=self.url, token=token or self.token))

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("GITLAB_TOKEN", "GITLAB_URL", "CI_SERVER_URL", "CONFIG_FILE")
        }
        env.update(GITLAB_URL=self.url, GITLAB_TOKEN=self.token, COLUMNS="200", TZ="UTC")
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def lab(sandbox: Any) -> Lab:
    """The session's sandbox with this module's own group tree (unique paths per session)."""
    gl = sandbox.gitlab()
    top_name = sandbox.unique("platform")
    top = gl.groups.create({"name": top_name, "path": top_name})
    sub = gl.groups.create({"name": "ci", "path": "ci", "parent_id": top.id})
    project = gl.projects.create({"name": "app", "path": "app", "namespace_id": sub.id})
    return Lab(
        url=sandbox.url,
        token=sandbox.root_token,
        group_path=f"{top_name}/ci",
        group_id=int(sub.id),
        project_path=f"{top_name}/ci/app",
        project_id=int(project.id),
        handle=sandbox.handle,
    )


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(lab: Lab) -> Run:
    """Run ``runnerctl ARGS`` in a fresh process against the sandbox."""

    def _run(
        *args: str,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_runnerctl(*args, env=env or lab.env(), timeout=120, preexec=preexec)

    return _run


def runners_named(lab: Lab, name: str) -> list[Any]:
    """Every runner in GitLab whose description is ``name``."""
    from provisioner.gitlab.models import ListFilter

    return [r for r in lab.api().list_runners(ListFilter()) if r.description == name]
