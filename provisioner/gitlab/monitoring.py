"""The latest pipeline of every project of a group: GraphQL pages, and the REST fallback.

GraphQL (:meth:`MonitoringMixin.latest_pipelines_page`) reads one page of
``group.projects(includeSubgroups:)`` with ``pipelines(first: 1, ref: …)`` nested under each
project: one request per page of projects instead of 1 + N. Several refs are read with aliases
(``p0``, ``p1``…) in the same request: ``--ref default`` asks for the default-branch names
seen so far, and each project picks the one its ``repository.rootRef`` names.

The REST fallback serves GitLab versions whose GraphQL lacks a field: it pages
``/groups/:id/projects`` with ``X-Next-Page`` and asks each project for its newest pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from provisioner.errors import GitLabError
from provisioner.gitlab.graphql import QueryComplexity
from provisioner.gitlab.models import PipelineStatus, parse_time

if TYPE_CHECKING:
    from provisioner.gitlab.graphql import GraphQL
    from provisioner.gitlab.transport import Transport

MAX_PAGE = 100
_PIPELINE_FIELDS = (
    "id iid status ref createdAt startedAt finishedAt duration path "
    "detailedStatus { text } user { username }"
)


@dataclass(frozen=True)
class PipelineSummary:
    """A pipeline as the monitor shows it; ``status`` keeps REST's lower-case values."""

    id: int
    iid: int
    status: PipelineStatus
    ref: str
    web_url: str
    created_at: datetime | None
    started_at: datetime | None
    duration: float | None
    user: str | None
    detailed_status: str


@dataclass(frozen=True)
class GroupProject:
    """A project of the group; ``default_branch`` is ``None`` for an empty repository."""

    id: int
    full_path: str
    web_url: str
    default_branch: str | None
    ci_enabled: bool = True


@dataclass(frozen=True)
class ProjectPage:
    """One page of projects, each with the pipeline found per requested alias."""

    projects: tuple[tuple[GroupProject, Mapping[str, PipelineSummary | None]], ...]
    has_next: bool
    end_cursor: str | None
    complexity: QueryComplexity | None
    group_found: bool = True


def _gid_number(value: Any) -> int:
    text = str(value or "0")
    return int(text.rsplit("/", 1)[-1]) if text.rsplit("/", 1)[-1].isdigit() else 0


def latest_pipelines_query(aliases: int, *, root_ref: bool, by_ids: bool = False) -> str:
    """The GraphQL document for one page, with ``aliases`` nested ``pipelines`` selections."""
    refs = "".join(f", $r{i}: String" for i in range(aliases))
    ids = ", $ids: [ID!]" if by_ids else ""
    selections = " ".join(
        f"p{i}: pipelines(first: 1, ref: $r{i}) {{ nodes {{ {_PIPELINE_FIELDS} }} }}"
        for i in range(aliases)
    )
    repository = "repository { rootRef } " if root_ref else ""
    ids_arg = ", ids: $ids" if by_ids else ""
    return (
        "query GroupLatestPipelines($group: ID!, $first: Int!, $after: String, "
        f"$subgroups: Boolean!, $archived: Boolean!{ids}{refs}) {{\n"
        "  queryComplexity { score limit }\n"
        "  group(fullPath: $group) {\n"
        "    projects(includeSubgroups: $subgroups, includeArchived: $archived, "
        f"first: $first, after: $after{ids_arg}) {{\n"
        "      pageInfo { hasNextPage endCursor }\n"
        f"      nodes {{ id fullPath webUrl jobsEnabled {repository}{selections} }}\n"
        "    }\n  }\n}"
    )


def hot_pipelines_query(count: int) -> str:
    """One request re-reading ``count`` known pipelines by project path and iid."""
    params = "".join(f"$p{i}: ID!, $i{i}: ID!, " for i in range(count)).rstrip(", ")
    body = "\n".join(
        f"  h{i}: project(fullPath: $p{i}) {{ webUrl "
        f"pipeline(iid: $i{i}) {{ {_PIPELINE_FIELDS} }} }}"
        for i in range(count)
    )
    return f"query HotPipelines({params}) {{\n  queryComplexity {{ score limit }}\n{body}\n}}"


