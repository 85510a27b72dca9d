"""A small in-memory stand-in for the GitLab calls a smoke run makes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from provisioner.gitlab.models import DistFile, Job, Namespace, Package, Pipeline, Project, Variable
from provisioner.smoke.service import STAGES

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeGitLab:
    """Pipelines end as ``final`` (a job status per stage); everything is recorded."""

    final: dict[str, str] = field(default_factory=dict)
    never_picked: bool = False
    projects: dict[str, Project] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    commits: int = 0
    pipeline_vars: list[Mapping[str, str]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    packages: list[Package] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    polls: int = 0

    settings: object = None

    def current_username(self) -> str:
        return "root"

    def find_project(self, path: str) -> Project | None:
        return self.projects.get(path)

    def create_project(self, path: str, *, namespace_id: int | None = None) -> Project:
        project = Project(len(self.projects) + 1, path, f"http://gl/{path}", "main")
        self.projects[path] = project
        return project

    def resolve_group(self, path_or_id: str) -> Namespace:
        return Namespace(9, path_or_id, "group")

    def read_file(self, project_id: int, file_path: str, ref: str) -> str | None:
        return self.files.get(file_path)

    def list_tree(self, project_id: int, ref: str) -> frozenset[str]:
        return frozenset(self.files)

    def commit_files(
        self,
        project_id: int,
        *,
        branch: str,
        message: str,
        files: Mapping[str, str],
        existing: frozenset[str] = frozenset(),
    ) -> str:
        assert existing == frozenset(self.files)
        self.files.update(files)
        self.commits += 1
        return f"{self.commits:040x}"

    def get_variable(self, project_id: int, key: str) -> Variable | None:
        return self.variables.get(key)

    def set_variable(self, project_id: int, variable: Variable) -> None:
        self.variables[variable.key] = variable

    def create_pipeline(
        self, project_id: int, ref: str, variables: Mapping[str, str] | None = None
    ) -> Pipeline:
        self.pipeline_vars.append(dict(variables or {}))
        return Pipeline(100 + len(self.pipeline_vars), len(self.pipeline_vars), "created", "u")

    def _status(self) -> str:
        if self.never_picked:
            return "pending"
        if self.polls < 2:
            return "running"
        return "failed" if "failed" in self.final.values() else "success"

    def get_pipeline(self, project_id: int, pipeline_id: int) -> Pipeline:
        self.polls += 1
        iid = pipeline_id - 100
        return Pipeline(pipeline_id, iid, self._status(), f"http://gl/p/{pipeline_id}")

    def cancel_pipeline(self, project_id: int, pipeline_id: int) -> None:
        self.cancelled.append(pipeline_id)

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> tuple[Job, ...]:
        jobs = []
        for index, stage in enumerate(STAGES):
            if self.never_picked:
                status = "pending" if index == 0 else "created"
                jobs.append(Job(index + 1, stage, stage, status))
                continue
            status = self.final.get(stage, "success") if self.polls >= 2 else "running"
            start = T0 + timedelta(seconds=10 * index)
            done = status in ("success", "failed")
            jobs.append(
                Job(
                    index + 1,
                    stage,
                    stage,
                    status,
                    duration=2.0 if done else None,
                    started_at=start if status != "skipped" else None,
                    finished_at=start + timedelta(seconds=2) if done else None,
                )
            )
        return tuple(jobs)

    def job_trace(self, project_id: int, job_id: int) -> str:
        return "\n".join(f"line {n}" for n in range(100)) + "\nError: invalid signature\n"

    def list_packages(
        self, project_id: int, *, package_name: str | None = None, package_type: str | None = None
    ) -> tuple[Package, ...]:
        return tuple(p for p in self.packages if p.id not in self.deleted)

    def delete_package(self, project_id: int, package_id: int) -> bool:
        self.deleted.append(package_id)
        return True

    def download_generic(
        self, project_id: int, package_name: str, version: str, file_name: str
    ) -> bytes | None:
        return None

    def pypi_files(self, project_id: int, package_name: str) -> tuple[DistFile, ...]:
        return ()

    def download_url(self, url: str) -> bytes:
        raise AssertionError("not reached in unit tests")
