"""A fake GitLab for the monitor: pages of projects, scripted failures, counted requests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provisioner.errors import GitLabError
from provisioner.gitlab.graphql import QueryComplexity
from provisioner.gitlab.models import PipelineStatus
from provisioner.gitlab.monitoring import GroupProject, PipelineSummary, ProjectPage

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def summary(pid: int, status: str, ref: str = "main") -> PipelineSummary:
    return PipelineSummary(
        id=pid,
        iid=pid,
        status=PipelineStatus.parse(status),
        ref=ref,
        web_url=f"https://gl.example/p/-/pipelines/{pid}",
        created_at=T0,
        started_at=T0,
        duration=65.0,
        user="alice",
        detailed_status=status.title(),
    )


@dataclass
class FakeMonitorAPI:
    """Projects ``g/p0``…; ``pipelines`` maps a path to its pipeline on ``main``."""

    pipelines: dict[str, PipelineSummary | None]
    default_branch: dict[str, str] = field(default_factory=dict)
    no_ci: set[str] = field(default_factory=set)
    score: int = 50
    limit: int = 250
    failures: list[GitLabError] = field(default_factory=list)
    calls: list[tuple[str, int]] = field(default_factory=list)
    request_count: int = 0

    def _fail(self) -> None:
        self.request_count += 1
        if self.failures:
            raise self.failures.pop(0)

    def latest_pipelines_page(
        self,
        group: str,
        *,
        refs: Sequence[str | None],
        root_ref: bool,
        first: int,
        after: str | None = None,
        subgroups: bool = True,
        archived: bool = False,
        ids: Sequence[int] | None = None,
    ) -> ProjectPage:
        self.calls.append(("graphql", first))
        self._fail()
        paths = sorted(self.pipelines)
        projects = [self._project(i, p) for i, p in enumerate(paths)]
        if ids is not None:
            projects = [p for p in projects if p.id in ids]
        start = int(after or 0)
        page = projects[start : start + first]
        rows = []
        for project in page:
            found: dict[str, PipelineSummary | None] = {}
            for ref in refs:
                pipeline = self.pipelines[project.full_path]
                wanted = ref is None or (pipeline is not None and pipeline.ref == ref)
                found[ref or ""] = pipeline if wanted else None
            rows.append((project, found))
        more = start + first < len(projects)
        return ProjectPage(
            tuple(rows),
            more,
            str(start + first) if more else None,
            QueryComplexity(self.score, self.limit),
        )

    def _project(self, i: int, path: str) -> GroupProject:
        return GroupProject(
            id=i + 1,
            full_path=path,
            web_url=f"https://gl.example/{path}",
            default_branch=self.default_branch.get(path, "main"),
            ci_enabled=path not in self.no_ci,
        )

    def hot_pipelines(
        self, wanted: Sequence[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], PipelineSummary], QueryComplexity | None]:
        self.calls.append(("hot", len(wanted)))
        self._fail()
        found = {}
        for path, iid in wanted:
            pipeline = self.pipelines.get(path)
            if pipeline is not None and pipeline.iid == iid:
                found[(path, iid)] = pipeline
        return found, None

    def group_projects_rest(
        self, group: str, *, subgroups: bool = True, archived: bool = False
    ) -> Iterator[GroupProject]:
        self.calls.append(("rest-projects", 0))
        self._fail()
        yield from (self._project(i, p) for i, p in enumerate(sorted(self.pipelines)))

    def latest_pipeline_rest(self, project_id: int, ref: str | None) -> PipelineSummary | None:
        self.calls.append(("rest-latest", project_id))
        self._fail()
        return self.pipelines[sorted(self.pipelines)[project_id - 1]]

    def pipeline_rest(self, project_id: int, pipeline_id: int) -> PipelineSummary | None:
        self.calls.append(("rest-pipeline", pipeline_id))
        self._fail()
        return self.pipelines[sorted(self.pipelines)[project_id - 1]]

    def limit_rate(self, per_second: float) -> None:
        self.calls.append(("limit", int(per_second)))