def _pipeline(node: Any, project_url: str, base_url: str) -> PipelineSummary | None:
    if not isinstance(node, dict):
        return None
    duration = node.get("duration")
    user = node.get("user") or {}
    detailed = node.get("detailedStatus") or {}
    path = node.get("path")
    pid = _gid_number(node.get("id"))
    return PipelineSummary(
        id=pid,
        iid=int(node.get("iid") or 0),
        status=PipelineStatus.parse(node.get("status", "")),
        ref=str(node.get("ref") or ""),
        web_url=base_url + str(path) if path else f"{project_url}/-/pipelines/{pid}",
        created_at=parse_time(node.get("createdAt")),
        started_at=parse_time(node.get("startedAt")),
        duration=float(duration) if duration is not None else None,
        user=str(user["username"]) if isinstance(user, dict) and user.get("username") else None,
        detailed_status=str(detailed.get("text") or "") if isinstance(detailed, dict) else "",
    )


def _rest_pipeline(data: Any) -> PipelineSummary:
    duration = data.get("duration")
    user = data.get("user") or {}
    detailed = data.get("detailed_status") or {}
    return PipelineSummary(
        id=int(data["id"]),
        iid=int(data.get("iid") or 0),
        status=PipelineStatus.parse(data.get("status", "")),
        ref=str(data.get("ref") or ""),
        web_url=str(data.get("web_url") or ""),
        created_at=parse_time(data.get("created_at")),
        started_at=parse_time(data.get("started_at")),
        duration=float(duration) if duration is not None else None,
        user=str(user["username"]) if isinstance(user, dict) and user.get("username") else None,
        detailed_status=str(detailed.get("text") or "") if isinstance(detailed, dict) else "",
    )


