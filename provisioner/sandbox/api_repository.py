"""REST v4 repository: commits, files, branches, tags and the tree."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox import pipelines, repo
from provisioner.sandbox.auth import (
    DEVELOPER,
    Identity,
    authenticate,
    load_project,
    project_route,
)
from provisioner.sandbox.state import now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    bad_request,
    json_response,
    missing_param,
    not_found,
    paginate,
    query_params,
    to_bool,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store


routes = RouteTable()


@routes.post("/api/v4/projects/{id}/repository/commits")
@project_route(DEVELOPER)
def create_commit(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
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
    pipelines.on_push(store, project, ref=branch, user_id=ident.user_id)
    doc = ent.commit_entity(store, ctx.base_url, project, sha)
    doc.update({"stats": stats, "status": None, "project_id": project["id"], "last_pipeline": None})
    return json_response(doc, 201)


@routes.get("/api/v4/projects/{id}/repository/commits/{sha}")
@project_route()
def get_commit(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
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


def _file_meta(ctx: Ctx) -> tuple[dict[str, Any], bytes]:
    """The file's metadata as GitLab's files API names it, and the file's bytes."""
    project, sha, file_path, data, entry = _file_at(ctx)
    path = repo.repo_dir(ctx.store, project)
    meta = {
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
    }
    return meta, data


def _file_headers(meta: dict[str, Any]) -> dict[str, str]:
    """``X-Gitlab-File-Name`` … as GitLab sets them on GET and HEAD (``set_http_headers``)."""
    out = {}
    for key, value in meta.items():
        name = "X-Gitlab-" + "-".join(part.capitalize() for part in key.split("_"))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        # Header values are latin-1; GitLab's file names may not be.
        out[name] = text.encode("utf-8").decode("latin-1")
    return out


@routes.get("/api/v4/projects/{id}/repository/files/{file_path}")
def get_file(ctx: Ctx) -> Response:
    meta, data = _file_meta(ctx)
    return json_response(
        {**meta, "content": base64.b64encode(data).decode()}, headers=_file_headers(meta)
    )


@routes.get("/api/v4/projects/{id}/repository/files/{file_path}/raw")
def get_raw_file(ctx: Ctx) -> Response:
    meta, data = _file_meta(ctx)
    return Response(data, media_type="text/plain; charset=utf-8", headers=_file_headers(meta))


@routes.get("/api/v4/projects/{id}/repository/branches")
@project_route()
def list_branches(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
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


@routes.get("/api/v4/projects/{id}/repository/branches/{branch}")
@project_route()
def get_branch(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    name = ctx.params["branch"]
    found = repo.resolve(repo.repo_dir(store, project), name)
    if found is None or found[1] != "branch":
        raise not_found("Branch")
    return json_response(_branch_doc(ctx, store, project, name, found[0]))


@routes.post("/api/v4/projects/{id}/repository/branches")
@project_route(DEVELOPER)
def create_branch(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    name, ref = ctx.required("branch", "ref")
    path = repo.repo_dir(store, project)
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", str(name)) or ".." in str(name):
        raise bad_request("Branch name is invalid")
    existing = repo.resolve(path, str(name))
    if existing is not None and existing[1] == "branch":
        raise bad_request("Branch already exists")
    if not repo.has_commits(path):
        # GitLab's CreateBranchService: an empty repository first gets its default branch,
        # holding an empty README.md, so that there is something to branch from.
        user = store.one("SELECT * FROM users WHERE id = ?", [ident.user_id])
        assert user is not None
        repo.init(path, project["default_branch"])
        repo.create_commit(
            path,
            branch=project["default_branch"],
            start_sha=None,
            actions=[{"action": "create", "file_path": "README.md", "content": ""}],
            message="Add README.md",
            author_name=str(user["name"]),
            author_email=str(user["email"]),
        )
    found = repo.resolve(path, str(ref))
    if found is None:
        raise bad_request("Invalid reference name: " + str(ref))
    repo.update_ref(path, f"refs/heads/{name}", found[0])
    return json_response(_branch_doc(ctx, store, project, str(name), found[0]), 201)


@routes.delete("/api/v4/projects/{id}/repository/branches/{branch}")
@project_route(DEVELOPER)
def delete_branch(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    name = ctx.params["branch"]
    path = repo.repo_dir(store, project)
    found = repo.resolve(path, name)
    if found is None or found[1] != "branch":
        raise not_found("Branch")
    if name == project["default_branch"]:
        raise bad_request("Cannot remove the default branch")
    repo.delete_ref(path, f"refs/heads/{name}")
    return Response(status_code=204)


@routes.get("/api/v4/projects/{id}/repository/commits")
@project_route()
@query_params(
    supported=("ref_name", "path", "all"),
    documented=(
        *("ref_name", "since", "until", "path", "follow", "author", "all", "with_stats"),
        *("first_parent", "order", "trailers"),
    ),
)
def list_commits(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    path = repo.repo_dir(store, project)
    ref = ctx.query("ref_name") or project["default_branch"]
    every = to_bool(ctx.query("all"))
    if not every and repo.resolve(path, ref) is None:
        return paginate(ctx, [], lambda s: s)
    shas = repo.log(path, ref, file_path=ctx.query("path"), all_refs=every)
    return paginate(ctx, shas, lambda sha: ent.commit_entity(store, ctx.base_url, project, sha))


@routes.get("/api/v4/projects/{id}/repository/tree")
@project_route()
def repository_tree(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
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


def _file_commit(ctx: Ctx, ident: Identity, project: Row, action: str) -> Response:
    """``POST|PUT|DELETE /projects/:id/repository/files/:file_path``: one-file commits."""
    store = ctx.store
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
    pipelines.on_push(store, project, ref=branch, user_id=ident.user_id)
    if action == "delete":
        return Response(status_code=204)
    return json_response(
        {"file_path": file_path, "branch": branch}, 201 if action == "create" else 200
    )


@routes.post("/api/v4/projects/{id}/repository/files/{file_path}")
@project_route(DEVELOPER)
def create_file(ctx: Ctx, ident: Identity, project: Row) -> Response:
    return _file_commit(ctx, ident, project, "create")


@routes.put("/api/v4/projects/{id}/repository/files/{file_path}")
@project_route(DEVELOPER)
def update_file(ctx: Ctx, ident: Identity, project: Row) -> Response:
    return _file_commit(ctx, ident, project, "update")


@routes.delete("/api/v4/projects/{id}/repository/files/{file_path}")
@project_route(DEVELOPER)
def delete_file(ctx: Ctx, ident: Identity, project: Row) -> Response:
    return _file_commit(ctx, ident, project, "delete")


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


@routes.get("/api/v4/projects/{id}/repository/tags")
@project_route()
def list_tags(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    all_tags = repo.tags(repo.repo_dir(store, project))
    return paginate(ctx, all_tags, lambda t: _tag_doc(ctx, store, project, t))


@routes.post("/api/v4/projects/{id}/repository/tags")
@project_route(DEVELOPER)
def create_tag(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    name, ref = ctx.required("tag_name", "ref")
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
