"""Every runner of the instance in the shape ``fleet plan`` diffs: :class:`ObservedRunner`.

One GraphQL request per page of 100 runners (``runners`` is admin-only, newest first), with each
runner's tags, settings, maintenance note, token expiry, groups/projects and managers. A GitLab
whose GraphQL cannot serve the query (older versions lack fields) is read over REST instead:
``GET /runners/all`` pages, then ``GET /runners/:id`` and ``GET /runners/:id/managers`` for each
runner (two more requests per runner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.errors import GitLabError
from provisioner.fleet.model import ObservedManager, ObservedRunner
from provisioner.gitlab.models import parse_time

if TYPE_CHECKING:
    from provisioner.gitlab.graphql import GraphQL
    from provisioner.gitlab.transport import Transport

PAGE_SIZE = 100

RUNNERS_QUERY = """
query FleetRunners($after: String) {
  runners(first: 100, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id description runnerType tagList paused locked runUntagged accessLevel maximumTimeout
      maintenanceNote contactedAt tokenExpiresAt
      groups { nodes { fullPath } }
      projects { nodes { fullPath } }
      managers { nodes { systemId contactedAt } }
    }
  }
}
"""

ADMIN_HINT = "Reading every runner of the instance needs an administrator's access token."

# Words of a GraphQL error that mean "this GitLab's schema lacks what the query asks".
_SCHEMA_MISMATCH = ("doesn't exist on type", "unknown argument", "schema may differ", "no graphql")


class FleetRunnersMixin:
    """``fleet_runners()``: the instance's runners for ``fleet plan``."""

    _t: Transport
    graphql: GraphQL

    def fleet_runners(self) -> tuple[ObservedRunner, ...]:
        """Every runner of the instance (GraphQL pages of 100; REST when GraphQL cannot).

        Raises:
            GitLabError: GitLab refused (the token is not an administrator's, for instance).
        """
        try:
            nodes = list(self.graphql.nodes(RUNNERS_QUERY, {}, ("runners",)))
        except GitLabError as exc:
            text = f"{exc.message} {exc.hint or ''}".lower()
            if "not available" in text or "permission" in text:
                raise GitLabError(exc.message, hint=ADMIN_HINT) from None
            if not any(marker in text for marker in _SCHEMA_MISMATCH):
                raise
            return self._fleet_runners_rest()
        return tuple(_from_node(node) for node in nodes)

    def _fleet_runners_rest(self) -> tuple[ObservedRunner, ...]:
        listed = list(
            self._t.paginate(
                "/runners/all",
                {"per_page": PAGE_SIZE},
                what="listing every runner",
                hints={403: ADMIN_HINT},
            )
        )
        found: list[ObservedRunner] = []
        for item in listed:
            rid = int(item["id"])
            details = self._t.request(
                "get", f"/runners/{rid}", what=f"reading runner #{rid}", missing=(404,)
            )
            if details is None:
                continue  # deleted meanwhile
            managers = self._t.request(
                "get",
                f"/runners/{rid}/managers",
                what=f"reading the managers of runner #{rid}",
                missing=(404,),
            )
            found.append(
                _from_rest(
                    self._t.json(details), self._t.json(managers) if managers is not None else []
                )
            )
        return tuple(found)


def _gid(value: Any) -> int:
    """``gid://gitlab/Ci::Runner/42`` -> 42."""
    return int(str(value).rsplit("/", 1)[-1])


def _paths(connection: Any) -> tuple[str, ...]:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    found = (n.get("fullPath") for n in nodes or () if isinstance(n, dict))
    return tuple(str(p) for p in found if p)


def _managers(items: Any, system_id: str, contacted_at: str) -> tuple[ObservedManager, ...]:
    """Managers from GraphQL nodes or REST objects (their keys differ in case only)."""
    return tuple(
        ObservedManager(str(m.get(system_id) or ""), parse_time(m.get(contacted_at)))
        for m in (items if isinstance(items, list) else ())
        if isinstance(m, dict)
    )


def _from_node(node: dict[str, Any]) -> ObservedRunner:
    managers = node.get("managers")
    manager_nodes = managers.get("nodes") if isinstance(managers, dict) else None
    return ObservedRunner(
        id=_gid(node["id"]),
        description=str(node.get("description") or ""),
        runner_type=str(node.get("runnerType") or "").lower(),
        tags=tuple(str(t) for t in node.get("tagList") or ()),
        paused=bool(node.get("paused")),
        locked=bool(node.get("locked")),
        run_untagged=bool(node.get("runUntagged")),
        access_level=str(node.get("accessLevel") or "").lower(),
        maximum_timeout=node.get("maximumTimeout"),
        maintenance_note=node.get("maintenanceNote"),
        contacted_at=parse_time(node.get("contactedAt")),
        token_expires_at=parse_time(node.get("tokenExpiresAt")),
        managers=_managers(manager_nodes, "systemId", "contactedAt"),
        scope_paths=_paths(node.get("groups")) + _paths(node.get("projects")),
    )


def _from_rest(data: Any, managers: Any) -> ObservedRunner:
    if not isinstance(data, dict) or "id" not in data:
        raise GitLabError("GitLab sent a runner without an id.")
    tags = data.get("tag_list")
    if isinstance(tags, str):
        tags = [t for t in tags.split(",") if t]
    groups = [g for g in data.get("groups") or () if isinstance(g, dict)]
    projects = [p for p in data.get("projects") or () if isinstance(p, dict)]
    paths = tuple(
        str(g.get("web_url", "")).split("/groups/", 1)[-1]
        for g in groups
        if "/groups/" in str(g.get("web_url", ""))
    ) + tuple(str(p["path_with_namespace"]) for p in projects if p.get("path_with_namespace"))
    return ObservedRunner(
        id=int(data["id"]),
        description=str(data.get("description") or ""),
        runner_type=str(data.get("runner_type") or ""),
        tags=tuple(str(t) for t in tags or ()),
        paused=bool(data.get("paused", not data.get("active", True))),
        locked=bool(data.get("locked")),
        run_untagged=bool(data.get("run_untagged")),
        access_level=str(data.get("access_level") or ""),
        maximum_timeout=data.get("maximum_timeout"),
        maintenance_note=data.get("maintenance_note"),
        contacted_at=parse_time(data.get("contacted_at")),
        token_expires_at=parse_time(data.get("token_expires_at")),
        managers=_managers(managers, "system_id", "contacted_at"),
        scope_paths=paths,
    )