class MonitoringMixin:
    """The group-pipeline calls of ``GitLabAPI``."""

    _t: Transport
    graphql: GraphQL

    def limit_rate(self, per_second: float) -> None:
        """At most ``per_second`` requests a second from now on (0: no budget)."""
        self._t.limit_rate(per_second)

    # -- GraphQL ---------------------------------------------------------------------------------

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
        """One page of the group's projects with their newest pipeline on each of ``refs``.

        The pipelines are keyed by ref (``""`` for ``None``, any ref).
        """
        variables: dict[str, Any] = {
            "group": group,
            "first": min(max(first, 1), MAX_PAGE),
            "after": after,
            "subgroups": subgroups,
            "archived": archived,
        }
        if ids is not None:
            variables["ids"] = [f"gid://gitlab/Project/{i}" for i in ids]
        for i, ref in enumerate(refs):
            variables[f"r{i}"] = ref
        document = latest_pipelines_query(len(refs), root_ref=root_ref, by_ids=ids is not None)
        result = self.graphql.query(document, variables)
        data_group = result.data.get("group")
        if not isinstance(data_group, dict):
            return ProjectPage((), False, None, result.complexity, group_found=False)
        connection = data_group.get("projects") or {}
        info = connection.get("pageInfo") or {}
        base = self._t.settings.url.rstrip("/")
        rows = []
        for node in connection.get("nodes") or ():
            if not isinstance(node, dict):
                continue
            repository = node.get("repository")
            root = repository.get("rootRef") if isinstance(repository, dict) else None
            project = GroupProject(
                id=_gid_number(node.get("id")),
                full_path=str(node.get("fullPath", "")),
                web_url=str(node.get("webUrl") or ""),
                default_branch=str(root) if root else None,
                ci_enabled=node.get("jobsEnabled") is not False,
            )
            found: dict[str, PipelineSummary | None] = {}
            for i, ref in enumerate(refs):
                nodes = (node.get(f"p{i}") or {}).get("nodes") or []
                found[ref or ""] = _pipeline(nodes[0], project.web_url, base) if nodes else None
            rows.append((project, found))
        return ProjectPage(
            tuple(rows),
            bool(info.get("hasNextPage")),
            info.get("endCursor"),
            result.complexity,
        )

    def hot_pipelines(
        self, wanted: Sequence[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], PipelineSummary], QueryComplexity | None]:
        """Re-read known pipelines (project path, iid) in one request."""
        if not wanted:
            return {}, None
        variables: dict[str, Any] = {}
        for i, (path, iid) in enumerate(wanted):
            variables[f"p{i}"], variables[f"i{i}"] = path, str(iid)
        result = self.graphql.query(hot_pipelines_query(len(wanted)), variables)
        base = self._t.settings.url.rstrip("/")
        found: dict[tuple[str, int], PipelineSummary] = {}
        for i, key in enumerate(wanted):
            project = result.data.get(f"h{i}")
            if isinstance(project, dict):
                summary = _pipeline(project.get("pipeline"), str(project.get("webUrl")), base)
                if summary is not None:
                    found[key] = summary
        return found, result.complexity

    # -- REST ------------------------------------------------------------------------------------

    def group_projects_rest(
        self, group: str, *, subgroups: bool = True, archived: bool = False
    ) -> Iterator[GroupProject]:
        """``GET /groups/:id/projects``, every page by ``X-Next-Page``."""
        query: dict[str, Any] = {
            "include_subgroups": str(subgroups).lower(),
            "simple": "true",
            "per_page": MAX_PAGE,
            "order_by": "id",
            "sort": "asc",
        }
        if not archived:
            query["archived"] = "false"
        page: str | None = "1"
        seen = 0
        while page:
            response = self._t.require(
                "get",
                f"/groups/{quote(group, safe='')}/projects",
                query={**query, "page": page},
                what=f"listing the projects of group {group!r}",
                hints={404: f"No group {group!r} is visible to this token: check its full path."},
            )
            items = self._t.json(response)
            if not isinstance(items, list):
                raise GitLabError(f"GitLab sent no project list for group {group!r}.")
            for item in items:
                if isinstance(item, dict):
                    seen += 1
                    yield GroupProject(
                        id=int(item["id"]),
                        full_path=str(item.get("path_with_namespace", "")),
                        web_url=str(item.get("web_url") or ""),
                        default_branch=item.get("default_branch") or None,
                        ci_enabled=item.get("jobs_enabled", True) is not False,
                    )
            nxt = response.headers.get("X-Next-Page", "")
            if nxt == page or seen > 100_000:
                raise GitLabError(f"GitLab repeated page {page} of group {group!r}; stopping.")
            page = nxt or None

    def latest_pipeline_rest(self, project_id: int, ref: str | None) -> PipelineSummary | None:
        """The newest pipeline of a project on ``ref`` (any ref for ``None``), or ``None``.

        ``/pipelines/latest?ref=`` answers a ref in one request, with every field; the newest
        of any ref needs the list first, whose items lack the start time and the user.
        """
        if ref is not None:
            response = self._t.request(
                "get",
                f"/projects/{project_id}/pipelines/latest",
                query={"ref": ref},
                what=f"reading the latest pipeline of project {project_id}",
                missing=(403, 404),
            )
            return None if response is None else _rest_pipeline(self._t.json(response))
        response = self._t.request(
            "get",
            f"/projects/{project_id}/pipelines",
            query={"per_page": 1, "order_by": "id", "sort": "desc"},
            what=f"reading the pipelines of project {project_id}",
            missing=(403, 404),
        )
        items = self._t.json(response) if response is not None else None
        if not items or not isinstance(items, list):
            return None
        return self.pipeline_rest(project_id, int(items[0]["id"]))

    def pipeline_rest(self, project_id: int, pipeline_id: int) -> PipelineSummary | None:
        """``GET /projects/:id/pipelines/:pipeline_id`` as a summary (``None`` if gone)."""
        response = self._t.request(
            "get",
            f"/projects/{project_id}/pipelines/{pipeline_id}",
            what=f"reading pipeline {pipeline_id}",
            missing=(404,),
        )
        return None if response is None else _rest_pipeline(self._t.json(response))
