"""``Query.runners`` in the sandbox's GraphQL subset: every runner of the instance, for admins.

GitLab's shape (``app/graphql/resolvers/ci/runners_resolver.rb``, ``types/ci/runner_type.rb``):

* ``runners(first, after, last, before, type, status, paused, tagList, search, sort)`` is a
  ``CiRunnerConnection``; the default sort is ``CREATED_DESC`` (newest first);
* the query is admin-only: ``Ci::RunnersFinder`` raises ``AccessDeniedError`` for anyone else
  and the resolver turns it into the "resource not available" field error, with
  ``runners: null`` (gitlab#422846);
* enums are upper case: ``runnerType`` ``INSTANCE_TYPE``…, ``accessLevel`` ``NOT_PROTECTED`` /
  ``REF_PROTECTED``, ``status`` ``ONLINE``/``OFFLINE``/``STALE``/``NEVER_CONTACTED``;
* ``groups`` is set for group runners only and ``projects`` for project runners only
  (``null`` otherwise); ``managers`` lists the runner's managers (one per ``system_id``).

:mod:`provisioner.sandbox.graphql_api` adds :data:`RUNNERS_SDL` to its schema and
:func:`runners_resolver` to the query root.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from provisioner.sandbox.entities import project_path_of, runner_status
from provisioner.sandbox.state import parse_iso

RUNNERS_SDL = """
enum CiRunnerType {
  INSTANCE_TYPE
  GROUP_TYPE
  PROJECT_TYPE
}

enum CiRunnerAccessLevel {
  NOT_PROTECTED
  REF_PROTECTED
}

enum CiRunnerStatus {
  ACTIVE
  PAUSED
  ONLINE
  OFFLINE
  STALE
  NEVER_CONTACTED
}

enum CiRunnerSort {
  CREATED_ASC
  CREATED_DESC
}

type CiRunnerManager {
  id: ID!
  systemId: String
  contactedAt: Time
  createdAt: Time
  version: String
  revision: String
  platformName: String
  architectureName: String
  status: CiRunnerStatus!
}

type CiRunnerManagerEdge {
  cursor: String!
  node: CiRunnerManager
}

type CiRunnerManagerConnection {
  count: Int!
  nodes: [CiRunnerManager]
  edges: [CiRunnerManagerEdge]
  pageInfo: PageInfo!
}

type GroupEdge {
  cursor: String!
  node: Group
}

type GroupConnection {
  count: Int!
  nodes: [Group]
  edges: [GroupEdge]
  pageInfo: PageInfo!
}

extend type CiRunner {
  runnerType: CiRunnerType!
  tagList: [String!]
  paused: Boolean!
  active: Boolean!
  locked: Boolean
  runUntagged: Boolean!
  accessLevel: CiRunnerAccessLevel!
  maximumTimeout: Int
  maintenanceNote: String
  contactedAt: Time
  createdAt: Time
  tokenExpiresAt: Time
  status: CiRunnerStatus!
  groups(first: Int, after: String, last: Int, before: String): GroupConnection
  projects(first: Int, after: String, last: Int, before: String): ProjectConnection
  managers(first: Int, after: String, last: Int, before: String): CiRunnerManagerConnection
}

type CiRunnerEdge {
  cursor: String!
  node: CiRunner
}

type CiRunnerConnection {
  count: Int!
  nodes: [CiRunner]
  edges: [CiRunnerEdge]
  pageInfo: PageInfo!
}

