"""One job in detail, and the failed jobs of a group through GraphQL (for ``doctor``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from provisioner.gitlab.models import FailureReason, JobStatus, parse_time
from provisioner.secrets import redact

if TYPE_CHECKING:
    from provisioner.gitlab.graphql import GraphQL
    from provisioner.gitlab.transport import Transport


@dataclass(frozen=True)
class JobDetail:
    """What doctor needs to know about a job besides its log."""

    id: int
    project: str
    name: str
    stage: str
    status: JobStatus
    failure_reason: FailureReason | None = None
    runner_id: int | None = None
    runner: str = ""
    tags: tuple[str, ...] = ()
    web_url: str = ""
    finished_at: datetime | None = None


#: One request per page of the group's projects, each with its newest failed jobs.
GROUP_FAILED_JOBS = """
query GroupFailedJobs($group: ID!, $first: Int!, $jobs: Int!, $after: String) {
  group(fullPath: $group) {
    projects(includeSubgroups: true, first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        fullPath
        jobs(statuses: [FAILED], first: $jobs) {
          nodes {
            id name status failureReason finishedAt webPath tags
            stage { name }
            runner { id description }
          }
        }
      }
    }
  }
}
"""


class JobsMixin:
    """The job calls of ``GitLabAPI`` that doctor uses."""

    _t: Transport
    graphql: GraphQL

    def job_detail(self, project: str, job_id: int) -> JobDetail:
        """``GET /projects/:id/jobs/:job_id``: status, failure reason, runner and tags."""
        response = self._t.require(
            "get",
            f"/projects/{quote(project, safe='')}/jobs/{job_id}",
            what=f"reading job {job_id} of {project}",
            hints={404: "Check the project path and the job id (and that the token can read it)."},
        )
        data = self._t.json(response)
        runner = data.get("runner") or {}
        reason = data.get("failure_reason")
        return JobDetail(
            id=int(data["id"]),
            project=project,
            name=str(data.get("name", "")),
            stage=str(data.get("stage", "")),
            status=JobStatus.parse(data.get("status", "")),
            failure_reason=FailureReason.parse(reason) if reason else None,
            runner_id=int(runner["id"]) if runner.get("id") else None,
            runner=str(runner.get("description") or ""),
            tags=tuple(str(t) for t in data.get("tag_list") or ()),
            web_url=str(data.get("web_url", "")),
            finished_at=parse_time(data.get("finished_at")),
        )

    def job_log(self, project: str, job_id: int) -> str:
        """``GET /projects/:id/jobs/:job_id/trace`` for a project given by path or id."""
        response = self._t.require(
            "get",
            f"/projects/{quote(project, safe='')}/jobs/{job_id}/trace",
            what=f"reading job {job_id} log",
        )
        return redact(response.content.decode("utf-8", "replace"))

    def group_failed_jobs(
        self,
        group: str,
        *,
        since: datetime | None,
        page_size: int = 50,
        jobs_per_project: int = 100,
    ) -> Iterator[JobDetail]:
        """Failed jobs of every project in ``group`` and its subgroups, newest first per project.

        One GraphQL request per page of projects; jobs that finished before ``since`` are left
        out.
        """
        variables = {"group": group, "first": page_size, "jobs": jobs_per_project}
        for node in self.graphql.nodes(GROUP_FAILED_JOBS, variables, ("group", "projects")):
            path = str(node.get("fullPath", ""))
            for job in (node.get("jobs") or {}).get("nodes") or ():
                detail = _graphql_job(path, job, self._t.settings.url)
                if since is not None and (detail.finished_at is None or detail.finished_at < since):
                    continue
                yield detail


def _graphql_job(project: str, job: dict[str, Any], base_url: str) -> JobDetail:
    runner = job.get("runner") or {}
    reason = job.get("failureReason")
    gid = str(job.get("id", ""))
    runner_gid = str(runner.get("id") or "")
    return JobDetail(
        id=int(gid.rsplit("/", 1)[-1]),
        project=project,
        name=str(job.get("name", "")),
        stage=str((job.get("stage") or {}).get("name", "")),
        status=JobStatus.parse(str(job.get("status", "")).lower()),
        failure_reason=FailureReason.parse(str(reason).lower()) if reason else None,
        runner_id=int(runner_gid.rsplit("/", 1)[-1]) if runner_gid else None,
        runner=str(runner.get("description") or ""),
        tags=tuple(str(t) for t in job.get("tags") or ()),
        web_url=base_url.rstrip("/") + str(job.get("webPath", "")),
        finished_at=parse_time(job.get("finishedAt")),
    )
