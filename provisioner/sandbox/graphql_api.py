"""The sandbox's GraphQL subset (``POST /api/graphql``), served by graphql-core.

It covers what runnerctl's monitor and fleet ask: ``currentUser``, ``runners`` (admin only,
:mod:`.graphql_runners`), ``group(fullPath)`` with
``projects(includeSubgroups, first, after)``, ``project(fullPath)``, their ``pipelines`` and
``queryComplexity``. Shapes follow GitLab:

* ids are global ids (``gid://gitlab/Project/2``), ``iid`` is a String, times are ISO 8601 UTC
  with ``Z``, pipeline ``status`` is the uppercase ``PipelineStatusEnum``;
* an unknown or invisible group/project is ``null``, not an error;
* connections are keyset-paginated with opaque cursors (base64 of ``{"id":"42"}``), pages are
  clamped to 100 nodes, and ``hasNextPage``/``hasPreviousPage`` follow GitLab's keyset
  connection (``hasPreviousPage`` is true whenever ``after`` is given);
* complexity and depth are scored statically before execution, with graphql-ruby's error texts
  and GitLab's limits (200/15 anonymous, 250/20 authenticated).

The data comes from a :class:`GraphQLDataSource`, the boundary to the sandbox's store.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from provisioner.sandbox.graphql_jobs import project_jobs
from provisioner.sandbox.graphql_pipelines import EXTENSION_SDL, project_fields
from provisioner.sandbox.graphql_runners import RUNNER_CONNECTIONS, runners_resolver

if TYPE_CHECKING:
    from graphql import (
        GraphQLError,
        GraphQLSchema,
        OperationDefinitionNode,
        SelectionSetNode,
    )

__all__ = [
    "GqlGroup",
    "GqlPipeline",
    "GqlProject",
    "GqlUser",
    "GraphQLDataSource",
    "execute_graphql",
]

MAX_PAGE_SIZE = 100
MAX_COMPLEXITY_ANONYMOUS = 200
MAX_COMPLEXITY_AUTHENTICATED = 250
MAX_DEPTH_ANONYMOUS = 15
MAX_DEPTH_AUTHENTICATED = 20
MAX_QUERY_SIZE = 10_000
_ALL = 1_000_000  # "every pipeline" when filtering or counting in memory


@dataclass(frozen=True)
class GqlUser:
    """A user as GraphQL shows it."""

    id: int
    username: str
    name: str
    web_url: str | None = None


@dataclass(frozen=True)
class GqlGroup:
    """A group."""

    id: int
    full_path: str
    name: str
    web_url: str


@dataclass(frozen=True)
class GqlProject:
    """A project."""

    id: int
    full_path: str
    name: str
    web_url: str
    last_activity_at: datetime | None = None
    default_branch: str | None = None  # None while the repository is empty
    archived: bool = False


@dataclass(frozen=True)
class GqlPipeline:
    """A pipeline; ``status`` is lowercase as in REST."""

    id: int
    iid: int
    status: str
    ref: str
    sha: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    duration: int | None
    path: str
    source: str = "push"
    started_at: datetime | None = None
    user: GqlUser | None = None


class GraphQLDataSource(Protocol):
    """What the GraphQL layer reads; every answer is already filtered by visibility."""

    def current_user(self) -> GqlUser | None:
        """The authenticated user, or None for an anonymous request."""

    def group(self, full_path: str) -> GqlGroup | None:
        """The group at ``full_path`` if the caller may see it."""

    def group_projects(self, group_id: int, include_subgroups: bool) -> Sequence[GqlProject]:
        """The group's visible projects, ordered by id."""

    def project(self, full_path: str) -> GqlProject | None:
        """The project at ``full_path`` if the caller may see it."""

    def pipelines(self, project_id: int, ref: str | None, limit: int) -> Sequence[GqlPipeline]:
        """Up to ``limit`` pipelines of the project (on ``ref`` if given), newest first."""