extend type Query {
  runners(
    type: CiRunnerType
    status: CiRunnerStatus
    paused: Boolean
    tagList: [String!]
    search: String
    sort: CiRunnerSort = CREATED_DESC
    first: Int
    after: String
    last: Int
    before: String
  ): CiRunnerConnection
}
"""

# Connections whose page size multiplies their children's complexity (see graphql_api).
RUNNER_CONNECTIONS = frozenset(
    {"Query.runners", "CiRunner.groups", "CiRunner.projects", "CiRunner.managers"}
)

# ``raise_resource_not_available_error!`` (``Gitlab::Graphql::Authorize::AuthorizeResource``).
RESOURCE_NOT_AVAILABLE = (
    "The resource that you are attempting to access does not exist "
    "or you don't have permission to perform this action"
)


class ResourceNotAvailableError(Exception):
    """The field error GitLab answers when the viewer may not read the field."""

    def __init__(self) -> None:
        super().__init__(RESOURCE_NOT_AVAILABLE)


Connection = Callable[..., dict[str, Any]]


def _matches(row: Any, args: dict[str, Any]) -> bool:
    if args.get("type") is not None and row["runner_type"] != str(args["type"]).lower():
        return False
    if args.get("paused") is not None and bool(row["paused"]) != bool(args["paused"]):
        return False
    status = args.get("status")
    if status == "ACTIVE" and row["paused"]:
        return False
    if status == "PAUSED" and not row["paused"]:
        return False
    if (
        status not in (None, "ACTIVE", "PAUSED")
        and runner_status(row, rest=False) != str(status).lower()
    ):
        return False
    tags = set(args.get("tagList") or ())
    if tags and not tags <= set(json.loads(row["tag_list"])):
        return False
    search = args.get("search")
    return not search or str(search).lower() in str(row["description"] or "").lower()


class _RunnerNodes:
    """Turns runner rows into ``CiRunner`` dicts; group/project nodes come from graphql_api."""

    def __init__(
        self,
        store: Any,
        connection: Connection,
        group_node: Callable[[Any], dict[str, Any] | None],
        project_node: Callable[[Any], dict[str, Any] | None],
    ) -> None:
        self.store = store
        self.connection = connection
        self.group_node = group_node
        self.project_node = project_node

    def manager(self, row: Any) -> dict[str, Any]:
        return {
            "id": f"gid://gitlab/Ci::RunnerManager/{row['id']}",
            "systemId": row["system_id"],
            "contactedAt": parse_iso(row["contacted_at"]),
            "createdAt": parse_iso(row["created_at"]),
            "version": row["version"],
            "revision": row["revision"],
            "platformName": row["platform"],
            "architectureName": row["architecture"],
            "status": runner_status(row, rest=False).upper(),
        }

    def node(self, row: Any) -> dict[str, Any]:
        store, rid = self.store, int(row["id"])

        def groups(_info: Any, **args: Any) -> dict[str, Any] | None:
            if row["runner_type"] != "group_type":
                return None
            found = store.all("SELECT id FROM namespaces WHERE id = ?", [row["group_id"]])
            return self.connection(
                found,
                args,
                ident=lambda r: int(r["id"]),
                node=lambda r: self.group_node(int(r["id"])),
                ascending=True,
            )

        def projects(_info: Any, **args: Any) -> dict[str, Any] | None:
            if row["runner_type"] != "project_type":
                return None
            found = store.all(
                "SELECT project_id AS id FROM runner_projects WHERE runner_id = ? "
                "ORDER BY project_id",
                [rid],
            )
            return self.connection(
                found,
                args,
                ident=lambda r: int(r["id"]),
                node=lambda r: self.project_node(int(r["id"])),
                ascending=True,
            )

        def managers(_info: Any, **args: Any) -> dict[str, Any]:
            found = store.all(
                "SELECT * FROM runner_managers WHERE runner_id = ? ORDER BY id", [rid]
            )
            return self.connection(
                found, args, ident=lambda r: int(r["id"]), node=self.manager, ascending=True
            )

        return {
            "id": f"gid://gitlab/Ci::Runner/{rid}",
            "description": row["description"],
            "runnerType": str(row["runner_type"]).upper(),
            "tagList": [str(t) for t in json.loads(row["tag_list"])],
            "paused": bool(row["paused"]),
            "active": not row["paused"],
            "locked": bool(row["locked"]),
            "runUntagged": bool(row["run_untagged"]),
            "accessLevel": str(row["access_level"]).upper(),
            "maximumTimeout": row["maximum_timeout"],
            "maintenanceNote": row["maintenance_note"],
            "contactedAt": parse_iso(row["contacted_at"]),
            "createdAt": parse_iso(row["created_at"]),
            "tokenExpiresAt": parse_iso(row["token_expires_at"]),
            "status": runner_status(row, rest=False).upper(),
            "groups": groups,
            "projects": projects,
            "managers": managers,
        }


def runners_resolver(
    source: Any,
    connection: Connection,
    group: Callable[[Any], dict[str, Any] | None],
    project: Callable[[Any], dict[str, Any] | None],
) -> Callable[..., dict[str, Any] | None]:
    """The ``Query.runners`` resolver (``source`` is the store-backed data source).

    Args:
        source: the data source; its ``store`` and ``viewer`` are read, and its ``group`` and
            ``project`` look-ups by full path.
        connection: graphql_api's keyset connection slicer.
        group: graphql_api's ``Group`` node maker (takes what ``source.group`` returns).
        project: graphql_api's ``Project`` node maker (takes what ``source.project`` returns).
    """

    def group_node(ident: int) -> dict[str, Any] | None:
        path = source.store.scalar("SELECT full_path FROM namespaces WHERE id = ?", [ident])
        return None if path is None else group(source.group(str(path)))

    def project_node(ident: int) -> dict[str, Any] | None:
        return project(source.project(project_path_of(source.store, ident)))

    def resolve(_info: Any, **args: Any) -> dict[str, Any] | None:
        store = getattr(source, "store", None)
        viewer = getattr(source, "viewer", None)
        if store is None or viewer is None or not viewer.is_admin:
            raise ResourceNotAvailableError
        rows = [r for r in store.all("SELECT * FROM runners ORDER BY id") if _matches(r, args)]
        ascending = args.get("sort") == "CREATED_ASC"
        if not ascending:
            rows.reverse()
        nodes = _RunnerNodes(store, connection, group_node, project_node)
        return connection(
            rows, args, ident=lambda r: int(r["id"]), node=nodes.node, ascending=ascending
        )

    return resolve
