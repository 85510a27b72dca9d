"""A sandbox GitLab, runners registered into config.toml by runnerctl itself, pipelines to run.

Every runner here is created by :func:`provisioner.registration.service.register` against the
sandbox and written through :class:`~provisioner.runner_config.ConfigStore`, so these tests
prove that registration and the stand-in runner work together on one real config.toml.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigDocument, ConfigStore
from provisioner.sandbox_runner import RunnerEvent, RunnerHandle, start_background
from tests.helpers import wait_until
from tests.integration.conftest import RunningSandbox

JOB_IMAGE = "runnerctl/python:3.11"
TERMINAL = {"success", "failed", "canceled", "skipped"}
API_ONLY = 'workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE != "push"\n'


@dataclass
class Lab:
    """The sandbox plus helpers to register runners, push CI files and follow pipelines."""

    sandbox: RunningSandbox
    tmp: Path
    events: list[RunnerEvent] = field(default_factory=list)

    @property
    def gl(self) -> Any:
        return self.sandbox.gitlab()

    def config(self, name: str = "config.toml") -> Path:
        return self.tmp / name

    def register(
        self,
        config: Path,
        *,
        executor: str = "shell",
        tags: tuple[str, ...] = (),
        name: str | None = None,
        run_untagged: bool = False,
        docker: dict[str, Any] | None = None,
        runner: dict[str, Any] | None = None,
        globals_: dict[str, Any] | None = None,
    ) -> str:
        """Register a runner through runnerctl's own service; returns its name."""
        runner_name = name or self.sandbox.unique(f"{executor}-runner")
        request = RegisterRequest(
            name=runner_name,
            scope=parse_scope("instance"),
            gitlab_url=self.sandbox.url,
            executor=ExecutorConfig(
                Executor(executor),
                docker=DockerOptions(image=JOB_IMAGE, pip_cache_volume=None),
            ),
            tags=tags,
            run_untagged=run_untagged,
        )
        api = GitLabAPI.from_settings(
            ConnectionSettings(url=self.sandbox.url, token=self.sandbox.root_token)
        )
        store = ConfigStore(config)
        register(request, gitlab=api, store=store)

        def tune(doc: ConfigDocument) -> None:
            doc.set_global("check_interval", 1)
            for key, value in (globals_ or {}).items():
                doc.set_global(key, value)
            for table in doc.runner_tables():
                if table.get("name") != runner_name:
                    continue
                for key, value in (runner or {}).items():
                    table[key] = value
                for key, value in (docker or {}).items():
                    table["docker"][key] = value

        store.update(tune)
        return runner_name

    def project(self, ci: str, files: dict[str, str] | None = None, **attrs: Any) -> Any:
        """A fresh project whose main branch holds ``ci`` as .gitlab-ci.yml.

        The tests run the pipelines they create through the API (``run_pipeline``), as
        runnerctl does; ``workflow:rules`` keep the commit's own push pipeline from starting.
        """
        ci = API_ONLY + ci
        return self.sandbox.new_project(
            files={".gitlab-ci.yml": ci, "README.md": "runner test\n", **(files or {})}, **attrs
        )

    def run_pipeline(self, project: Any) -> Any:
        return project.pipelines.create({"ref": "main"})

    def start(self, config: Path, **kwargs: Any) -> RunnerHandle:
        kwargs.setdefault("work_dir", self.tmp / "work")
        return start_background(config, on_event=self.events.append, **kwargs)

    def wait_pipeline(self, project: Any, pipeline_id: int, timeout: float = 120) -> Any:
        seen: list[Any] = []

        def finished() -> Any:
            seen[:] = [project.pipelines.get(pipeline_id)]
            return seen[0] if seen[0].status in TERMINAL else None

        return wait_until(
            finished,
            timeout=timeout,
            interval=0.3,
            message=lambda: f"pipeline {pipeline_id} still {seen[0].status} after {timeout}s",
        )

    def jobs(self, project: Any, pipeline_id: int) -> dict[str, Any]:
        pipeline = project.pipelines.get(pipeline_id)
        return {j.name: project.jobs.get(j.id) for j in pipeline.jobs.list(all=True)}

    def trace(self, project: Any, job: Any) -> str:
        return bytes(project.jobs.get(job.id).trace()).decode("utf-8", "replace")


@pytest.fixture
def lab(sandbox: RunningSandbox, tmp_path: Path) -> Lab:
    return Lab(sandbox=sandbox, tmp=tmp_path)


@pytest.fixture(scope="session")
def job_image() -> str:
    """The job image, built once if it is missing (docker pulls cannot work here)."""
    from provisioner.docker_api import DockerAPI
    from provisioner.images.build import ensure_job_image

    return ensure_job_image("3.11", docker=DockerAPI.from_env()).tag


@pytest.fixture
def runner_of(lab: Lab) -> Iterator[Callable[..., RunnerHandle]]:
    """Start runners that are always stopped at the end of the test."""
    handles: list[RunnerHandle] = []

    def _start(config: Path, **kwargs: Any) -> RunnerHandle:
        handle = lab.start(config, **kwargs)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        handle.stop(force=True, timeout=5)