SCHEMA_SDL = """
scalar Time

enum PipelineStatusEnum {
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

type Query {
  currentUser: UserCore
  group(fullPath: ID!): Group
  project(fullPath: ID!): Project
  queryComplexity: QueryComplexity
}

type QueryComplexity {
  limit: Int
  score: Int
}

type UserCore {
  id: ID!
  username: String!
  name: String!
  webUrl: String
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type Group {
  id: ID!
  fullPath: ID!
  name: String!
  webUrl: String!
  projects(
    includeSubgroups: Boolean = false
    includeArchived: Boolean = true
    search: String
    ids: [ID!]
    first: Int
    after: String
    last: Int
    before: String
  ): ProjectConnection!
}

type ProjectConnection {
  count: Int!
  nodes: [Project]
  edges: [ProjectEdge]
  pageInfo: PageInfo!
}

type ProjectEdge {
  cursor: String!
  node: Project
}

type Project {
  id: ID!
  fullPath: ID!
  name: String!
  webUrl: String
  lastActivityAt: Time
  pipelines(
    status: PipelineStatusEnum
    ref: String
    sha: String
    first: Int
    after: String
    last: Int
    before: String
  ): PipelineConnection
  pipeline(iid: ID, sha: String): Pipeline
}

type PipelineConnection {
  count: Int!
  nodes: [Pipeline]
  edges: [PipelineEdge]
  pageInfo: PageInfo!
}

type PipelineEdge {
  cursor: String!
  node: Pipeline
}

type Pipeline {
  id: ID!
  iid: String!
  status: PipelineStatusEnum!
  ref: String
  sha: String
  source: String
  createdAt: Time!
  updatedAt: Time!
  startedAt: Time
  finishedAt: Time
  duration: Int
  path: String
  detailedStatus: DetailedStatus!
  user: UserCore
}

type DetailedStatus {
  id: String!
  group: String
  icon: String
  label: String
  text: String
  tooltip: String
  hasDetails: Boolean
  detailsPath: String
  favicon: String
}
"""

# (text, label, group, icon) per REST status (``lib/gitlab/ci/status/*.rb``).
_DETAILED_STATUS: dict[str, tuple[str, str, str, str]] = {
    "created": ("Created", "created", "created", "status_created"),
    "waiting_for_resource": (
        "Waiting",
        "waiting for resource",
        "waiting-for-resource",
        "status_pending",
    ),
    "preparing": ("Preparing", "preparing", "preparing", "status_preparing"),
    "waiting_for_callback": (
        "Waiting",
        "waiting for callback",
        "waiting-for-callback",
        "status_pending",
    ),
    "pending": ("Pending", "pending", "pending", "status_pending"),
    "running": ("Running", "running", "running", "status_running"),
    "success": ("Passed", "passed", "success", "status_success"),
    "failed": ("Failed", "failed", "failed", "status_failed"),
    "canceling": ("Canceling", "canceling", "canceling", "status_canceled"),
    "canceled": ("Canceled", "canceled", "canceled", "status_canceled"),
    "skipped": ("Skipped", "skipped", "skipped", "status_skipped"),
    "manual": ("Blocked", "manual action", "manual", "status_manual"),
    "scheduled": ("Scheduled", "scheduled", "scheduled", "status_scheduled"),
}

# Static complexity added by resolvers (``graphql_limits.csv``).
_RESOLVER_COMPLEXITY: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "Group.projects": lambda _args: 10,
    "Project.pipelines": lambda args: 2 * sum(1 for key in ("ref", "sha") if args.get(key)),
}
_CONNECTIONS = frozenset({"Group.projects", "Project.pipelines"}) | RUNNER_CONNECTIONS


def _gid(kind: str, ident: int) -> str:
    return f"gid://gitlab/{kind}/{ident}"


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        moment: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, str):
        return value
    raise TypeError(f"Time cannot represent {value!r}")


