"""REST v4 users: the current user, users (admin) and their personal access tokens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import (
    Identity,
    authenticate,
    require_token_scope,
    user_route,
)
from provisioner.sandbox.state import digest, new_token, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    json_response,
    not_found,
    paginate,
    query_params,
    to_bool,
    to_int,
)

if TYPE_CHECKING:
    pass


routes = RouteTable()


@routes.get("/api/v4/user")
def current_user(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_token_scope(store, ctx, ("api", "read_api", "read_user"))
    return json_response(ent.user_full(store, ctx.base_url, ident.user_id))


@routes.get("/api/v4/personal_access_tokens/self")
def token_self(ctx: Ctx) -> Response:
    """``GET /personal_access_tokens/self``: the calling token itself (any scope may ask)."""
    store = ctx.store
    auth = ctx.header("authorization") or ""
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    pat = ctx.header("private-token") or ctx.query("private_token") or bearer
    ident = authenticate(store, ctx)
    if ident is None or ident.is_job or not pat:
        raise ApiError(401, "401 Unauthorized")
    row = store.one("SELECT * FROM tokens WHERE digest = ?", [digest(pat)])
    if row is None:
        raise ApiError(401, "401 Unauthorized")
    return json_response(
        {
            "id": row["id"],
            "name": row["name"],
            "revoked": False,
            "created_at": row["created_at"],
            "description": None,
            "scopes": json.loads(row["scopes"]),
            "user_id": row["user_id"],
            "last_used_at": None,
            "active": True,
            "expires_at": row["expires_at"],
            "last_used_ips": [],
        }
    )


@routes.post("/api/v4/users")
@user_route(admin=True)
def create_user(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    (username,) = ctx.required("username")
    name = ctx.arg("name") or username
    email = ctx.arg("email") or f"{username}@example.com"
    with store.tx():
        if store.one(
            "SELECT 1 FROM users WHERE lower(username) = lower(?)", [username]
        ) or store.one("SELECT 1 FROM namespaces WHERE lower(full_path) = lower(?)", [username]):
            raise ApiError(409, "Username has already been taken")
        now = now_iso()
        ns = store.insert(
            "namespaces",
            {
                "kind": "user",
                "name": name,
                "path": username,
                "full_path": username,
                "created_at": now,
            },
        )
        uid = store.insert(
            "users",
            {
                "username": username,
                "name": name,
                "email": email,
                "is_admin": 1 if to_bool(ctx.arg("admin")) else 0,
                "created_at": now,
                "namespace_id": ns,
            },
        )
    return json_response(ent.user_full(store, ctx.base_url, uid), 201)


@routes.get("/api/v4/users/{user_id}")
@user_route()
def get_user(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    uid = to_int(ctx.params["user_id"], "id")
    if store.one("SELECT 1 FROM users WHERE id = ?", [uid]) is None:
        raise not_found("User")
    assert uid is not None
    return json_response(ent.user_full(store, ctx.base_url, uid))


@routes.get("/api/v4/users")
@user_route()
@query_params(
    supported=("username", "search", "blocked", "active"),
    documented=(
        *("username", "search", "active", "blocked", "external", "exclude_external"),
        *("exclude_internal", "without_project_bots", "extern_uid", "provider"),
        *("created_before", "created_after", "order_by", "sort", "two_factor"),
        *("without_projects", "admins", "auditors", "saml_provider_id", "skip_ldap"),
        *("exclude_active", "humans", "public_email", "with_custom_attributes"),
    ),
)
def list_users(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    username = ctx.query("username")
    rows = store.all("SELECT id, username, name, email FROM users ORDER BY id")
    if username:
        rows = [r for r in rows if r["username"].lower() == username.lower()]
    search = (ctx.query("search") or "").lower()
    if search:
        # GitLab matches name and username by substring, and an email address only whole.
        rows = [
            r
            for r in rows
            if search in r["username"].lower()
            or search in r["name"].lower()
            or search == r["email"].lower()
        ]
    if to_bool(ctx.query("blocked")):
        rows = []  # the sandbox has no way to block a user: every user is active
    return paginate(ctx, rows, lambda r: ent.user_full(store, ctx.base_url, r["id"]))


@routes.post("/api/v4/users/{user_id}/personal_access_tokens")
@user_route(admin=True)
def create_user_token(ctx: Ctx, _ident: Identity) -> Response:
    """``POST /users/:id/personal_access_tokens`` (admin)."""
    store = ctx.store
    uid = to_int(ctx.params["user_id"], "id")
    if store.one("SELECT 1 FROM users WHERE id = ?", [uid]) is None:
        raise not_found("User")
    name, scopes = ctx.required("name", "scopes")
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    token = new_token("glpat-", 20)
    now = now_iso()
    tid = store.insert(
        "tokens",
        {
            "user_id": uid,
            "name": name,
            "digest": digest(token),
            "scopes": json.dumps(list(scopes)),
            "created_at": now,
            "expires_at": ctx.arg("expires_at"),
        },
    )
    return json_response(
        {
            "id": tid,
            "name": name,
            "revoked": False,
            "created_at": now,
            "description": None,
            "scopes": list(scopes),
            "user_id": uid,
            "last_used_at": None,
            "active": True,
            "expires_at": ctx.arg("expires_at"),
            "token": token,
        },
        201,
    )
