"""Git smart HTTP: GitLab's authentication and authorization in front of ``git_http``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from provisioner.sandbox import repo
from provisioner.sandbox.auth import (
    CI_JOB_USER,
    DEVELOPER,
    REPORTER,
    job_from_token,
    job_may_access,
    project_access,
    project_full_path,
    user_from_pat,
)
from provisioner.sandbox.web import Ctx

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response


def _backend(app: Any) -> Any:
    from provisioner.sandbox.git_http import GitHttpBackend

    backend = app.extras.get("git_backend")
    if backend is None:
        backend = GitHttpBackend(app.store.repos_root)
        app.extras["git_backend"] = backend
    return backend


async def handle(app: Any, request: Request, raw_project: str, rest: str) -> Response:
    """Serve ``/<namespace>/<project>.git/<rest>`` as GitLab's git HTTP controller does."""
    from provisioner.sandbox import git_http
    from provisioner.sandbox.auth import find_project

    store = app.store
    ctx = Ctx(
        method=request.method,
        raw_path=request.url.path,
        query_string=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=b"",
        scheme=request.url.scheme,
        host=request.headers.get("host", ""),
        app=app,
    )
    base = ctx.base_url
    push = git_http.is_push("/" + rest, request.url.query)
    project = find_project(store, unquote(raw_project))
    creds = ctx.basic_auth()
    if creds is None:
        if project is not None and project["visibility"] == "public" and not push:
            return await _serve(app, request, project, "anonymous", allow_push=False)
        return git_http.unauthorized_response(base_url=base)
    login, secret = creds
    if login == CI_JOB_USER:
        job = job_from_token(store, secret)
        if job is None:
            return git_http.unauthorized_response(base_url=base)
        if project is None:
            return git_http.not_found_response()
        if not job_may_access(store, job, project):
            source = store.one("SELECT * FROM projects WHERE id = ?", [job["project_id"]])
            return git_http.job_token_forbidden_response(
                project_full_path(store, source), project_full_path(store, project)
            )
        if push:
            return git_http.push_forbidden_response()
        return await _serve(app, request, project, CI_JOB_USER, allow_push=False)
    ident = user_from_pat(store, secret)
    if ident is None or not ident.scopes & {"api", "read_repository", "write_repository"}:
        return git_http.unauthorized_response(base_url=base)
    if project is None:
        return git_http.not_found_response()
    level = 50 if ident.is_admin else project_access(store, ident.user_id, project)
    if level == 0 and project["visibility"] == "private":
        return git_http.not_found_response()
    if level < REPORTER and project["visibility"] == "private":
        return git_http.download_forbidden_response()
    may_push = level >= DEVELOPER and bool(ident.scopes & {"api", "write_repository"})
    if push and not may_push:
        return git_http.push_forbidden_response()
    return await _serve(app, request, project, ident.username, allow_push=may_push)


async def _serve(
    app: Any, request: Request, project: Any, user: str, *, allow_push: bool
) -> Response:
    path = repo.repo_dir(app.store, project)
    repo.init(path, project["default_branch"])
    response: Response = await _backend(app).handle(
        request, path, remote_user=user, allow_push=allow_push
    )
    return response
