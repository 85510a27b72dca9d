"""REST v4 groups and namespaces: nested groups, their projects and descendants."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import (
    MAINTAINER,
    OWNER,
    Identity,
    descendant_ids,
    find_namespace,
    group_route,
    load_group,
    user_route,
    visible_project_ids,
)
from provisioner.sandbox.state import new_token, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    forbidden,
    json_response,
    not_found,
    paginate,
    query_params,
    to_bool,
    to_int,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store


# Group and project paths (GitLab's ``Gitlab::PathRegex``), and visibility levels.
PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
VISIBILITIES = ("private", "internal", "public")


routes = RouteTable()


@routes.post("/api/v4/groups")
@user_route()
def create_group(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    name, path = ctx.required("name", "path")
    if not PATH_RE.match(str(path)):
        raise ApiError(
            400,
            {
                "path": [
                    "can contain only letters, digits, '_', '-' and '.'. "
                    "Cannot start with '-', end in '.git' or end in '.atom'"
                ]
            },
        )
    parent_id = to_int(ctx.arg("parent_id"), "parent_id")
    visibility = ctx.arg("visibility") or "private"
    if visibility not in VISIBILITIES:
        raise ApiError(400, "visibility does not have a valid value", key="error")
    with store.tx():
        full_path = str(path)
        if parent_id is not None:
            parent = load_group(store, ident, str(parent_id))
            from provisioner.sandbox.auth import group_access

            if not ident.is_admin and group_access(store, ident.user_id, parent["id"]) < MAINTAINER:
                raise forbidden()
            full_path = f"{parent['full_path']}/{path}"
        elif not ident.is_admin and not ident.scopes:
            raise forbidden()
        if find_namespace(store, full_path) is not None:
            raise ApiError(400, 'Failed to save group {:path=>["has already been taken"]}')
        gid = store.insert(
            "namespaces",
            {
                "kind": "group",
                "name": name,
                "path": path,
                "full_path": full_path,
                "parent_id": parent_id,
                "description": ctx.arg("description") or "",
                "visibility": visibility,
                "created_at": now_iso(),
                "runners_token": new_token("GR1348941", 20),
            },
        )
        if not ident.is_admin or parent_id is None:
            store.run(
                "INSERT OR REPLACE INTO members VALUES ('group', ?, ?, ?, ?)",
                [gid, ident.user_id, OWNER, now_iso()],
            )
    group = store.one("SELECT * FROM namespaces WHERE id = ?", [gid])
    assert group is not None
    return json_response(
        ent.group_entity(store, ctx.base_url, group, detail=True, viewer_id=ident.user_id), 201
    )


@routes.get("/api/v4/groups/{id}")
@group_route()
def get_group(ctx: Ctx, ident: Identity, group: Row) -> Response:
    store = ctx.store
    return json_response(
        ent.group_entity(store, ctx.base_url, group, detail=True, viewer_id=ident.user_id)
    )


@routes.get("/api/v4/groups")
@user_route()
@query_params(
    # The sandbox lists every group the caller can see, which is what all_available=true asks.
    supported=("search", "skip_groups", "all_available"),
    documented=(
        *("statistics", "archived", "skip_groups", "all_available", "visibility", "search"),
        *("owned", "order_by", "sort", "min_access_level", "top_level_only"),
        *("marked_for_deletion_on", "active", "repository_storage", "with_custom_attributes"),
    ),
)
def list_groups(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    skipped = {to_int(value, "skip_groups") for value in ctx.query_list("skip_groups")}
    groups = store.all("SELECT * FROM namespaces WHERE kind = 'group' ORDER BY full_path")
    rows = ctx.searched(
        (g for g in groups if g["id"] not in skipped and _may_see(store, ident, g)), "full_path"
    )
    return paginate(ctx, rows, lambda g: ent.group_entity(store, ctx.base_url, g))


@routes.get("/api/v4/groups/{id}/subgroups")
@group_route()
def list_subgroups(ctx: Ctx, _ident: Identity, group: Row) -> Response:
    store = ctx.store
    rows = store.all("SELECT * FROM namespaces WHERE parent_id = ? ORDER BY id", [group["id"]])
    return paginate(ctx, rows, lambda g: ent.group_entity(store, ctx.base_url, g))


@routes.get("/api/v4/groups/{id}/projects")
@group_route()
def group_projects(ctx: Ctx, ident: Identity, group: Row) -> Response:
    store = ctx.store
    ns_ids = (
        descendant_ids(store, group["id"])
        if to_bool(ctx.query("include_subgroups"))
        else [group["id"]]
    )
    marks = ",".join("?" * len(ns_ids))
    rows = store.all(f"SELECT * FROM projects WHERE namespace_id IN ({marks})", ns_ids)  # noqa: S608
    visible = visible_project_ids(store, ident)
    rows = [r for r in rows if r["id"] in visible]
    if ctx.query("archived") is not None:
        from provisioner.sandbox.api_archive import archived_ids

        archived, wanted = archived_ids(store), to_bool(ctx.query("archived"))
        rows = [r for r in rows if (r["id"] in archived) == wanted]
    rows = ctx.searched(rows, "name")
    order_by = ctx.query("order_by") or "created_at"
    if order_by not in (
        "id",
        "name",
        "path",
        "created_at",
        "updated_at",
        "last_activity_at",
        "similarity",
        "star_count",
    ):
        raise ApiError(400, "order_by does not have a valid value", key="error")
    sort = ctx.query("sort") or "desc"
    column = {"updated_at": "last_activity_at", "similarity": "id", "star_count": "id"}.get(
        order_by, order_by
    )
    rows.sort(key=lambda r: (r[column], r["id"]), reverse=sort == "desc")
    simple = to_bool(ctx.query("simple"))
    return paginate(
        ctx,
        rows,
        lambda r: ent.project_entity(store, ctx.base_url, r, viewer_id=ident.user_id, basic=simple),
    )


@routes.get("/api/v4/groups/{id}/descendant_groups")
@group_route()
def descendant_groups(ctx: Ctx, _ident: Identity, group: Row) -> Response:
    store = ctx.store
    ids = [i for i in descendant_ids(store, group["id"]) if i != group["id"]]
    rows = [store.one("SELECT * FROM namespaces WHERE id = ?", [i]) for i in ids]
    return paginate(
        ctx, [r for r in rows if r is not None], lambda g: ent.group_entity(store, ctx.base_url, g)
    )


@routes.get("/api/v4/namespaces")
@user_route()
def list_namespaces(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    rows = []
    for ns in store.all("SELECT * FROM namespaces ORDER BY id"):
        if ns["kind"] == "user":
            if (
                ident.is_admin
                or store.scalar("SELECT id FROM users WHERE namespace_id = ?", [ns["id"]])
                == ident.user_id
            ):
                rows.append(ns)
            continue
        if _may_see(store, ident, ns):
            rows.append(ns)
    return paginate(ctx, ctx.searched(rows, "full_path"), lambda ns: _namespace_doc(store, ctx, ns))


def _may_see(store: Store, ident: Identity, group: Row) -> bool:
    """True when ``ident`` may read ``group`` (``load_group`` would not refuse it)."""
    try:
        load_group(store, ident, str(group["id"]))
    except ApiError:
        return False
    return True


def _namespace_doc(store: Store, ctx: Ctx, ns: Row) -> dict[str, Any]:
    doc = ent.namespace_basic(ctx.base_url, ns)
    doc["members_count_with_descendants"] = None
    doc["billable_members_count"] = None
    doc["plan"] = "default"
    doc["trial"] = False
    doc["root_repository_size"] = None
    doc["projects_count"] = int(
        store.scalar("SELECT COUNT(*) FROM projects WHERE namespace_id = ?", [ns["id"]])
    )
    return doc


@routes.get("/api/v4/namespaces/{id}")
@user_route()
def get_namespace(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    ns = find_namespace(store, ctx.params["id"])
    if ns is None:
        raise not_found("Namespace")
    if ns["kind"] == "group":
        load_group(store, ident, str(ns["id"]))
    elif (
        not ident.is_admin
        and store.scalar("SELECT id FROM users WHERE namespace_id = ?", [ns["id"]]) != ident.user_id
    ):
        raise not_found("Namespace")
    return json_response(_namespace_doc(store, ctx, ns))
