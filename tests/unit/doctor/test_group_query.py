"""``group_failed_jobs``: one GraphQL request per page of projects, the window applied."""

from __future__ import annotations

from datetime import UTC, datetime

from provisioner.gitlab.models import FailureReason, JobStatus
from tests.unit.gitlab.test_graphql import _api


def _job(ident: int, finished: str) -> dict[str, object]:
    return {
        "id": f"gid://gitlab/Ci::Build/{ident}",
        "name": "test",
        "status": "FAILED",
        "failureReason": "script_failure",
        "finishedAt": finished,
        "webPath": f"/grp/app/-/jobs/{ident}",
        "tags": ["linux"],
        "stage": {"name": "test"},
        "runner": {"id": "gid://gitlab/Ci::Runner/5", "description": "shell-1"},
    }


def _page(path: str, jobs: list[dict[str, object]], cursor: str | None) -> dict[str, object]:
    return {
        "data": {
            "group": {
                "projects": {
                    "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor},
                    "nodes": [{"fullPath": path, "jobs": {"nodes": jobs}}],
                }
            }
        }
    }


def test_one_request_per_page_and_old_jobs_left_out() -> None:
    api, fake = _api(
        [
            (200, _page("grp/app", [_job(9, "2026-12-03T09:00:00Z")], "c1")),
            (200, _page("grp/sub/lib", [_job(8, "2026-12-01T09:00:00Z")], None)),
        ]
    )
    since = datetime(2026, 12, 2, tzinfo=UTC)
    jobs = list(api.group_failed_jobs("grp", since=since))
    assert len(fake.requests) == 2
    assert fake.requests[1]["variables"]["after"] == "c1"
    assert "jobs(statuses: [FAILED]" in fake.requests[0]["query"]
    (job,) = jobs
    assert job.id == 9
    assert job.project == "grp/app"
    assert job.status is JobStatus.FAILED
    assert job.failure_reason is FailureReason.SCRIPT_FAILURE
    assert job.runner_id == 5
    assert job.runner == "shell-1"
    assert job.web_url.endswith("/grp/app/-/jobs/9")
