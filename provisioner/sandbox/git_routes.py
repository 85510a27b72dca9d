"""Git smart HTTP: GitLab's authentication and authorization in front of ``git_http``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import anyio.to_thread
from starlette.responses import Response as StarletteResponse

from provisioner.sandbox import pipelines, repo
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

log = logging.getLogger(__name__)

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
    served = await _serve(app, request, project, ident.username, allow_push=may_push)
    if not (push and may_push):
        return served

    def after_push() -> None:
        _push_pipelines(app.store, project, ident.user_id)

    return _AfterResponse(served, after_push)


async def _serve(
    app: Any, request: Request, project: Any, user: str, *, allow_push: bool
) -> Response:
    path = repo.repo_dir(app.store, project)
    repo.init(path, project["default_branch"])
    if allow_push:
        repo.ensure_push_hook(path)
    response: Response = await _backend(app).handle(
        request, path, remote_user=user, allow_push=allow_push
    )
    return response


def _push_pipelines(store: Any, project: Any, user_id: int) -> None:
    """GitLab's push pipelines for every branch or tag the finished push moved."""
    for pushed in repo.take_pushes(repo.repo_dir(store, project)):
        if pushed.new == repo.ZERO_SHA:
            continue  # a deleted ref gets no pipeline
        for prefix in ("refs/heads/", "refs/tags/"):
            if not pushed.ref.startswith(prefix):
                continue
            try:
                pipelines.on_push(
                    store,
                    project,
                    ref=pushed.ref.removeprefix(prefix),
                    user_id=user_id,
                    skip=pushed.ci_skip,
                )
            except Exception:  # the push itself succeeded; say why no pipeline came of it
                log.exception("sandbox: no push pipeline for %s", pushed.ref)


class _AfterResponse(StarletteResponse):
    """Send ``inner``, running ``after`` (in a worker thread) just before its last message.

    By then ``git http-backend`` has exited, so the post-receive hook has run; the client sees
    the end of its push only once the push pipelines exist.
    """

    def __init__(self, inner: Response, after: Callable[[], None]) -> None:
        # No Response.__init__: ``inner`` already knows its status, headers and body.
        self.inner = inner
        self.after = after
        self.status_code = inner.status_code
        self.background = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        done = False

        async def forward(message: Any) -> None:
            nonlocal done
            last = message.get("type") == "http.response.body" and not message.get("more_body")
            if last and not done:
                done = True
                await anyio.to_thread.run_sync(self.after)
            await send(message)

        try:
            await self.inner(scope, receive, forward)
        finally:
            if not done:
                await anyio.to_thread.run_sync(self.after)
