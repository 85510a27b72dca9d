"""REST v4 pipelines and jobs as users and tools see them."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox import pipelines
from provisioner.sandbox.auth import (
    DEVELOPER,
    OWNER,
    Identity,
    authenticate,
    load_project,
    project_route,
    require_scope,
)
from provisioner.sandbox.runner_protocol import mark_watched, remove_job_files, trace_path
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    forbidden,
    json_response,
    not_found,
    paginate,
    to_bool,
    to_int,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

PIPELINE_STATUSES = (
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
)
JOB_STATUSES = (
    "created",
    "pending",
    "running",
    "failed",
    "success",
    "canceled",
    "canceling",
    "skipped",
    "waiting_for_resource",
    "manual",
    "preparing",
    "scheduled",
    "waiting_for_callback",
)


routes = RouteTable()


def _pipeline(store: Store, project: Row, ctx: Ctx) -> Row:
    pid = to_int(ctx.params["pipeline_id"], "pipeline_id")
    row = store.one("SELECT * FROM pipelines WHERE id = ? AND project_id = ?", [pid, project["id"]])
    if row is None:
        raise not_found()
    return row


def _job(store: Store, project: Row, ctx: Ctx) -> Row:
    jid = to_int(ctx.params["job_id"], "job_id")
    row = store.one("SELECT * FROM jobs WHERE id = ? AND project_id = ?", [jid, project["id"]])
    if row is None:
        raise not_found()
    return row


@routes.post("/api/v4/projects/{id}/pipeline")
@project_route(DEVELOPER)
def create_pipeline(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    (ref,) = ctx.required("ref")
    raw_vars = ctx.arg("variables") or []
    if not isinstance(raw_vars, list) or not all(isinstance(v, dict) for v in raw_vars):
        raise ApiError(400, "variables is invalid", key="error")
    variables = [
        {
            "key": str(v.get("key")),
            "value": str(v.get("value", "")),
            "variable_type": str(v.get("variable_type") or "env_var"),
        }
        for v in raw_vars
    ]
    try:
        pid = pipelines.create(
            store, project, ref=str(ref), user_id=ident.user_id, source="api", variables=variables
        )
    except pipelines.PipelineError as exc:
        raise ApiError(400, {"base": exc.errors}) from exc
    return _pipeline_now(ctx, pid, 201)


@routes.get("/api/v4/projects/{id}/pipelines")
@project_route(DEVELOPER)
def list_pipelines(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    rows = store.all("SELECT * FROM pipelines WHERE project_id = ?", [project["id"]])
    scope = ctx.query("scope")
    if scope is not None and scope not in ("running", "pending", "finished", "branches", "tags"):
        raise ApiError(400, "scope does not have a valid value", key="error")
    status = ctx.query("status")
    if status is not None and status not in PIPELINE_STATUSES:
        raise ApiError(400, "status does not have a valid value", key="error")
    order_by = ctx.query("order_by") or "id"
    if order_by not in ("id", "status", "ref", "updated_at", "user_id"):
        raise ApiError(400, "order_by does not have a valid value", key="error")
    sort = ctx.query("sort") or "desc"
    if sort not in ("asc", "desc"):
        raise ApiError(400, "sort does not have a valid value", key="error")
    filters: dict[str, str | None] = {k: ctx.query(k) for k in ("ref", "sha", "source")}
    out = []
    for row in rows:
        if any(value is not None and str(row[key]) != value for key, value in filters.items()):
            continue
        if status and row["status"] != status:
            continue
        if scope in ("running", "pending") and row["status"] != scope:
            continue
        if scope == "finished" and row["status"] not in (
            "success",
            "failed",
            "canceled",
            "skipped",
        ):
            continue
        if scope == "tags" and not row["tag"]:
            continue
        if scope == "branches" and row["tag"]:
            continue
        if ctx.query("yaml_errors") is not None and to_bool(ctx.query("yaml_errors")) != bool(
            row["yaml_errors"]
        ):
            continue
        for bound, op in (
            ("updated_after", ">"),
            ("updated_before", "<"),
            ("created_after", ">"),
            ("created_before", "<"),
        ):
            value = ctx.query(bound)
            column = row["updated_at" if bound.startswith("updated") else "created_at"]
            if value and not (column > value if op == ">" else column < value):
                break
        else:
            out.append(row)
    out.sort(
        key=lambda r: (r[order_by] if order_by != "user_id" else r["user_id"] or 0, r["id"]),
        reverse=sort == "desc",
    )
    return paginate(ctx, out, lambda r: ent.pipeline_basic(store, ctx.base_url, r))


# Before get_pipeline: routes are tried in the order they are defined.
@routes.get("/api/v4/projects/{id}/pipelines/latest")
@project_route()
def latest_pipeline(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    ref = ctx.query("ref") or project["default_branch"]
    row = store.one(
        "SELECT * FROM pipelines WHERE project_id = ? AND ref = ? ORDER BY id DESC LIMIT 1",
        [project["id"], ref],
    )
    if row is None:
        raise not_found()
    return json_response(ent.pipeline_entity(store, ctx.base_url, row))


@routes.get("/api/v4/projects/{id}/pipelines/{pipeline_id}")
@project_route()
def get_pipeline(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    return json_response(ent.pipeline_entity(store, ctx.base_url, _pipeline(store, project, ctx)))


@routes.delete("/api/v4/projects/{id}/pipelines/{pipeline_id}")
@project_route(OWNER)  # administrators hold OWNER on every project
def delete_pipeline(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _pipeline(store, project, ctx)
    with store.tx():
        for job in store.all("SELECT id FROM jobs WHERE pipeline_id = ?", [row["id"]]):
            remove_job_files(store, job["id"])
        store.run("DELETE FROM jobs WHERE pipeline_id = ?", [row["id"]])
        store.run("DELETE FROM pipelines WHERE id = ?", [row["id"]])
    return Response(status_code=204)


@routes.get("/api/v4/projects/{id}/pipelines/{pipeline_id}/variables")
@project_route(DEVELOPER)
def pipeline_variables(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _pipeline(store, project, ctx)
    return json_response(
        [
            {
                "variable_type": v.get("variable_type", "env_var"),
                "key": v["key"],
                "value": v["value"],
            }
            for v in json.loads(row["variables"])
        ]
    )


def _job_filter(ctx: Ctx, rows: list[Row]) -> list[Row]:
    scopes = ctx.query_list("scope")
    for scope in scopes:
        if scope not in JOB_STATUSES:
            raise ApiError(400, "scope does not have a valid value", key="error")
    if scopes:
        rows = [r for r in rows if r["status"] in scopes]
    return rows


@routes.get("/api/v4/projects/{id}/pipelines/{pipeline_id}/jobs")
@project_route()
def pipeline_jobs(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _pipeline(store, project, ctx)
    retried = to_bool(ctx.query("include_retried"))
    jobs = store.all("SELECT * FROM jobs WHERE pipeline_id = ? ORDER BY id DESC", [row["id"]])
    jobs = [j for j in jobs if retried or not j["retried"]]
    return paginate(ctx, _job_filter(ctx, jobs), lambda j: ent.job_entity(store, ctx.base_url, j))


@routes.get("/api/v4/projects/{id}/jobs")
@project_route(DEVELOPER)
def project_jobs(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    jobs = store.all("SELECT * FROM jobs WHERE project_id = ? ORDER BY id DESC", [project["id"]])
    return paginate(ctx, _job_filter(ctx, jobs), lambda j: ent.job_entity(store, ctx.base_url, j))


@routes.get("/api/v4/projects/{id}/jobs/{job_id}")
@project_route()
def get_job(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    return json_response(ent.job_entity(store, ctx.base_url, _job(store, project, ctx)))


@routes.get("/api/v4/projects/{id}/jobs/{job_id}/trace")
@project_route()
def job_trace(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    job = _job(store, project, ctx)
    mark_watched(ctx.app, job["id"])
    path = trace_path(store, job["id"])
    data = path.read_bytes() if path.exists() else b""
    return Response(
        data,
        media_type="text/plain",
        headers={
            "Content-Disposition": f'infile; filename="{job["id"]}.log"',
        },
    )


@routes.post("/api/v4/projects/{id}/jobs/{job_id}/retry")
@project_route(DEVELOPER)
def retry_job(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    job = _job(store, project, ctx)
    if job["status"] not in ("failed", "canceled", "success") or job["retried"]:
        raise forbidden("Job is not retryable")
    new_id = pipelines.retry_job(store, job, ident.user_id)
    return _job_now(ctx, new_id, 201)


@routes.post("/api/v4/projects/{id}/jobs/{job_id}/cancel")
@project_route(DEVELOPER)
def cancel_job(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    job = _job(store, project, ctx)
    pipelines.cancel_job(store, job)
    return _job_now(ctx, job["id"], 201)


@routes.post("/api/v4/projects/{id}/jobs/{job_id}/play")
@project_route(DEVELOPER)
def play_job(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    job = _job(store, project, ctx)
    if job["status"] != "manual":
        raise ApiError(400, "400 Bad request - Unplayable Job")
    pipelines.play_job(store, job)
    return _job_now(ctx, job["id"], 200)


@routes.post("/api/v4/projects/{id}/pipelines/{pipeline_id}/retry")
@project_route(DEVELOPER)
def retry_pipeline(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _pipeline(store, project, ctx)
    pipelines.retry_pipeline(store, row["id"], ident.user_id)
    return _pipeline_now(ctx, row["id"], 201)


@routes.post("/api/v4/projects/{id}/pipelines/{pipeline_id}/cancel")
@project_route(DEVELOPER)
def cancel_pipeline(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _pipeline(store, project, ctx)
    pipelines.cancel_pipeline(store, row["id"])
    return _pipeline_now(ctx, row["id"], 201)


def _job_now(ctx: Ctx, job_id: int, status: int) -> Response:
    """The job as it is after an action on it, as GitLab answers the action."""
    job = ctx.store.one("SELECT * FROM jobs WHERE id = ?", [job_id])
    assert job is not None
    return json_response(ent.job_entity(ctx.store, ctx.base_url, job), status)


def _pipeline_now(ctx: Ctx, pipeline_id: int, status: int) -> Response:
    """The pipeline as it is after an action on it, as GitLab answers the action."""
    pipeline = ctx.store.one("SELECT * FROM pipelines WHERE id = ?", [pipeline_id])
    assert pipeline is not None
    return json_response(ent.pipeline_entity(ctx.store, ctx.base_url, pipeline), status)


def _artifact_job(ctx: Ctx) -> tuple[Store, Row]:
    store = ctx.store
    ident = authenticate(store, ctx, job_token=True)
    if ident is None:
        raise ApiError(401, "401 Unauthorized")
    require_scope(ident, ctx)
    project = load_project(store, ident, ctx.params["id"])
    return store, _job(store, project, ctx)


@routes.get("/api/v4/projects/{id}/jobs/{job_id}/artifacts")
def job_artifacts(ctx: Ctx) -> Response:
    store, job = _artifact_job(ctx)
    archive = _archive(store, job)
    return Response(
        archive.read_bytes(),
        media_type="application/zip",
        headers={
            "Content-Disposition": 'attachment; filename="artifacts.zip"',
        },
    )


def _archive(store: Store, job: Row) -> Path:
    row = store.one(
        "SELECT * FROM artifacts WHERE job_id = ? AND file_type = 'archive'", [job["id"]]
    )
    if row is None or not Path(row["path"]).exists():
        raise ApiError(404, "404 Not found")
    return Path(row["path"])


@routes.get("/api/v4/projects/{id}/jobs/{job_id}/artifacts/{artifact_path:path}")
def job_artifact_file(ctx: Ctx) -> Response:
    store, job = _artifact_job(ctx)
    archive = _archive(store, job)
    name = ctx.params["artifact_path"]
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as zf:
        try:
            data = zf.read(name)
        except KeyError as exc:
            raise ApiError(404, "404 Not found") from exc
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{Path(name).name}"',
        },
    )
