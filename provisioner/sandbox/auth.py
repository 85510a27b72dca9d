"""Who is calling, and what they may reach: GitLab's token kinds, scopes and access levels."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from provisioner.sandbox.state import digest, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    Handler,
    forbidden,
    is_id,
    not_found,
    parse_id,
    unauthorized,
)

if TYPE_CHECKING:
    from starlette.responses import Response

    from provisioner.sandbox.state import Row, Store

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
CI_JOB_USER = "gitlab-ci-token"

INSUFFICIENT_SCOPE = {
    "error": "insufficient_scope",
    "error_description": "The request requires higher privileges than provided by the "
    "access token.",
    "scope": "api",
}


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: a user through a PAT, or a running job through its job token."""

    user_id: int
    username: str
    is_admin: bool
    scopes: frozenset[str]
    job: Row | None = None

    @property
    def is_job(self) -> bool:
        return self.job is not None


def user_from_pat(store: Store, token: str) -> Identity | None:
    row = store.one(
        "SELECT t.scopes, t.expires_at, u.id, u.username, u.is_admin FROM tokens t "
        "JOIN users u ON u.id = t.user_id WHERE t.digest = ? AND t.revoked = 0",
        [digest(token)],
    )
    if row is None:
        return None
    if row["expires_at"] and row["expires_at"] < now_iso()[:10]:
        return None
    return Identity(
        row["id"], row["username"], bool(row["is_admin"]), frozenset(json.loads(row["scopes"]))
    )


def job_from_token(store: Store, token: str) -> Row | None:
    """A job token is valid only while its job runs (GitLab expires it when the job ends)."""
    if not token:
        return None
    return store.one(
        "SELECT * FROM jobs WHERE token_digest = ? AND status = 'running'", [digest(token)]
    )


def identity_from_job(store: Store, job: Row) -> Identity:
    user = store.one("SELECT id, username, is_admin FROM users WHERE id = ?", [job["user_id"] or 1])
    assert user is not None
    return Identity(user["id"], user["username"], bool(user["is_admin"]), frozenset(), job)


def authenticate(
    store: Store, ctx: Ctx, *, job_token: bool = False, basic: bool = False
) -> Identity | None:
    """Resolve the caller; ``None`` when anonymous. Bad credentials raise 401.

    ``job_token`` lets a CI job token in (header ``JOB-TOKEN``, ``job_token`` query, or Basic
    ``gitlab-ci-token:<token>``); ``basic`` allows HTTP Basic with a PAT as the password.
    """
    pat = ctx.header("private-token") or ctx.query("private_token")
    auth = ctx.header("authorization") or ""
    if not pat and auth.lower().startswith("bearer "):
        pat = auth[7:].strip()
    if pat:
        ident = user_from_pat(store, pat)
        if ident is None:
            raise unauthorized()
        return ident
    jt = ctx.header("job-token") or ctx.query("job_token")
    if jt:
        job = job_from_token(store, jt)
        if job is None or not job_token:
            raise unauthorized()
        return identity_from_job(store, job)
    creds = ctx.basic_auth()
    if creds is not None:
        user, password = creds
        if user == CI_JOB_USER:
            job = job_from_token(store, password)
            if job is None or not job_token:
                raise unauthorized()
            return identity_from_job(store, job)
        ident = user_from_pat(store, password)
        if ident is None or not basic:
            raise unauthorized()
        return ident
    return None


def require_user(store: Store, ctx: Ctx, *, write: bool | None = None) -> Identity:
    """A PAT-authenticated user with ``api`` (or ``read_api`` for reads)."""
    ident = authenticate(store, ctx)
    if ident is None:
        raise unauthorized()
    require_scope(ident, ctx, write=write)
    return ident


def require_token_scope(store: Store, ctx: Ctx, scopes: tuple[str, ...]) -> Identity:
    """A user's token (not a job's) holding one of ``scopes``; GitLab's 403 names them all."""
    ident = authenticate(store, ctx)
    if ident is None or ident.is_job:
        raise unauthorized()
    if not ident.scopes & set(scopes):
        raise ApiError(403, body={**INSUFFICIENT_SCOPE, "scope": " ".join(scopes)})
    return ident


