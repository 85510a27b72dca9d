"""REST v4 projects: create, list, edit, delete, and the job-token allowlist."""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox import repo
from provisioner.sandbox.api_groups import PATH_RE, VISIBILITIES
from provisioner.sandbox.auth import (
    DEVELOPER,
    MAINTAINER,
    OWNER,
    Identity,
    load_group,
    load_project,
    project_route,
    user_route,
    visible_project_ids,
)
from provisioner.sandbox.state import new_token, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
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
    from provisioner.sandbox.state import Row


routes = RouteTable()


@routes.post("/api/v4/projects")
@user_route()
def create_project(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
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


@routes.get("/api/v4/projects/{id}")
@project_route()
def get_project(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    return json_response(
        ent.project_entity(store, ctx.base_url, project, viewer_id=ident.user_id, with_access=True)
    )


@routes.get("/api/v4/projects")
@user_route()
def list_projects(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    visible = visible_project_ids(store, ident)
    rows = [r for r in store.all("SELECT * FROM projects ORDER BY id DESC") if r["id"] in visible]
    rows = ctx.searched(rows, "name")
    return paginate(
        ctx, rows, lambda r: ent.project_entity(store, ctx.base_url, r, viewer_id=ident.user_id)
    )


@routes.put("/api/v4/projects/{id}")
@project_route(MAINTAINER)
def edit_project(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
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


@routes.delete("/api/v4/projects/{id}")
@project_route(OWNER)  # administrators hold OWNER on every project
def delete_project(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
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


@routes.get("/api/v4/projects/{id}/job_token_scope/allowlist")
@project_route(MAINTAINER)
def allowlist_list(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    rows = store.all(
        "SELECT p.* FROM job_token_allowlist a JOIN projects p "
        "ON p.id = a.source_project_id WHERE a.project_id = ? ORDER BY p.id",
        [project["id"]],
    )
    return paginate(ctx, rows, lambda r: ent.project_entity(store, ctx.base_url, r, basic=True))


@routes.post("/api/v4/projects/{id}/job_token_scope/allowlist")
@project_route(MAINTAINER)
def allowlist_add(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
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