def encode_cursor(ident: int) -> str:
    """GitLab's keyset cursor: unpadded base64 of ``{"id":"<id>"}``."""
    raw = json.dumps({"id": str(ident)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class _CursorError(ValueError):
    pass


def decode_cursor(cursor: str) -> int:
    """The id inside a cursor made by :func:`encode_cursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return int(json.loads(raw)["id"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise _CursorError("Please provide a valid cursor") from exc


# --------------------------------------------------------------------------------------------
# Connections


def _page_size(args: Mapping[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    return max(0, min(int(value), MAX_PAGE_SIZE))


def _connection(
    items: Sequence[Any],
    args: Mapping[str, Any],
    *,
    ident: Callable[[Any], int],
    node: Callable[[Any], dict[str, Any]],
    ascending: bool,
    count: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Slice ``items`` (already in connection order) as GitLab's keyset connection does."""
    after, before = args.get("after"), args.get("before")
    first, last = _page_size(args, "first"), _page_size(args, "last")
    sliced = list(items)
    if after is not None:
        pivot = decode_cursor(after)
        sliced = [i for i in sliced if (ident(i) > pivot if ascending else ident(i) < pivot)]
    if before is not None:
        pivot = decode_cursor(before)
        sliced = [i for i in sliced if (ident(i) < pivot if ascending else ident(i) > pivot)]
    limit = (
        MAX_PAGE_SIZE
        if first is None and last is None
        else min(x for x in (first, last) if x is not None)
    )
    if last is not None and first is None:
        page = sliced[-limit:] if limit else []
    else:
        page = sliced[:limit]
    # GitLab's Keyset::Connection: without `first` there is no "next" page, and `after`
    # points at a real record, so there is always a "previous" one.
    has_next = before is not None or (first is not None and len(sliced) > limit)
    has_previous = after is not None or (last is not None and len(sliced) > limit)
    nodes = [node(item) for item in page]
    cursors = [encode_cursor(ident(item)) for item in page]
    total = count() if count is not None else len(items)
    return {
        "count": total,
        "nodes": nodes,
        "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": cursors[0] if cursors else None,
            "endCursor": cursors[-1] if cursors else None,
        },
    }


class _Resolvers:
    """Turns data-source records into the dicts graphql-core's default resolver walks."""

    def __init__(self, source: GraphQLDataSource, complexity: Mapping[str, int]) -> None:
        self.source = source
        self.complexity = complexity

    def root(self) -> dict[str, Any]:
        return {
            "currentUser": lambda _info: self.user(self.source.current_user()),
            "group": lambda _info, fullPath: self.group(self.source.group(str(fullPath))),
            "project": lambda _info, fullPath: self.project(self.source.project(str(fullPath))),
            "queryComplexity": dict(self.complexity),
            "runners": runners_resolver(self.source, _connection, self.group, self.project),
        }

    @staticmethod
    def user(user: GqlUser | None) -> dict[str, Any] | None:
        if user is None:
            return None
        return {
            "id": _gid("User", user.id),
            "username": user.username,
            "name": user.name,
            "webUrl": user.web_url,
        }

    def group(self, group: GqlGroup | None) -> dict[str, Any] | None:
        if group is None:
            return None

        def projects(_info: Any, **args: Any) -> dict[str, Any]:
            items = list(self.source.group_projects(group.id, bool(args.get("includeSubgroups"))))
            if args.get("includeArchived") is False:
                items = [p for p in items if not p.archived]
            if args.get("search"):
                needle = str(args["search"]).lower()
                items = [p for p in items if needle in p.name.lower() or needle in p.full_path]
            if args.get("ids"):
                wanted = {str(i) for i in args["ids"]}
                items = [p for p in items if _gid("Project", p.id) in wanted]
            return _connection(
                items, args, ident=lambda p: p.id, node=self.project_node, ascending=True
            )

        return {
            "id": _gid("Group", group.id),
            "fullPath": group.full_path,
            "name": group.name,
            "webUrl": group.web_url,
            "projects": projects,
        }

    def project(self, project: GqlProject | None) -> dict[str, Any] | None:
        return None if project is None else self.project_node(project)

    def project_node(self, project: GqlProject) -> dict[str, Any]:
        def pipelines(_info: Any, **args: Any) -> dict[str, Any]:
            ref = args.get("ref")
            status, sha = args.get("status"), args.get("sha")
            filtered = status is not None or sha is not None
            paging = any(args.get(k) is not None for k in ("after", "before", "last"))
            first = _page_size(args, "first")
            wanted = _ALL if filtered or paging else (first if first is not None else MAX_PAGE_SIZE)
            items = list(self.source.pipelines(project.id, ref, wanted + 1))
            if status is not None:
                items = [p for p in items if p.status.upper() == status]
            if sha is not None:
                items = [p for p in items if p.sha == sha]

            def count() -> int:
                if filtered or len(items) <= wanted:
                    return len(items)
                return len(self.source.pipelines(project.id, ref, _ALL))

            return _connection(
                items,
                args,
                ident=lambda p: p.id,
                node=self.pipeline,
                ascending=False,
                count=count,
            )

        def pipeline(_info: Any, **args: Any) -> dict[str, Any] | None:
            items = self.source.pipelines(project.id, None, 1 if not args else _ALL)
            for item in items:
                if args.get("iid") is not None and str(item.iid) != str(args["iid"]):
                    continue
                if args.get("sha") is not None and item.sha != args["sha"]:
                    continue
                return self.pipeline(item)
            return None

        return {
            "id": _gid("Project", project.id),
            "fullPath": project.full_path,
            "name": project.name,
            "webUrl": project.web_url,
            "lastActivityAt": project.last_activity_at,
            "pipelines": pipelines,
            "pipeline": pipeline,
            **project_fields(project),
            "jobs": project_jobs(self.source, project.id, project.full_path, _connection),
        }

    def pipeline(self, pipeline: GqlPipeline) -> dict[str, Any]:
        text, label, group, icon = _DETAILED_STATUS.get(
            pipeline.status, (pipeline.status.title(), pipeline.status, pipeline.status, "")
        )
        return {
            "id": _gid("Ci::Pipeline", pipeline.id),
            "iid": str(pipeline.iid),
            "status": pipeline.status.upper(),
            "ref": pipeline.ref,
            "sha": pipeline.sha,
            "source": pipeline.source,
            "createdAt": pipeline.created_at,
            "updatedAt": pipeline.updated_at,
            "startedAt": pipeline.started_at,
            "finishedAt": pipeline.finished_at,
            "duration": pipeline.duration,
            "path": pipeline.path,
            "detailedStatus": {
                "id": f"{group}-{pipeline.id}-{pipeline.id}",
                "group": group,
                "icon": icon,
                "label": label,
                "text": text,
                "tooltip": label,
                "hasDetails": True,
                "detailsPath": pipeline.path,
                "favicon": f"/assets/ci_favicons/favicon_{icon}.png" if icon else None,
            },
            "user": self.user(pipeline.user),
        }


# --------------------------------------------------------------------------------------------
# Static analysis: complexity and depth, as GitLab scores them before running a query


@dataclass
class _Analysis:
    complexity: int
    depth: int


class _Analyzer:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, Any],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def fields(self, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> list[Any]:
        from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode

        found: list[Any] = []
        if selection_set is None:
            return found
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found.extend(self.fields(selection.selection_set, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    found.extend(self.fields(fragment.selection_set, seen | {name}))
        return found

    def score(
        self, parent_type: Any, selection_set: SelectionSetNode | None, *, meta: bool = False
    ) -> _Analysis:
        """Score a selection set; introspection (``meta``) counts for depth, not complexity."""
        from graphql import get_named_type, value_from_ast_untyped

        complexity, depth = 0, 0
        for node in self.fields(selection_set, frozenset()):
            name = node.name.value
            field_def = getattr(parent_type, "fields", {}).get(name)
            child_type = get_named_type(field_def.type) if field_def is not None else None
            in_meta = meta or name.startswith("__")
            child = self.score(child_type, node.selection_set, meta=in_meta)
            depth = max(depth, 1 + child.depth)
            if in_meta:
                continue
            args = {
                arg.name.value: value_from_ast_untyped(arg.value, dict(self.variables))
                for arg in node.arguments or ()
            }
            key = f"{getattr(parent_type, 'name', '')}.{name}"
            extra = _RESOLVER_COMPLEXITY.get(key)
            own = 1 + (extra(args) if extra is not None else 0) + child.complexity
            if key in _CONNECTIONS:
                limits = [v for v in (args.get("first"), args.get("last")) if isinstance(v, int)]
                limit = min([MAX_PAGE_SIZE, *limits])
                own += int(child.complexity * limit * 0.01)
            complexity += own
        return _Analysis(complexity, depth)


def _analyse(
    schema: GraphQLSchema, operation: OperationDefinitionNode, document: Any, variables: Any
) -> _Analysis:
    from graphql import FragmentDefinitionNode

    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.query_type if operation.operation.value == "query" else None
    return _Analyzer(schema, fragments, variables).score(root, operation.selection_set)


# --------------------------------------------------------------------------------------------
# Entry point

_SCHEMA: list[GraphQLSchema] = []


def _schema() -> GraphQLSchema:
    """Build the schema once (graphql-core is imported only when GraphQL is used)."""
    if not _SCHEMA:
        from graphql import GraphQLScalarType, build_schema

        from provisioner.sandbox.graphql_jobs import JOBS_SDL
        from provisioner.sandbox.graphql_runners import RUNNERS_SDL

        schema = build_schema(SCHEMA_SDL + EXTENSION_SDL + JOBS_SDL + RUNNERS_SDL)
        time_type = schema.type_map["Time"]
        assert isinstance(time_type, GraphQLScalarType)
        # graphql-core 3.2 calls `serialize`, 3.3 `coerce_output_value` (fixed at init).
        for attribute in ("serialize", "coerce_output_value"):
            setattr(time_type, attribute, _time)
        _SCHEMA.append(schema)
    return _SCHEMA[0]


def _errors(errors: Sequence[GraphQLError]) -> dict[str, Any]:
    return {"errors": [dict(error.formatted) for error in errors]}


def _message(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


def _pick_operation(document: Any, operation_name: str | None) -> OperationDefinitionNode | None:
    from graphql import OperationDefinitionNode

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    return next(
        (op for op in operations if op.name is not None and op.name.value == operation_name),
        None,
    )


def execute_graphql(
    source: GraphQLDataSource,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> dict[str, Any]:
    """Run one GraphQL request and return the response body GitLab would send (HTTP 200).

    Args:
        source: where groups, projects, pipelines and the current user come from.
        query: the GraphQL document.
        variables: the request's ``variables`` (may be None).
        operation_name: the request's ``operationName`` (may be None).
    """
    from graphql import (
        ExecutionResult,
        GraphQLError,
        execute,
        parse,
        validate,
    )
    from graphql.execution.values import get_variable_values

    if not isinstance(query, str) or not query.strip():
        return _message("No query string was present")
    if len(query) > MAX_QUERY_SIZE:
        return _message("Query too large")
    schema = _schema()
    try:
        document = parse(query)
    except GraphQLError as error:
        return _errors([error])
    validation_errors = validate(schema, document)
    if validation_errors:
        return _errors(validation_errors)
    operation = _pick_operation(document, operation_name)
    authenticated = source.current_user() is not None
    limit = MAX_COMPLEXITY_AUTHENTICATED if authenticated else MAX_COMPLEXITY_ANONYMOUS
    max_depth = MAX_DEPTH_AUTHENTICATED if authenticated else MAX_DEPTH_ANONYMOUS
    if operation is not None:
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return _errors(coerced)
        # graphql-core 3.3 wraps the values (`.coerced`); 3.2 returns the dict itself.
        raw_values: Any = getattr(coerced, "coerced", coerced)
        values: dict[str, Any] = dict(raw_values)
        analysis = _analyse(schema, operation, document, values)
        if analysis.depth > max_depth:
            return _message(
                f"Query has depth of {analysis.depth}, which exceeds max depth of {max_depth}"
            )
        if analysis.complexity > limit:
            return _message(
                f"Query has complexity of {analysis.complexity}, "
                f"which exceeds max complexity of {limit}"
            )
        complexity = {"limit": limit, "score": analysis.complexity}
    else:
        complexity = {"limit": limit, "score": 0}
    resolvers = _Resolvers(source, complexity)
    # A bad cursor raises inside its resolver and becomes a field error with a path.
    result = execute(
        schema,
        document,
        root_value=resolvers.root(),
        variable_values=variables or {},
        operation_name=operation_name,
    )
    assert isinstance(result, ExecutionResult)
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [dict(error.formatted) for error in result.errors]
    if result.data is not None or not result.errors:
        body["data"] = result.data
    return body
