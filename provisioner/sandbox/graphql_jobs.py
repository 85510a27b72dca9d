"""``Project.jobs`` in the sandbox's GraphQL subset: a project's CI jobs, newest first.

GitLab's shape: ``jobs(statuses: [CiJobStatus!], first, after)`` is a ``CiJobConnection`` of
``CiJob`` with a global id (``gid://gitlab/Ci::Build/42``), an uppercase ``status``, the
lowercase ``failureReason`` the runner reported, ``stage { name }``, ``tags``, ``runner { id
description }`` and ``webPath``. ``runnerctl doctor --group`` pages a group's projects and asks
each for its failed jobs in the same request. :mod:`provisioner.sandbox.graphql_api` adds the
SDL below to its schema and :func:`project_jobs` to each project.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from provisioner.sandbox.state import parse_iso

JOBS_SDL = """
enum CiJobStatus {
  CREATED
  WAITING_FOR_RESOURCE
  PREPARING
  WAITING_FOR_CALLBACK
  PENDING
  RUNNING
  FAILED
  SUCCESS
  CANCELING
  CANCELED
  SKIPPED
  MANUAL
  SCHEDULED
}

type CiStage {
  name: String
}

type CiRunner {
  id: ID!
  description: String
}

type CiJob {
  id: ID
  name: String
  status: CiJobStatus
  failureReason: String
  createdAt: Time!
  startedAt: Time
  finishedAt: Time
  webPath: String
  tags: [String!]
  stage: CiStage
  runner: CiRunner
}

type CiJobEdge {
  cursor: String!
  node: CiJob
}

type CiJobConnection {
  count: Int!
  nodes: [CiJob]
  edges: [CiJobEdge]
  pageInfo: PageInfo!
}

extend type Project {
  jobs(
    statuses: [CiJobStatus!]
    first: Int
    after: String
    last: Int
    before: String
  ): CiJobConnection
}
"""


def _job(store: Any, row: Any, project_path: str) -> dict[str, Any]:
    spec = json.loads(row["spec"] or "{}")
    runner = None
    if row["runner_id"] is not None:
        found = store.one("SELECT id, description FROM runners WHERE id = ?", [row["runner_id"]])
        if found is not None:
            runner = {
                "id": f"gid://gitlab/Ci::Runner/{found['id']}",
                "description": found["description"],
            }
    return {
        "id": f"gid://gitlab/Ci::Build/{row['id']}",
        "name": row["name"],
        "status": str(row["status"]).upper(),
        "failureReason": row["failure_reason"],
        "createdAt": parse_iso(row["created_at"]),
        "startedAt": parse_iso(row["started_at"]),
        "finishedAt": parse_iso(row["finished_at"]),
        "webPath": f"/{project_path}/-/jobs/{row['id']}",
        "tags": [str(t) for t in spec.get("tags") or ()],
        "stage": {"name": row["stage"]},
        "runner": runner,
    }


def project_jobs(
    source: Any, project_id: int, project_path: str, connection: Callable[..., dict[str, Any]]
) -> Callable[..., dict[str, Any] | None]:
    """The ``jobs`` resolver of one project (``source`` is the store-backed data source)."""

    def resolve(_info: Any, **args: Any) -> dict[str, Any] | None:
        store = getattr(source, "store", None)
        if store is None:
            return None
        rows = store.all(
            "SELECT * FROM jobs WHERE project_id = ? AND retried = 0 ORDER BY id DESC",
            [project_id],
        )
        statuses = {str(s).lower() for s in args.get("statuses") or ()}
        if statuses:
            rows = [r for r in rows if r["status"] in statuses]
        return connection(
            rows,
            args,
            ident=lambda r: int(r["id"]),
            node=lambda r: _job(store, r, project_path),
            ascending=False,
        )

    return resolve