def require_scope(ident: Identity, ctx: Ctx, *, write: bool | None = None) -> None:
    if ident.is_job:
        return
    is_write = ctx.method not in ("GET", "HEAD") if write is None else write
    if "api" in ident.scopes:
        return
    if not is_write and "read_api" in ident.scopes:
        return
    raise ApiError(403, body=dict(INSUFFICIENT_SCOPE))


def require_admin(ident: Identity) -> None:
    if not ident.is_admin:
        raise forbidden()


# namespaces and projects --------------------------------------------------------------------


def find_group(store: Store, ref: str) -> Row | None:
    if is_id(ref):
        number = parse_id(ref)
        return (
            None
            if number is None
            else store.one("SELECT * FROM namespaces WHERE id = ? AND kind = 'group'", [number])
        )
    return store.one(
        "SELECT * FROM namespaces WHERE lower(full_path) = lower(?) AND kind = 'group'", [ref]
    )


def find_namespace(store: Store, ref: str) -> Row | None:
    if is_id(ref):
        number = parse_id(ref)
        return (
            None if number is None else store.one("SELECT * FROM namespaces WHERE id = ?", [number])
        )
    return store.one("SELECT * FROM namespaces WHERE lower(full_path) = lower(?)", [ref])


def project_full_path(store: Store, project: Row) -> str:
    ns = store.one("SELECT full_path FROM namespaces WHERE id = ?", [project["namespace_id"]])
    assert ns is not None
    return f"{ns['full_path']}/{project['path']}"


def find_project(store: Store, ref: str) -> Row | None:
    if is_id(ref):
        number = parse_id(ref)
        return (
            None if number is None else store.one("SELECT * FROM projects WHERE id = ?", [number])
        )
    ns_path, _, path = ref.rpartition("/")
    if not ns_path:
        return None
    return store.one(
        "SELECT p.* FROM projects p JOIN namespaces n ON n.id = p.namespace_id "
        "WHERE lower(n.full_path) = lower(?) AND lower(p.path) = lower(?)",
        [ns_path, path],
    )


def ancestor_ids(store: Store, namespace_id: int | None) -> list[int]:
    """``namespace_id`` and its parents, nearest first."""
    out: list[int] = []
    while namespace_id is not None and namespace_id not in out:
        out.append(namespace_id)
        namespace_id = store.scalar("SELECT parent_id FROM namespaces WHERE id = ?", [namespace_id])
    return out


def descendant_ids(store: Store, group_id: int) -> list[int]:
    out = [group_id]
    frontier = [group_id]
    while frontier:
        rows = store.all(
            f"SELECT id FROM namespaces WHERE parent_id IN ({','.join('?' * len(frontier))})",  # noqa: S608
            frontier,
        )
        frontier = [r["id"] for r in rows if r["id"] not in out]
        out.extend(frontier)
    return out


def group_access(store: Store, user_id: int, namespace_id: int) -> int:
    best = 0
    for ns_id in ancestor_ids(store, namespace_id):
        ns = store.one("SELECT kind FROM namespaces WHERE id = ?", [ns_id])
        if ns is not None and ns["kind"] == "user":
            owner = store.scalar("SELECT id FROM users WHERE namespace_id = ?", [ns_id])
            if owner == user_id:
                best = max(best, OWNER)
            continue
        level = store.scalar(
            "SELECT access_level FROM members WHERE source_type = 'group' AND source_id = ? "
            "AND user_id = ?",
            [ns_id, user_id],
        )
        best = max(best, int(level or 0))
    return best


def project_access(store: Store, user_id: int, project: Row) -> int:
    level = store.scalar(
        "SELECT access_level FROM members WHERE source_type = 'project' AND source_id = ? "
        "AND user_id = ?",
        [project["id"], user_id],
    )
    return max(int(level or 0), group_access(store, user_id, project["namespace_id"]))


def effective_project_access(store: Store, ident: Identity, project: Row) -> int:
    if ident.is_admin and not ident.is_job:
        return OWNER
    return project_access(store, ident.user_id, project)


def job_may_access(store: Store, job: Row, project: Row) -> bool:
    """A job token reaches its own project and projects whose allowlist names its project."""
    if job["project_id"] == project["id"]:
        return True
    if not project["job_token_scope_enabled"]:
        return True
    return (
        store.one(
            "SELECT 1 FROM job_token_allowlist WHERE project_id = ? AND source_project_id = ?",
            [project["id"], job["project_id"]],
        )
        is not None
    )


