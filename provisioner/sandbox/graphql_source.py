"""``POST /api/graphql``: the sandbox's data, per request and viewer, for ``graphql_api``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provisioner.sandbox.api_archive import archived_ids
from provisioner.sandbox.auth import (
    Identity,
    authenticate,
    descendant_ids,
    find_group,
    find_project,
    load_group,
    load_project,
    visible_project_ids,
)
from provisioner.sandbox.state import parse_iso
from provisioner.sandbox.web import ApiError, Ctx, json_response, parse_json_body

if TYPE_CHECKING:
    from starlette.responses import Response

    from provisioner.sandbox.graphql_api import GqlGroup, GqlPipeline, GqlProject, GqlUser
    from provisioner.sandbox.state import Row, Store


class StoreDataSource:
    """:class:`graphql_api.GraphQLDataSource` over the sandbox store, for one viewer."""

    def __init__(self, store: Store, base_url: str, viewer: Identity | None) -> None:
        self.store = store
        self.base = base_url
        self.viewer = viewer

    def current_user(self) -> GqlUser | None:
        from provisioner.sandbox.graphql_api import GqlUser

        if self.viewer is None:
            return None
        row = self.store.one("SELECT * FROM users WHERE id = ?", [self.viewer.user_id])
        assert row is not None
        return GqlUser(
            id=row["id"],
            username=row["username"],
            name=row["name"],
            web_url=f"{self.base}/{row['username']}",
        )

    def group(self, full_path: str) -> GqlGroup | None:
        from provisioner.sandbox.graphql_api import GqlGroup

        row = find_group(self.store, full_path)
        if row is None or str(full_path).isdigit():
            return None
        if self.viewer is None:
            if row["visibility"] != "public":
                return None
        else:
            try:
                load_group(self.store, self.viewer, str(row["id"]))
            except ApiError:
                return None
        return GqlGroup(
            id=row["id"],
            full_path=row["full_path"],
            name=row["name"],
            web_url=f"{self.base}/groups/{row['full_path']}",
        )

    def _project(self, row: Row, archived: set[int] | None = None) -> GqlProject:
        from provisioner.sandbox.api_archive import archived_ids
        from provisioner.sandbox.graphql_api import GqlProject
        from provisioner.sandbox.repo import has_commits, repo_dir

        ns = self.store.one("SELECT full_path FROM namespaces WHERE id = ?", [row["namespace_id"]])
        assert ns is not None
        full_path = f"{ns['full_path']}/{row['path']}"
        return GqlProject(
            id=row["id"],
            full_path=full_path,
            name=row["name"],
            web_url=f"{self.base}/{full_path}",
            last_activity_at=parse_iso(row["last_activity_at"]),
            default_branch=row["default_branch"]
            if has_commits(repo_dir(self.store, row))
            else None,
            archived=row["id"] in (archived if archived is not None else archived_ids(self.store)),
        )

    def _visible(self) -> set[int]:
        if self.viewer is None:
            return {
                r["id"]
                for r in self.store.all("SELECT id FROM projects WHERE visibility = 'public'")
            }
        return visible_project_ids(self.store, self.viewer)

    def group_projects(self, group_id: int, include_subgroups: bool) -> Sequence[GqlProject]:
        ns_ids = descendant_ids(self.store, group_id) if include_subgroups else [group_id]
        marks = ",".join("?" * len(ns_ids))
        rows = self.store.all(
            f"SELECT * FROM projects WHERE namespace_id IN ({marks}) ORDER BY id",  # noqa: S608
            ns_ids,
        )
        visible = self._visible()
        archived = archived_ids(self.store)
        return [self._project(r, archived) for r in rows if r["id"] in visible]

    def project(self, full_path: str) -> GqlProject | None:
        row = find_project(self.store, full_path)
        if row is None or str(full_path).isdigit():
            return None
        if self.viewer is None:
            return self._project(row) if row["visibility"] == "public" else None
        try:
            load_project(self.store, self.viewer, str(row["id"]))
        except ApiError:
            return None
        return self._project(row)

    def pipelines(self, project_id: int, ref: str | None, limit: int) -> Sequence[GqlPipeline]:
        from provisioner.sandbox.entities import project_path_of, user_basic
        from provisioner.sandbox.graphql_api import GqlPipeline, GqlUser

        args: list[Any] = [project_id]
        sql = "SELECT * FROM pipelines WHERE project_id = ?"
        if ref is not None:
            sql += " AND ref = ?"
            args.append(ref)
        rows = self.store.all(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        path = project_path_of(self.store, project_id)
        out = []
        for row in rows:
            created = parse_iso(row["created_at"])
            updated = parse_iso(row["updated_at"])
            started = parse_iso(row["started_at"])
            finished = parse_iso(row["finished_at"])
            assert created is not None
            assert updated is not None
            duration = int((finished - started).total_seconds()) if finished and started else None
            user = user_basic(self.store, self.base, row["user_id"])
            out.append(
                GqlPipeline(
                    id=row["id"],
                    iid=row["iid"],
                    status=row["status"],
                    ref=row["ref"],
                    sha=row["sha"],
                    created_at=created,
                    updated_at=updated,
                    finished_at=finished,
                    duration=duration,
                    path=f"/{path}/-/pipelines/{row['id']}",
                    source=row["source"],
                    started_at=started,
                    user=GqlUser(
                        id=user["id"],
                        username=user["username"],
                        name=user["name"],
                        web_url=user["web_url"],
                    )
                    if user
                    else None,
                )
            )
        return out


def handle(ctx: Ctx) -> Response:
    from provisioner.sandbox.graphql_api import execute_graphql

    store: Store = ctx.app.store
    try:
        viewer = authenticate(store, ctx)
    except ApiError:
        return json_response({"errors": [{"message": "Invalid token"}]}, 401)
    try:
        body = parse_json_body(ctx.body or b"{}")
        variables = body.get("variables") if isinstance(body, dict) else None
        if isinstance(variables, str):
            variables = parse_json_body((variables or "{}").encode("utf-8", "surrogatepass"))
    except ApiError:
        return json_response({"errors": [{"message": "Invalid JSON"}]}, 400)
    if not isinstance(body, dict):
        return json_response({"errors": [{"message": "Invalid request"}]}, 400)
    query = body.get("query")
    result = execute_graphql(
        StoreDataSource(store, ctx.base_url, viewer),
        query if isinstance(query, str) else "",
        variables if isinstance(variables, dict) else None,
        body.get("operationName"),
    )
    return json_response(result)
