"""REST v4: version, users and tokens, groups, projects, members, variables, repository."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from provisioner.sandbox import entities as ent
from provisioner.sandbox import repo
from provisioner.sandbox.auth import (
    DEVELOPER,
    MAINTAINER,
    OWNER,
    Identity,
    authenticate,
    descendant_ids,
    find_namespace,
    load_group,
    load_project,
    require_admin,
    require_user,
    visible_project_ids,
)
from provisioner.sandbox.state import digest, new_token, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    Handler,
    bad_request,
    forbidden,
    json_response,
    missing_param,
    not_found,
    paginate,
    to_bool,
    to_int,
)

if TYPE_CHECKING:
    from starlette.responses import Response

    from provisioner.sandbox.state import Row, Store

PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
VISIBILITIES = ("private", "internal", "public")


def version(ctx: Ctx) -> Response:
    require_user(ctx.store, ctx, write=False)
    return json_response(
        {
            "version": ent.VERSION,
            "revision": ent.REVISION,
            "kas": {
                "enabled": False,
                "externalUrl": None,
                "externalK8sProxyUrl": None,
                "version": None,
            },
            "enterprise": False,
        }
    )


def current_user(ctx: Ctx) -> Response:
    store = ctx.store
    ident = authenticate(store, ctx)
    if ident is None or ident.is_job:
        raise ApiError(401, "401 Unauthorized")
    if not ident.scopes & {"api", "read_api", "read_user"}:
        raise ApiError(
            403,
            body={
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by "
                "the access token.",
                "scope": "api read_api read_user",
            },
        )
    return json_response(ent.user_full(store, ctx.base_url, ident.user_id))


def create_user(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    require_admin(ident)
    username = ctx.arg("username")
    if not username:
        raise missing_param("username")
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


def get_user(ctx: Ctx) -> Response:
    store = ctx.store
    require_user(store, ctx)
    uid = to_int(ctx.params["user_id"], "id")
    if store.one("SELECT 1 FROM users WHERE id = ?", [uid]) is None:
        raise not_found("User")
    assert uid is not None
    return json_response(ent.user_full(store, ctx.base_url, uid))


def list_users(ctx: Ctx) -> Response:
    store = ctx.store
    require_user(store, ctx)
    username = ctx.query("username")
    rows = store.all("SELECT id FROM users ORDER BY id")
    if username:
        rows = [
            r
            for r in rows
            if store.scalar("SELECT username FROM users WHERE id=?", [r["id"]]).lower()
            == username.lower()
        ]
    return paginate(ctx, rows, lambda r: ent.user_full(store, ctx.base_url, r["id"]))


def create_user_token(ctx: Ctx) -> Response:
    """``POST /users/:id/personal_access_tokens`` (admin)."""
    store = ctx.store
    ident = require_user(store, ctx)
    require_admin(ident)
    uid = to_int(ctx.params["user_id"], "id")
    if store.one("SELECT 1 FROM users WHERE id = ?", [uid]) is None:
        raise not_found("User")
    name = ctx.arg("name")
    scopes = ctx.arg("scopes")
    if not name:
        raise missing_param("name")
    if not scopes:
        raise missing_param("scopes")
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


# groups -------------------------------------------------------------------------------------


def create_group(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    name, path = ctx.arg("name"), ctx.arg("path")
    if not name:
        raise missing_param("name")
    if not path:
        raise missing_param("path")
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


def get_group(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    group = load_group(store, ident, ctx.params["id"])
    return json_response(
        ent.group_entity(store, ctx.base_url, group, detail=True, viewer_id=ident.user_id)
    )


def list_groups(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    rows = []
    for g in store.all("SELECT * FROM namespaces WHERE kind = 'group' ORDER BY full_path"):
        try:
            load_group(store, ident, str(g["id"]))
        except ApiError:
            continue
        rows.append(g)
    search = ctx.query("search")
    if search:
        rows = [g for g in rows if search.lower() in g["full_path"].lower()]
    return paginate(ctx, rows, lambda g: ent.group_entity(store, ctx.base_url, g))


def list_subgroups(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    group = load_group(store, ident, ctx.params["id"])
    rows = store.all("SELECT * FROM namespaces WHERE parent_id = ? ORDER BY id", [group["id"]])
    return paginate(ctx, rows, lambda g: ent.group_entity(store, ctx.base_url, g))


def group_projects(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    group = load_group(store, ident, ctx.params["id"])
    ns_ids = (
        descendant_ids(store, group["id"])
        if to_bool(ctx.query("include_subgroups"))
        else [group["id"]]
    )
    marks = ",".join("?" * len(ns_ids))
    rows = store.all(f"SELECT * FROM projects WHERE namespace_id IN ({marks})", ns_ids)  # noqa: S608
    visible = visible_project_ids(store, ident)
    rows = [r for r in rows if r["id"] in visible]
    search = ctx.query("search")
    if search:
        rows = [r for r in rows if search.lower() in r["name"].lower()]
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


# projects -----------------------------------------------------------------------------------


def create_project(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    name, path = ctx.arg("name"), ctx.arg("path")
    if not name and not path:
        raise ApiError(
            400, "name, path are missing, at least one parameter must be provided", key="error"
        )
    name = str(name or path)
    path = str(path or re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower())
    if not PATH_RE.match(path) or path.endswith((".git", ".atom")):
        raise ApiError(
            400,
            {
                "path": [
                    "can contain only letters, digits, '_', '-' and '.'. "
                    "Cannot start with '-', end in '.git' or end in '.atom'"
                ]
            },
        )
    visibility = ctx.arg("visibility") or "private"
    if visibility not in VISIBILITIES:
        raise ApiError(400, "visibility does not have a valid value", key="error")
    ns_id = to_int(ctx.arg("namespace_id"), "namespace_id")
    with store.tx():
        if ns_id is None:
            ns_id = int(
                store.scalar("SELECT namespace_id FROM users WHERE id = ?", [ident.user_id])
            )
        else:
            ns = store.one("SELECT * FROM namespaces WHERE id = ?", [ns_id])
            if ns is None:
                raise not_found("Namespace")
            if ns["kind"] == "group":
                load_group(store, ident, str(ns_id), min_level=DEVELOPER)
            elif (
                not ident.is_admin
                and store.scalar("SELECT id FROM users WHERE namespace_id = ?", [ns_id])
                != ident.user_id
            ):
                raise forbidden()
        taken = store.one(
            "SELECT 1 FROM projects WHERE namespace_id = ? AND "
            "(lower(path) = lower(?) OR lower(name) = lower(?))",
            [ns_id, path, name],
        )
        if taken:
            raise ApiError(
                400,
                {
                    "project_namespace.name": ["has already been taken"],
                    "name": ["has already been taken"],
                    "path": ["has already been taken"],
                },
            )
        now = now_iso()
        default_branch = str(ctx.arg("default_branch") or "main")
        pid = store.insert(
            "projects",
            {
                "name": name,
                "path": path,
                "namespace_id": ns_id,
                "description": ctx.arg("description"),
                "visibility": visibility,
                "default_branch": default_branch,
                "created_at": now,
                "last_activity_at": now,
                "creator_id": ident.user_id,
                "ci_config_path": ctx.arg("ci_config_path"),
                "shared_runners_enabled": 1
                if to_bool(ctx.arg("shared_runners_enabled"), True)
                else 0,
                "group_runners_enabled": 1
                if to_bool(ctx.arg("group_runners_enabled"), True)
                else 0,
                "runners_token": new_token("GR1348941", 20),
            },
        )
        store.run(
            "INSERT OR REPLACE INTO members VALUES ('project', ?, ?, ?, ?)",
            [pid, ident.user_id, MAINTAINER, now],
        )
        project = store.one("SELECT * FROM projects WHERE id = ?", [pid])
        assert project is not None
        path_dir = repo.repo_dir(store, project)
        repo.init(path_dir, default_branch)
        if to_bool(ctx.arg("initialize_with_readme")):
            repo.create_commit(
                path_dir,
                branch=default_branch,
                start_sha=None,
                actions=[{"action": "create", "file_path": "README.md", "content": f"# {name}\n"}],
                message="Initial commit",
                author_name="Administrator",
                author_email="admin@example.com",
            )
    return json_response(
        ent.project_entity(store, ctx.base_url, project, viewer_id=ident.user_id), 201
    )


def get_project(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    return json_response(
        ent.project_entity(store, ctx.base_url, project, viewer_id=ident.user_id, with_access=True)
    )


def list_projects(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    visible = visible_project_ids(store, ident)
    rows = [r for r in store.all("SELECT * FROM projects ORDER BY id DESC") if r["id"] in visible]
    search = ctx.query("search")
    if search:
        rows = [r for r in rows if search.lower() in r["name"].lower()]
    return paginate(
        ctx, rows, lambda r: ent.project_entity(store, ctx.base_url, r, viewer_id=ident.user_id)
    )


def edit_project(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=MAINTAINER)
    changes: dict[str, Any] = {}
    for key in ("description", "ci_config_path", "default_branch", "name"):
        if ctx.arg(key) is not None:
            changes[key] = ctx.arg(key)
    for key in ("shared_runners_enabled", "group_runners_enabled"):
        if ctx.arg(key) is not None:
            changes[key] = 1 if to_bool(ctx.arg(key)) else 0
    if ctx.arg("visibility") is not None:
        if ctx.arg("visibility") not in VISIBILITIES:
            raise ApiError(400, "visibility does not have a valid value", key="error")
        changes["visibility"] = ctx.arg("visibility")
    for key, col in (
        ("build_timeout", "build_timeout"),
        ("ci_default_git_depth", "ci_default_git_depth"),
    ):
        if ctx.arg(key) is not None:
            changes[col] = to_int(ctx.arg(key), key)
    if ctx.arg("ci_job_token_scope_enabled") is not None:
        changes["job_token_scope_enabled"] = (
            1 if to_bool(ctx.arg("ci_job_token_scope_enabled")) else 0
        )
    changes["last_activity_at"] = now_iso()
    store.update("projects", project["id"], changes)
    if "default_branch" in changes:
        repo.git(
            repo.repo_dir(store, project),
            "symbolic-ref",
            "HEAD",
            f"refs/heads/{changes['default_branch']}",
        )
    fresh = store.one("SELECT * FROM projects WHERE id = ?", [project["id"]])
    assert fresh is not None
    return json_response(ent.project_entity(store, ctx.base_url, fresh, viewer_id=ident.user_id))


def delete_project(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(
        store, ident, ctx.params["id"], min_level=OWNER if not ident.is_admin else 0
    )
    import shutil

    with store.tx():
        for table, col in (
            ("projects", "id"),
            ("runner_projects", "project_id"),
            ("variables", "project_id"),
            ("pipelines", "project_id"),
            ("jobs", "project_id"),
            ("packages", "project_id"),
        ):
            store.run(f"DELETE FROM {table} WHERE {col} = ?", [project["id"]])  # noqa: S608
        store.run(
            "DELETE FROM members WHERE source_type = 'project' AND source_id = ?", [project["id"]]
        )
    shutil.rmtree(repo.repo_dir(store, project), ignore_errors=True)
    return json_response({"message": "202 Accepted"}, 202)


# members ------------------------------------------------------------------------------------


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


def _source(ctx: Ctx, store: Store, kind: str, write: bool) -> Row:
    ident = require_user(store, ctx)
    if kind == "project":
        return load_project(store, ident, ctx.params["id"], min_level=MAINTAINER if write else 10)
    return load_group(store, ident, ctx.params["id"], min_level=OWNER if write else 10)


def members_handlers(kind: str) -> dict[str, Handler]:
    def list_members(ctx: Ctx) -> Response:
        store = ctx.store
        src = _source(ctx, store, kind, False)
        rows = store.all(
            "SELECT * FROM members WHERE source_type = ? AND source_id = ? ORDER BY user_id",
            [kind, src["id"]],
        )
        return paginate(
            ctx,
            rows,
            lambda r: _member_doc(store, ctx, r["user_id"], r["access_level"], r["created_at"]),
        )

    def add_member(ctx: Ctx) -> Response:
        store = ctx.store
        src = _source(ctx, store, kind, True)
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

    def remove_member(ctx: Ctx) -> Response:
        store = ctx.store
        src = _source(ctx, store, kind, True)
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
        from starlette.responses import Response as Plain

        return Plain(status_code=204)

    return {"list": list_members, "add": add_member, "remove": remove_member}


# job token scope ----------------------------------------------------------------------------


def allowlist_list(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=MAINTAINER)
    rows = store.all(
        "SELECT p.* FROM job_token_allowlist a JOIN projects p "
        "ON p.id = a.source_project_id WHERE a.project_id = ? ORDER BY p.id",
        [project["id"]],
    )
    return paginate(ctx, rows, lambda r: ent.project_entity(store, ctx.base_url, r, basic=True))


def allowlist_add(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=MAINTAINER)
    target_id = to_int(ctx.arg("target_project_id"), "target_project_id")
    if target_id is None:
        raise missing_param("target_project_id")
    target = load_project(store, ident, str(target_id))
    if store.one(
        "SELECT 1 FROM job_token_allowlist WHERE project_id=? AND source_project_id=?",
        [project["id"], target["id"]],
    ):
        raise bad_request("Target project is already in the job token scope")
    store.run("INSERT INTO job_token_allowlist VALUES (?, ?)", [project["id"], target["id"]])
    return json_response(
        {"source_project_id": project["id"], "target_project_id": target["id"]}, 201
    )


# variables ----------------------------------------------------------------------------------

VAR_KEY_RE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")


def _var_doc(row: Row) -> dict[str, Any]:
    return {
        "variable_type": row["variable_type"],
        "key": row["key"],
        "value": row["value"],
        "hidden": False,
        "protected": bool(row["protected"]),
        "masked": bool(row["masked"]),
        "raw": bool(row["raw"]),
        "environment_scope": row["environment_scope"],
        "description": row["description"],
    }


def _masked_ok(value: str) -> bool:
    return (
        len(value) >= 8 and "\n" not in value and re.fullmatch(r"[\x20-\x7e]+", value) is not None
    )


def _var_owner(ctx: Ctx, store: Store, ident: Identity) -> int:
    """The ``variables.project_id`` value: a project id, or minus the id for a group's."""
    if ctx.raw_path.startswith("/api/v4/groups/"):
        group = load_group(store, ident, ctx.params["id"], min_level=OWNER)
        return -int(group["id"])
    return int(load_project(store, ident, ctx.params["id"], min_level=MAINTAINER)["id"])