def load_project(store: Store, ident: Identity | None, ref: str, *, min_level: int = GUEST) -> Row:
    """The project named by ``:id`` if the caller can see it, else GitLab's 404 (or 403)."""
    project = find_project(store, ref)
    if project is None:
        raise not_found("Project")
    if ident is None:
        if project["visibility"] == "public" and min_level <= GUEST:
            return project
        raise not_found("Project")
    if ident.is_job:
        assert ident.job is not None
        if not job_may_access(store, ident.job, project):
            raise forbidden(
                "Authentication by CI/CD job token not allowed from "
                f"{project_full_path(store, _job_project(store, ident.job))} to "
                f"{project_full_path(store, project)}."
            )
        return project
    level = effective_project_access(store, ident, project)
    # Internal projects are visible to every signed-in user, as in GitLab.
    if level == 0:
        if project["visibility"] == "private":
            raise not_found("Project")
        level = GUEST  # non-members read public and internal projects
    if level < min_level:
        raise forbidden()
    return project


def _job_project(store: Store, job: Row) -> Row:
    project = store.one("SELECT * FROM projects WHERE id = ?", [job["project_id"]])
    assert project is not None
    return project


def load_group(store: Store, ident: Identity, ref: str, *, min_level: int = GUEST) -> Row:
    group = find_group(store, ref)
    if group is None:
        raise not_found("Group")
    if ident.is_admin:
        return group
    level = group_access(store, ident.user_id, group["id"])
    if level == 0:
        # A member of any project or subgroup inside can see the group too.
        inner = descendant_ids(store, group["id"])
        marks = ",".join("?" * len(inner))
        seen = store.one(
            f"SELECT 1 FROM members m JOIN projects p ON m.source_type = 'project' "  # noqa: S608
            f"AND m.source_id = p.id WHERE m.user_id = ? AND p.namespace_id IN ({marks})",
            [ident.user_id, *inner],
        )
        if seen is None and group["visibility"] == "private":
            raise not_found("Group")
    if level < min_level:
        raise forbidden()
    return group


def visible_project_ids(store: Store, ident: Identity) -> set[int]:
    rows = store.all("SELECT * FROM projects")
    if ident.is_admin:
        return {r["id"] for r in rows}
    return {
        r["id"]
        for r in rows
        if r["visibility"] != "private" or project_access(store, ident.user_id, r) > 0
    }


# route prologues ----------------------------------------------------------------------------
# Most REST handlers start the same way: authenticate a PAT user (401, or 403
# ``insufficient_scope``), then load the group or project named by ``:id`` with a minimum
# access level (404 or 403). These decorators do that once, in that order, and hand the
# handler what they found.

UserHandler = Callable[[Ctx, Identity], "Response"]
ScopedHandler = Callable[[Ctx, Identity, "Row"], "Response"]


def user_route(
    *, write: bool | None = None, admin: bool = False
) -> Callable[[UserHandler], Handler]:
    """``handler(ctx, ident)`` for a PAT user (``write`` as in :func:`require_user`)."""

    def decorate(fn: UserHandler) -> Handler:
        @functools.wraps(fn)
        def handler(ctx: Ctx) -> Response:
            ident = require_user(ctx.store, ctx, write=write)
            if admin:
                require_admin(ident)
            return fn(ctx, ident)

        return handler

    return decorate


class _Loader(Protocol):
    def __call__(self, store: Store, ident: Identity, ref: str, *, min_level: int) -> Row: ...


def _scoped_route(load: _Loader, min_level: int) -> Callable[[ScopedHandler], Handler]:
    def decorate(fn: ScopedHandler) -> Handler:
        @functools.wraps(fn)
        def handler(ctx: Ctx) -> Response:
            store = ctx.store
            ident = require_user(store, ctx)
            return fn(ctx, ident, load(store, ident, ctx.params["id"], min_level=min_level))

        return handler

    return decorate


def project_route(min_level: int = GUEST) -> Callable[[ScopedHandler], Handler]:
    """``handler(ctx, ident, project)``: a PAT user reaching project ``:id`` with ``min_level``."""
    return _scoped_route(load_project, min_level)


def group_route(min_level: int = GUEST) -> Callable[[ScopedHandler], Handler]:
    """``handler(ctx, ident, group)``: a PAT user reaching group ``:id`` with ``min_level``."""
    return _scoped_route(load_group, min_level)
