"""REST v4 project archiving: ``POST /projects/:id/archive`` and ``/unarchive``.

Archived projects are read-only in GitLab and left out of group listings that pass
``archived=false`` (REST) or ``includeArchived: false`` (GraphQL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import MAINTAINER, Identity, project_route
from provisioner.sandbox.web import Ctx, RouteTable, json_response

if TYPE_CHECKING:
    from starlette.responses import Response

    from provisioner.sandbox.state import Row, Store

routes = RouteTable()


def archived_ids(store: Store) -> set[int]:
    """The ids of every archived project."""
    return {int(r["project_id"]) for r in store.all("SELECT project_id FROM archived_projects")}


def _set(ctx: Ctx, ident: Identity, project: Row, archived: bool) -> Response:
    store = ctx.store
    with store.tx():
        if archived:
            store.run(
                "INSERT OR IGNORE INTO archived_projects (project_id) VALUES (?)", [project["id"]]
            )
        else:
            store.run("DELETE FROM archived_projects WHERE project_id = ?", [project["id"]])
    doc = ent.project_entity(store, ctx.base_url, project, viewer_id=ident.user_id)
    doc["archived"] = archived
    return json_response(doc, 201)


@routes.post("/api/v4/projects/{id}/archive")
@project_route(MAINTAINER)
def archive_project(ctx: Ctx, ident: Identity, project: Row) -> Response:
    """Archive a project (idempotent), as GitLab: 201 with the project."""
    return _set(ctx, ident, project, True)


@routes.post("/api/v4/projects/{id}/unarchive")
@project_route(MAINTAINER)
def unarchive_project(ctx: Ctx, ident: Identity, project: Row) -> Response:
    """Unarchive a project (idempotent)."""
    return _set(ctx, ident, project, False)
