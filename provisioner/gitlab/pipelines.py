"""Pipelines and their jobs, traces included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from provisioner.errors import GitLabError
from provisioner.gitlab.models import (
    FailureReason,
    Job,
    JobStatus,
    Pipeline,
    PipelineStatus,
    parse_time,
)
from provisioner.secrets import redact

if TYPE_CHECKING:
    from provisioner.gitlab.transport import Transport


class PipelinesMixin:
    """The pipeline and job calls of ``GitLabAPI``."""

    _t: Transport

    def create_pipeline(
        self, project_id: int, ref: str, variables: Mapping[str, str] | None = None
    ) -> Pipeline:
        """``POST /projects/:id/pipeline`` with pipeline variables."""
        body: dict[str, Any] = {"ref": ref}
        if variables:
            body["variables"] = [
                {"key": k, "value": v, "variable_type": "env_var"} for k, v in variables.items()
            ]
        wanted = dict(variables or {})
        # What the lost answer of a create would have made is a newer API pipeline on `ref`
        # with exactly these variables; remember where "newer" starts.
        try:
            newest: int | None = self._newest_api_pipeline(project_id, ref)
        except GitLabError:
            newest = None  # cannot list pipelines: then a lost answer cannot be recovered

        def recover() -> Pipeline | None:
            if newest is None:
                raise GitLabError(
                    f"GitLab's answer to creating a pipeline on {ref} got lost, and its "
                    "pipelines cannot be listed to see whether it was created.",
                    hint="Look at the project's pipelines before running this again.",
                )
            for pipeline_id in self._api_pipelines_since(project_id, ref, newest):
                if self._pipeline_variables(project_id, pipeline_id) == wanted:
                    return self.get_pipeline(project_id, pipeline_id)
            return None

        return self._t.create(
            "post",
            f"/projects/{project_id}/pipeline",
            body=body,
            what=f"creating a pipeline on {ref}",
            hints={400: "GitLab refused the pipeline: check .gitlab-ci.yml and the ref."},
            parse=lambda response: _pipeline(self._t.json(response)),
            recover=recover,
        )

    def _api_pipelines_since(self, project_id: int, ref: str, newest: int) -> list[int]:
        """Ids of pipelines created through the API on ``ref`` after ``newest``, oldest first."""
        response = self._t.require(
            "get",
            f"/projects/{project_id}/pipelines",
            query={"ref": ref, "source": "api", "order_by": "id", "sort": "desc", "per_page": 20},
            what=f"listing the pipelines on {ref}",
        )
        items = self._t.json(response) or []
        ids = (int(i["id"]) for i in items if isinstance(i, dict) and "id" in i)
        return sorted(i for i in ids if i > newest)

    def _newest_api_pipeline(self, project_id: int, ref: str) -> int:
        found = self._api_pipelines_since(project_id, ref, 0)
        return found[-1] if found else 0

    def _pipeline_variables(self, project_id: int, pipeline_id: int) -> dict[str, str]:
        response = self._t.require(
            "get",
            f"/projects/{project_id}/pipelines/{pipeline_id}/variables",
            what=f"reading the variables of pipeline {pipeline_id}",
        )
        items = self._t.json(response) or []
        return {str(i["key"]): str(i.get("value", "")) for i in items if isinstance(i, dict)}

    def get_pipeline(self, project_id: int, pipeline_id: int) -> Pipeline:
        """``GET /projects/:id/pipelines/:pipeline_id``."""
        response = self._t.require(
            "get",
            f"/projects/{project_id}/pipelines/{pipeline_id}",
            what=f"reading pipeline {pipeline_id}",
        )
        return _pipeline(self._t.json(response))

    def cancel_pipeline(self, project_id: int, pipeline_id: int) -> None:
        """``POST /projects/:id/pipelines/:pipeline_id/cancel`` (idempotent: retried)."""
        self._t.require(
            "post",
            f"/projects/{project_id}/pipelines/{pipeline_id}/cancel",
            what=f"cancelling pipeline {pipeline_id}",
        )

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> tuple[Job, ...]:
        """Every job of a pipeline (retried ones excluded), in id order."""
        items = self._t.paginate(
            f"/projects/{project_id}/pipelines/{pipeline_id}/jobs",
            {},
            what=f"listing the jobs of pipeline {pipeline_id}",
        )
        return tuple(sorted((_job(item) for item in items), key=lambda j: j.id))

    def job_trace(self, project_id: int, job_id: int) -> str:
        """``GET /projects/:id/jobs/:job_id/trace``: the job log (redacted of tokens)."""
        response = self._t.require(
            "get", f"/projects/{project_id}/jobs/{job_id}/trace", what=f"reading job {job_id} log"
        )
        return redact(response.content.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------
# Parsing


def _pipeline(data: Any) -> Pipeline:
    duration = data.get("duration")
    return Pipeline(
        id=int(data["id"]),
        iid=int(data.get("iid") or 0),
        status=PipelineStatus.parse(data.get("status", "")),
        web_url=str(data.get("web_url", "")),
        duration=float(duration) if duration is not None else None,
    )


def _job(data: Any) -> Job:
    duration = data.get("duration")
    reason = data.get("failure_reason")
    return Job(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        stage=str(data.get("stage", "")),
        status=JobStatus.parse(data.get("status", "")),
        duration=float(duration) if duration is not None else None,
        started_at=parse_time(data.get("started_at")),
        finished_at=parse_time(data.get("finished_at")),
        failure_reason=FailureReason.parse(reason) if reason else None,
        web_url=str(data.get("web_url", "")),
        tag_list=tuple(str(t) for t in data.get("tag_list") or ()),
    )