def list_variables(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    owner = _var_owner(ctx, store, ident)
    rows = store.all("SELECT * FROM variables WHERE project_id = ? ORDER BY rowid", [owner])
    return paginate(ctx, rows, _var_doc)


def get_variable(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    owner = _var_owner(ctx, store, ident)
    row = store.one(
        "SELECT * FROM variables WHERE project_id = ? AND key = ?",
        [owner, ctx.params["key"]],
    )
    if row is None:
        raise not_found("Variable")
    return json_response(_var_doc(row))


def _var_values(ctx: Ctx, existing: Row | None) -> dict[str, Any]:
    def pick(name: str, default: Any) -> Any:
        value = ctx.arg(name)
        return default if value is None else value

    vtype = pick("variable_type", existing["variable_type"] if existing else "env_var")
    if vtype not in ("env_var", "file"):
        raise ApiError(400, "variable_type does not have a valid value", key="error")
    value = pick("value", existing["value"] if existing else None)
    if value is None:
        raise missing_param("value")
    masked = to_bool(pick("masked", existing["masked"] if existing else False))
    if masked and not _masked_ok(str(value)):
        raise ApiError(400, {"value": ["is invalid"]})
    return {
        "value": str(value),
        "variable_type": vtype,
        "protected": 1
        if to_bool(pick("protected", existing["protected"] if existing else 0))
        else 0,
        "masked": 1 if masked else 0,
        "raw": 1 if to_bool(pick("raw", existing["raw"] if existing else 0)) else 0,
        "environment_scope": str(
            pick("environment_scope", existing["environment_scope"] if existing else "*")
        ),
        "description": pick("description", existing["description"] if existing else None),
    }


def create_variable(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    owner = _var_owner(ctx, store, ident)
    key = ctx.arg("key")
    if not key:
        raise missing_param("key")
    if not VAR_KEY_RE.match(str(key)):
        raise ApiError(400, {"key": ["can contain only letters, digits and '_'."]})
    values = _var_values(ctx, None)
    if store.one(
        "SELECT 1 FROM variables WHERE project_id=? AND key=? AND environment_scope=?",
        [owner, key, values["environment_scope"]],
    ):
        raise ApiError(400, {"key": [f"({key}) has already been taken"]})
    store.insert("variables", {"project_id": owner, "key": key, **values})
    row = store.one("SELECT * FROM variables WHERE project_id = ? AND key = ?", [owner, key])
    assert row is not None
    return json_response(_var_doc(row), 201)


def update_variable(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    owner = _var_owner(ctx, store, ident)
    key = ctx.params["key"]
    row = store.one("SELECT * FROM variables WHERE project_id = ? AND key = ?", [owner, key])
    if row is None:
        raise not_found("Variable")
    values = _var_values(ctx, row)
    sets = ", ".join(f"{k} = ?" for k in values)
    store.run(
        f"UPDATE variables SET {sets} WHERE project_id = ? AND key = ?",  # noqa: S608
        [*values.values(), owner, key],
    )
    fresh = store.one("SELECT * FROM variables WHERE project_id = ? AND key = ?", [owner, key])
    assert fresh is not None
    return json_response(_var_doc(fresh))


def delete_variable(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    owner = _var_owner(ctx, store, ident)
    if (
        store.one(
            "SELECT 1 FROM variables WHERE project_id = ? AND key = ?",
            [owner, ctx.params["key"]],
        )
        is None
    ):
        raise not_found("Variable")
    store.run("DELETE FROM variables WHERE project_id = ? AND key = ?", [owner, ctx.params["key"]])
    from starlette.responses import Response as Plain

    return Plain(status_code=204)


# application settings -----------------------------------------------------------------------


def _settings_doc(store: Store) -> dict[str, Any]:
    return {
        "id": 1,
        "allow_runner_registration_token": store.setting("allow_runner_registration_token")
        == "true",
        "default_branch_name": "main",
        "signup_enabled": False,
        "max_artifacts_size": 100,
        "default_ci_config_path": None,
    }


def get_settings(ctx: Ctx) -> Response:
    store = ctx.store
    require_admin(require_user(store, ctx))
    return json_response(_settings_doc(store))


def put_settings(ctx: Ctx) -> Response:
    store = ctx.store
    require_admin(require_user(store, ctx))
    value = ctx.arg("allow_runner_registration_token")
    if value is not None:
        store.set_setting("allow_runner_registration_token", "true" if to_bool(value) else "false")
    return json_response(_settings_doc(store))


# repository ---------------------------------------------------------------------------------


def create_commit(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=DEVELOPER)
    body = ctx.json()
    for name in ("branch", "commit_message", "actions"):
        if not body.get(name):
            raise missing_param(name)
    actions = body["actions"]
    if not isinstance(actions, list):
        raise ApiError(400, "actions is invalid", key="error")
    branch = str(body["branch"])
    path = repo.repo_dir(store, project)
    repo.init(path, project["default_branch"])
    current = repo.resolve(path, branch)
    start_sha: str | None = current[0] if current and current[1] == "branch" else None
    if start_sha is None:
        start = body.get("start_sha") or body.get("start_branch")
        if start:
            found = repo.resolve(path, str(start))
            if found is None:
                raise (
                    bad_request(f"Invalid reference name: {start}")
                    if body.get("start_branch")
                    else bad_request(f"Invalid commit ID: {start}")
                )
            start_sha = found[0]
        elif repo.has_commits(path):
            raise bad_request("You can only create or edit files when you are on a branch")
    user = store.one("SELECT * FROM users WHERE id = ?", [ident.user_id])
    assert user is not None
    try:
        sha, stats = repo.create_commit(
            path,
            branch=branch,
            start_sha=start_sha,
            actions=actions,
            message=str(body["commit_message"]),
            author_name=str(body.get("author_name") or user["name"]),
            author_email=str(body.get("author_email") or user["email"]),
        )
    except repo.RepoError as exc:
        raise ApiError(400, str(exc)) from exc
    store.update("projects", project["id"], {"last_activity_at": now_iso()})
    doc = ent.commit_entity(store, ctx.base_url, project, sha)
    doc.update({"stats": stats, "status": None, "project_id": project["id"], "last_pipeline": None})
    return json_response(doc, 201)


def get_commit(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    found = repo.resolve(repo.repo_dir(store, project), ctx.params["sha"])
    if found is None:
        raise not_found("Commit")
    doc = ent.commit_entity(store, ctx.base_url, project, found[0])
    doc.update(
        {
            "stats": {"additions": 0, "deletions": 0, "total": 0},
            "status": None,
            "project_id": project["id"],
            "last_pipeline": None,
        }
    )
    return json_response(doc)


def _file_at(ctx: Ctx) -> tuple[Row, str, str, bytes, tuple[str, str]]:
    store = ctx.store
    ident = authenticate(store, ctx, job_token=False)
    if ident is None:
        raise ApiError(401, "401 Unauthorized")
    project = load_project(store, ident, ctx.params["id"])
    ref = ctx.query("ref")
    if not ref:
        raise missing_param("ref")
    file_path = ctx.params["file_path"]
    path = repo.repo_dir(store, project)
    found = repo.resolve(path, ref)
    if found is None:
        raise not_found("Commit")
    entry = repo.blob_entry(path, found[0], file_path)
    data = repo.read_blob(path, found[0], file_path) if entry else None
    if entry is None or data is None:
        raise not_found("File")
    return project, found[0], file_path, data, entry


def get_file(ctx: Ctx) -> Response:
    project, sha, file_path, data, entry = _file_at(ctx)
    store = ctx.store
    path = repo.repo_dir(store, project)
    return json_response(
        {
            "file_name": file_path.rsplit("/", 1)[-1],
            "file_path": file_path,
            "size": len(data),
            "encoding": "base64",
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "ref": ctx.query("ref"),
            "blob_id": entry[1],
            "commit_id": sha,
            "last_commit_id": repo.last_commit_for(path, sha, file_path),
            "execute_filemode": entry[0] == "100755",
            "content": base64.b64encode(data).decode(),
        }
    )


def get_raw_file(ctx: Ctx) -> Response:
    from starlette.responses import Response as Plain

    _, _, _, data, _ = _file_at(ctx)
    return Plain(data, media_type="text/plain; charset=utf-8")


def list_branches(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    path = repo.repo_dir(store, project)
    rows = repo.branches(path)

    def render(item: tuple[str, str]) -> dict[str, Any]:
        return {
            "name": item[0],
            "merged": False,
            "protected": item[0] == project["default_branch"],
            "default": item[0] == project["default_branch"],
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": True,
            "web_url": f"{ent.project_path_of(store, project['id'])}/-/tree/{item[0]}",
            "commit": ent.commit_entity(store, ctx.base_url, project, item[1]),
        }

    return paginate(ctx, rows, render)


def _branch_doc(ctx: Ctx, store: Store, project: Row, name: str, sha: str) -> dict[str, Any]:
    path = ent.project_path_of(store, project["id"])
    return {
        "name": name,
        "merged": False,
        "protected": False,
        "default": name == project["default_branch"],
        "developers_can_push": False,
        "developers_can_merge": False,
        "can_push": True,
        "web_url": f"{ctx.base_url}/{path}/-/tree/{name}",
        "commit": ent.commit_entity(store, ctx.base_url, project, sha),
    }


def get_branch(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    name = ctx.params["branch"]
    found = repo.resolve(repo.repo_dir(store, project), name)
    if found is None or found[1] != "branch":
        raise not_found("Branch")
    return json_response(_branch_doc(ctx, store, project, name, found[0]))


def create_branch(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=DEVELOPER)
    name, ref = ctx.arg("branch"), ctx.arg("ref")
    if not name:
        raise missing_param("branch")
    if not ref:
        raise missing_param("ref")
    path = repo.repo_dir(store, project)
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", str(name)) or ".." in str(name):
        raise bad_request("Branch name is invalid")
    existing = repo.resolve(path, str(name))
    if existing is not None and existing[1] == "branch":
        raise bad_request("Branch already exists")
    found = repo.resolve(path, str(ref))
    if found is None:
        raise bad_request("Invalid reference name: " + str(ref))
    repo.update_ref(path, f"refs/heads/{name}", found[0])
    return json_response(_branch_doc(ctx, store, project, str(name), found[0]), 201)


def delete_branch(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=DEVELOPER)
    name = ctx.params["branch"]
    path = repo.repo_dir(store, project)
    found = repo.resolve(path, name)
    if found is None or found[1] != "branch":
        raise not_found("Branch")
    if name == project["default_branch"]:
        raise bad_request("Cannot remove the default branch")
    repo.delete_ref(path, f"refs/heads/{name}")
    from starlette.responses import Response as Plain

    return Plain(status_code=204)


def list_commits(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    path = repo.repo_dir(store, project)
    ref = ctx.query("ref_name") or project["default_branch"]
    if repo.resolve(path, ref) is None:
        return paginate(ctx, [], lambda s: s)
    shas = repo.log(path, ref, file_path=ctx.query("path"))
    return paginate(ctx, shas, lambda sha: ent.commit_entity(store, ctx.base_url, project, sha))


def repository_tree(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    path = repo.repo_dir(store, project)
    found = repo.resolve(path, ctx.query("ref") or project["default_branch"])
    if found is None:
        raise not_found("Tree")
    entries = repo.tree(
        path, found[0], ctx.query("path") or "", recursive=to_bool(ctx.query("recursive"))
    )
    return paginate(
        ctx,
        entries,
        lambda e: {"id": e.id, "name": e.name, "type": e.type, "path": e.path, "mode": e.mode},
    )


def _file_commit(ctx: Ctx, action: str) -> Response:
    """``POST|PUT|DELETE /projects/:id/repository/files/:file_path``: one-file commits."""
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=DEVELOPER)
    body = {
        k: ctx.arg(k)
        for k in (
            "branch",
            "commit_message",
            "start_branch",
            "encoding",
            "execute_filemode",
            "author_name",
            "author_email",
        )
    }
    body["content"] = ctx.arg("content")
    for name in ("branch", "commit_message"):
        if not body.get(name):
            raise missing_param(name)
    if action != "delete" and body["content"] is None:
        raise missing_param("content")
    file_path = ctx.params["file_path"]
    path = repo.repo_dir(store, project)
    repo.init(path, project["default_branch"])
    branch = str(body["branch"])
    current = repo.resolve(path, branch)
    start = current[0] if current else None
    if start is None and body.get("start_branch"):
        found = repo.resolve(path, str(body["start_branch"]))
        start = found[0] if found else None
    user = store.one("SELECT * FROM users WHERE id = ?", [ident.user_id])
    assert user is not None
    act = {
        "action": action,
        "file_path": file_path,
        "content": body.get("content"),
        "encoding": body.get("encoding"),
        "execute_filemode": body.get("execute_filemode"),
    }
    try:
        repo.create_commit(
            path,
            branch=branch,
            start_sha=start,
            actions=[act],
            message=str(body["commit_message"]),
            author_name=str(body.get("author_name") or user["name"]),
            author_email=str(body.get("author_email") or user["email"]),
        )
    except repo.RepoError as exc:
        raise ApiError(400, str(exc)) from exc
    if action == "delete":
        from starlette.responses import Response as Plain

        return Plain(status_code=204)
    return json_response(
        {"file_path": file_path, "branch": branch}, 201 if action == "create" else 200
    )


def create_file(ctx: Ctx) -> Response:
    return _file_commit(ctx, "create")


def update_file(ctx: Ctx) -> Response:
    return _file_commit(ctx, "update")


def delete_file(ctx: Ctx) -> Response:
    return _file_commit(ctx, "delete")


def _tag_doc(ctx: Ctx, store: Store, project: Row, tag: tuple[str, str, str]) -> dict[str, Any]:
    name, sha, message = tag
    return {
        "name": name,
        "message": message or None,
        "target": sha,
        "commit": ent.commit_entity(store, ctx.base_url, project, sha),
        "release": None,
        "protected": False,
        "created_at": None,
    }


def list_tags(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"])
    all_tags = repo.tags(repo.repo_dir(store, project))
    return paginate(ctx, all_tags, lambda t: _tag_doc(ctx, store, project, t))


def create_tag(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    project = load_project(store, ident, ctx.params["id"], min_level=DEVELOPER)
    name, ref = ctx.arg("tag_name"), ctx.arg("ref")
    if not name:
        raise missing_param("tag_name")
    if not ref:
        raise missing_param("ref")
    path = repo.repo_dir(store, project)
    if any(t[0] == name for t in repo.tags(path)):
        raise bad_request(f"Tag {name} already exists")
    found = repo.resolve(path, str(ref))
    if found is None:
        raise bad_request("Target " + str(ref) + " is invalid")
    user = store.one("SELECT * FROM users WHERE id = ?", [ident.user_id])
    assert user is not None
    message = ctx.arg("message")
    repo.create_tag(
        path, str(name), found[0], str(message) if message else None, (user["name"], user["email"])
    )
    return json_response(_tag_doc(ctx, store, project, (str(name), found[0], message or "")), 201)


def list_namespaces(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
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
        try:
            load_group(store, ident, str(ns["id"]))
        except ApiError:
            continue
        rows.append(ns)
    search = ctx.query("search")
    if search:
        rows = [r for r in rows if search.lower() in r["full_path"].lower()]
    return paginate(ctx, rows, lambda ns: _namespace_doc(store, ctx, ns))


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


def get_namespace(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
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


def descendant_groups(ctx: Ctx) -> Response:
    store = ctx.store
    ident = require_user(store, ctx)
    group = load_group(store, ident, ctx.params["id"])
    ids = [i for i in descendant_ids(store, group["id"]) if i != group["id"]]
    rows = [store.one("SELECT * FROM namespaces WHERE id = ?", [i]) for i in ids]
    return paginate(
        ctx, [r for r in rows if r is not None], lambda g: ent.group_entity(store, ctx.base_url, g)
    )


def routes() -> list[tuple[str, str, Handler]]:
    pm = members_handlers("project")
    gm = members_handlers("group")
    return [
        ("GET", "/api/v4/version", version),
        ("GET", "/api/v4/metadata", version),
        ("GET", "/api/v4/user", current_user),
        ("GET", "/api/v4/users", list_users),
        ("POST", "/api/v4/users", create_user),
        ("GET", "/api/v4/users/{user_id}", get_user),
        ("POST", "/api/v4/users/{user_id}/personal_access_tokens", create_user_token),
        ("GET", "/api/v4/application/settings", get_settings),
        ("PUT", "/api/v4/application/settings", put_settings),
        ("GET", "/api/v4/groups", list_groups),
        ("POST", "/api/v4/groups", create_group),
        ("GET", "/api/v4/groups/{id}", get_group),
        ("GET", "/api/v4/groups/{id}/subgroups", list_subgroups),
        ("GET", "/api/v4/groups/{id}/projects", group_projects),
        ("GET", "/api/v4/groups/{id}/members", gm["list"]),
        ("POST", "/api/v4/groups/{id}/members", gm["add"]),
        ("DELETE", "/api/v4/groups/{id}/members/{user_id}", gm["remove"]),
        ("GET", "/api/v4/projects", list_projects),
        ("POST", "/api/v4/projects", create_project),
        ("GET", "/api/v4/projects/{id}", get_project),
        ("PUT", "/api/v4/projects/{id}", edit_project),
        ("DELETE", "/api/v4/projects/{id}", delete_project),
        ("GET", "/api/v4/projects/{id}/members", pm["list"]),
        ("GET", "/api/v4/projects/{id}/members/all", pm["list"]),
        ("POST", "/api/v4/projects/{id}/members", pm["add"]),
        ("DELETE", "/api/v4/projects/{id}/members/{user_id}", pm["remove"]),
        ("GET", "/api/v4/projects/{id}/job_token_scope/allowlist", allowlist_list),
        ("POST", "/api/v4/projects/{id}/job_token_scope/allowlist", allowlist_add),
        ("GET", "/api/v4/groups/{id}/variables", list_variables),
        ("POST", "/api/v4/groups/{id}/variables", create_variable),
        ("GET", "/api/v4/groups/{id}/variables/{key}", get_variable),
        ("PUT", "/api/v4/groups/{id}/variables/{key}", update_variable),
        ("DELETE", "/api/v4/groups/{id}/variables/{key}", delete_variable),
        ("GET", "/api/v4/projects/{id}/variables", list_variables),
        ("POST", "/api/v4/projects/{id}/variables", create_variable),
        ("GET", "/api/v4/projects/{id}/variables/{key}", get_variable),
        ("PUT", "/api/v4/projects/{id}/variables/{key}", update_variable),
        ("DELETE", "/api/v4/projects/{id}/variables/{key}", delete_variable),
        ("POST", "/api/v4/projects/{id}/repository/commits", create_commit),
        ("GET", "/api/v4/projects/{id}/repository/commits/{sha}", get_commit),
        ("GET", "/api/v4/projects/{id}/repository/branches", list_branches),
        ("POST", "/api/v4/projects/{id}/repository/branches", create_branch),
        ("GET", "/api/v4/projects/{id}/repository/branches/{branch}", get_branch),
        ("DELETE", "/api/v4/projects/{id}/repository/branches/{branch}", delete_branch),
        ("GET", "/api/v4/projects/{id}/repository/commits", list_commits),
        ("GET", "/api/v4/projects/{id}/repository/tree", repository_tree),
        ("GET", "/api/v4/projects/{id}/repository/tags", list_tags),
        ("POST", "/api/v4/projects/{id}/repository/tags", create_tag),
        ("POST", "/api/v4/projects/{id}/repository/files/{file_path}", create_file),
        ("PUT", "/api/v4/projects/{id}/repository/files/{file_path}", update_file),
        ("DELETE", "/api/v4/projects/{id}/repository/files/{file_path}", delete_file),
        ("GET", "/api/v4/namespaces", list_namespaces),
        ("GET", "/api/v4/namespaces/{id}", get_namespace),
        ("GET", "/api/v4/groups/{id}/descendant_groups", descendant_groups),
        ("GET", "/api/v4/projects/{id}/repository/files/{file_path}/raw", get_raw_file),
        ("GET", "/api/v4/projects/{id}/repository/files/{file_path}", get_file),
    ]
