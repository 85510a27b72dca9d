"""REST v4 members of projects and groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import (
    GUEST,
    MAINTAINER,
    OWNER,
    Identity,
    group_route,
    project_route,
)
from provisioner.sandbox.state import now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    json_response,
    missing_param,
    not_found,
    paginate,
    to_int,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store


routes = RouteTable()


def _member_doc(store: Store, ctx: Ctx, user_id: int, level: int, created: str) -> dict[str, Any]:
    doc = ent.user_basic(store, ctx.base_url, user_id) or {}
    doc.update(
        {
            "access_level": level,
            "created_at": created,
            "expires_at": None,
            "created_by": None,
            "group_saml_identity": None,
            "membership_state": "active",
        }
    )
    return doc


def _member_routes(kind: str) -> None:
    """Register list, add and remove for the members of a ``kind`` (``project`` or ``group``)."""
    base = f"/api/v4/{kind}s/{{id}}/members"
    scoped = project_route if kind == "project" else group_route
    write_level = MAINTAINER if kind == "project" else OWNER

    @routes.get(base)
    @scoped(GUEST)
    def list_members(ctx: Ctx, _ident: Identity, src: Row) -> Response:
        store = ctx.store
        rows = store.all(
            "SELECT * FROM members WHERE source_type = ? AND source_id = ? ORDER BY user_id",
            [kind, src["id"]],
        )
        return paginate(
            ctx,
            rows,
            lambda r: _member_doc(store, ctx, r["user_id"], r["access_level"], r["created_at"]),
        )

    @routes.post(base)
    @scoped(write_level)
    def add_member(ctx: Ctx, _ident: Identity, src: Row) -> Response:
        store = ctx.store
        uid = to_int(ctx.arg("user_id"), "user_id")
        level = to_int(ctx.arg("access_level"), "access_level")
        if uid is None:
            raise missing_param("user_id")
        if level not in (5, 10, 15, 20, 30, 40, 50):
            raise ApiError(400, "access_level does not have a valid value", key="error")
        if store.one("SELECT 1 FROM users WHERE id = ?", [uid]) is None:
            raise not_found("User")
        if store.one(
            "SELECT 1 FROM members WHERE source_type=? AND source_id=? AND user_id=?",
            [kind, src["id"], uid],
        ):
            raise ApiError(409, "Member already exists")
        now = now_iso()
        store.run("INSERT INTO members VALUES (?, ?, ?, ?, ?)", [kind, src["id"], uid, level, now])
        assert uid is not None
        assert level is not None
        return json_response(_member_doc(store, ctx, uid, level, now), 201)

    @routes.delete(base + "/{user_id}")
    @scoped(write_level)
    def remove_member(ctx: Ctx, _ident: Identity, src: Row) -> Response:
        store = ctx.store
        uid = to_int(ctx.params["user_id"], "user_id")
        if (
            store.one(
                "SELECT 1 FROM members WHERE source_type=? AND source_id=? AND user_id=?",
                [kind, src["id"], uid],
            )
            is None
        ):
            raise not_found("Member")
        store.run(
            "DELETE FROM members WHERE source_type=? AND source_id=? AND user_id=?",
            [kind, src["id"], uid],
        )
        return Response(status_code=204)

    if kind == "project":
        routes.add("GET", base + "/all", list_members)


_member_routes("group")
_member_routes("project")
