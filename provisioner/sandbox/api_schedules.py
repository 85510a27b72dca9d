"""REST v4 pipeline schedules (``lib/api/ci/pipeline_schedules.rb``) and running them.

Permissions follow ``PipelineSchedulePolicy``: reporters read, developers create and play, only
the schedule's owner (or an admin) updates it and its variables, a maintainer who is not the
owner takes ownership, and the owner or a maintainer deletes. Pipelines of a schedule run as its
owner (as the player for ``play``) with ``source=schedule`` and the schedule's variables.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox import pipelines as pl
from provisioner.sandbox.api_runners import check_unmodified_since
from provisioner.sandbox.api_variables import VAR_KEY_RE
from provisioner.sandbox.auth import (
    DEVELOPER,
    MAINTAINER,
    REPORTER,
    Identity,
    project_access,
    project_route,
)
from provisioner.sandbox.schedules import ScheduleClock, next_run, valid_cron, zone
from provisioner.sandbox.state import now_iso, parse_iso
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

log = logging.getLogger(__name__)

routes = RouteTable()

BASE = "/api/v4/projects/{id}/pipeline_schedules"
ONE = BASE + "/{schedule_id}"


def _clock(ctx: Ctx) -> ScheduleClock:
    clock: ScheduleClock = ctx.app.schedule_clock
    return clock


def _owner(ctx: Ctx, row: Row) -> dict[str, Any] | None:
    return ent.user_basic(ctx.store, ctx.base_url, row["owner_id"])


def _schedule_doc(ctx: Ctx, row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "description": row["description"],
        "ref": row["ref"],
        "cron": row["cron"],
        "cron_timezone": row["cron_timezone"],
        "next_run_at": row["next_run_at"],
        "active": bool(row["active"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "owner": _owner(ctx, row),
    }


def _variable_doc(row: Row) -> dict[str, Any]:
    return {
        "variable_type": row["variable_type"],
        "key": row["key"],
        "value": row["value"],
        "raw": False,
    }


def _pipeline_ids(store: Store, schedule_id: int) -> list[int]:
    return [
        int(r["pipeline_id"])
        for r in store.all(
            "SELECT pipeline_id FROM pipeline_schedule_pipelines WHERE schedule_id = ? "
            "ORDER BY pipeline_id",
            [schedule_id],
        )
    ]


def _details(ctx: Ctx, row: Row, *, with_variables: bool = True) -> dict[str, Any]:
    store = ctx.store
    doc = _schedule_doc(ctx, row)
    ids = _pipeline_ids(store, row["id"])
    last = store.one("SELECT * FROM pipelines WHERE id = ?", [ids[-1]]) if ids else None
    doc["last_pipeline"] = ent.pipeline_basic(store, ctx.base_url, last) if last else None
    variables = store.all(
        "SELECT * FROM pipeline_schedule_variables WHERE schedule_id = ? ORDER BY rowid",
        [row["id"]],
    )
    if with_variables:
        doc["variables"] = [_variable_doc(v) for v in variables]
    return doc


def _answer(ctx: Ctx, schedule_id: int, status: int = 200) -> Response:
    """The schedule as it is now, with its details."""
    row = ctx.store.one("SELECT * FROM pipeline_schedules WHERE id = ?", [schedule_id])
    assert row is not None
    return json_response(_details(ctx, row), status)


def _load(ctx: Ctx, project: Row) -> Row:
    sid = to_int(ctx.params["schedule_id"], "pipeline_schedule_id")
    row = ctx.store.one(
        "SELECT * FROM pipeline_schedules WHERE id = ? AND project_id = ?", [sid, project["id"]]
    )
    if row is None:
        raise not_found("Pipeline Schedule")
    return row


def _is_owner(ident: Identity, row: Row) -> bool:
    return ident.is_admin or row["owner_id"] == ident.user_id


def _may_update(ctx: Ctx, ident: Identity, project: Row, row: Row) -> None:
    """``update_pipeline_schedule``: an admin, or the owner while still a developer."""
    level = project_access(ctx.store, ident.user_id, project)
    if not (ident.is_admin or (row["owner_id"] == ident.user_id and level >= DEVELOPER)):
        raise forbidden()


def _may_admin(ctx: Ctx, ident: Identity, project: Row, row: Row) -> None:
    """``admin_pipeline_schedule``: a maintainer, or the owner while still a developer."""
    level = project_access(ctx.store, ident.user_id, project)
    if not (
        ident.is_admin or level >= MAINTAINER or (_is_owner(ident, row) and level >= DEVELOPER)
    ):
        raise forbidden()


def _validation_error(errors: dict[str, list[str]]) -> ApiError:
    return ApiError(400, errors)


def _values(ctx: Ctx, current: Row | None) -> dict[str, Any]:
    """The schedule's attributes from the request, validated as ``Ci::PipelineSchedule`` does."""
    if current is None:
        missing = [name for name in ("description", "ref", "cron") if ctx.arg(name) is None]
        if missing:
            raise ApiError(400, ", ".join(f"{n} is missing" for n in missing), key="error")
    values: dict[str, Any] = {}
    for name in ("description", "ref", "cron", "cron_timezone"):
        if ctx.arg(name) is not None:
            values[name] = str(ctx.arg(name))
    if ctx.arg("active") is not None:
        values["active"] = 1 if to_bool(ctx.arg("active")) else 0
    merged = {**(dict(current) if current is not None else {}), **values}
    merged.setdefault("cron_timezone", "UTC")
    merged.setdefault("active", 1)
    errors: dict[str, list[str]] = {}
    for name in ("description", "ref"):
        if not str(merged.get(name) or "").strip():
            errors.setdefault(name, []).append("can't be blank")
    if not valid_cron(str(merged.get("cron") or "")):
        errors.setdefault("cron", []).append("is invalid syntax")
    if zone(str(merged["cron_timezone"])) is None:
        errors.setdefault("cron_timezone", []).append("is invalid syntax")
    if errors:
        raise _validation_error(errors)
    return {k: merged[k] for k in ("description", "ref", "cron", "cron_timezone", "active")}


@routes.get(BASE)
@project_route(REPORTER)
def list_schedules(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    scope = ctx.query("scope")
    if scope is not None and scope not in ("active", "inactive"):
        raise ApiError(400, "scope does not have a valid value", key="error")
    sql = "SELECT * FROM pipeline_schedules WHERE project_id = ?"
    if scope is not None:
        sql += " AND active = " + ("1" if scope == "active" else "0")
    rows = ctx.store.all(sql + " ORDER BY id", [project["id"]])
    return paginate(ctx, rows, lambda r: _schedule_doc(ctx, r))


@routes.get(ONE)
@project_route(REPORTER)
def get_schedule(ctx: Ctx, ident: Identity, project: Row) -> Response:
    row = _load(ctx, project)
    # GitLab exposes `variables` only with `read_pipeline_schedule_variables`, which goes
    # with `admin_pipeline_schedule`: a maintainer, or the owner.
    try:
        _may_admin(ctx, ident, project, row)
    except ApiError:
        return json_response(_details(ctx, row, with_variables=False))
    return json_response(_details(ctx, row))


@routes.get(ONE + "/pipelines")
@project_route(REPORTER)
def schedule_pipelines(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    row = _load(ctx, project)
    sort = ctx.query("sort") or "asc"
    if sort not in ("asc", "desc"):
        raise ApiError(400, "sort does not have a valid value", key="error")
    ids = _pipeline_ids(ctx.store, row["id"])
    if sort == "desc":
        ids.reverse()
    rows = [ctx.store.one("SELECT * FROM pipelines WHERE id = ?", [i]) for i in ids]
    return paginate(
        ctx,
        [r for r in rows if r is not None],
        lambda r: ent.pipeline_basic(ctx.store, ctx.base_url, r),
    )


@routes.post(BASE)
@project_route(DEVELOPER)
def create_schedule(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    values = _values(ctx, None)
    now = _clock(ctx).now()
    with store.tx():
        sid = store.insert(
            "pipeline_schedules",
            {
                "project_id": project["id"],
                **values,
                "next_run_at": now_iso(next_run(values["cron"], values["cron_timezone"], now)),
                "created_at": now_iso(now),
                "updated_at": now_iso(now),
                "owner_id": ident.user_id,
            },
        )
    return _answer(ctx, sid, 201)


@routes.put(ONE)
@project_route(DEVELOPER)
def update_schedule(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _load(ctx, project)
    _may_update(ctx, ident, project, row)
    values = _values(ctx, row)
    now = _clock(ctx).now()
    values["next_run_at"] = now_iso(next_run(values["cron"], values["cron_timezone"], now))
    values["updated_at"] = now_iso(now)
    store.update("pipeline_schedules", row["id"], values)
    return _answer(ctx, row["id"])


@routes.post(ONE + "/take_ownership")
@project_route(MAINTAINER)
def take_ownership(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _load(ctx, project)
    if row["owner_id"] == ident.user_id:
        raise forbidden()
    store.update(
        "pipeline_schedules",
        row["id"],
        {"owner_id": ident.user_id, "updated_at": now_iso(_clock(ctx).now())},
    )
    return _answer(ctx, row["id"], 201)


@routes.delete(ONE)
@project_route(DEVELOPER)
def delete_schedule(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _load(ctx, project)
    _may_admin(ctx, ident, project, row)
    check_unmodified_since(ctx, row["updated_at"])
    with store.tx():
        store.run("DELETE FROM pipeline_schedules WHERE id = ?", [row["id"]])
        store.run("DELETE FROM pipeline_schedule_variables WHERE schedule_id = ?", [row["id"]])
        store.run("DELETE FROM pipeline_schedule_pipelines WHERE schedule_id = ?", [row["id"]])
    return Response(status_code=204)


@routes.post(ONE + "/play")
@project_route(DEVELOPER)
def play_schedule(ctx: Ctx, ident: Identity, project: Row) -> Response:
    """Run the schedule now, as the caller; ``next_run_at`` does not move (GitLab's PlayService)."""
    row = _load(ctx, project)
    run_schedule(ctx.store, row, user_id=ident.user_id)
    return json_response({"message": "201 Created"}, 201)


# variables ----------------------------------------------------------------------------------


def _load_variable(ctx: Ctx, row: Row, key: str | None = None) -> Row:
    var = ctx.store.one(
        "SELECT * FROM pipeline_schedule_variables WHERE schedule_id = ? AND key = ?",
        [row["id"], ctx.params["key"] if key is None else key],
    )
    if var is None:
        raise not_found("Pipeline Schedule Variable")
    return var


def _variable_type(ctx: Ctx, default: str) -> str:
    vtype = str(ctx.arg("variable_type") or default)
    if vtype not in ("env_var", "file"):
        raise ApiError(400, "variable_type does not have a valid value", key="error")
    return vtype


@routes.post(ONE + "/variables")
@project_route(DEVELOPER)
def create_variable(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row = _load(ctx, project)
    _may_update(ctx, ident, project, row)
    missing = [name for name in ("key", "value") if ctx.arg(name) is None]
    if missing:
        raise ApiError(400, ", ".join(f"{n} is missing" for n in missing), key="error")
    key, value = str(ctx.arg("key")), str(ctx.arg("value"))
    vtype = _variable_type(ctx, "env_var")
    if not VAR_KEY_RE.match(key):
        raise _validation_error({"key": ["can contain only letters, digits and '_'."]})
    with store.tx():
        taken = store.one(
            "SELECT 1 FROM pipeline_schedule_variables WHERE schedule_id = ? AND key = ?",
            [row["id"], key],
        )
        if taken is not None:
            raise _validation_error({"key": [f"({key}) has already been taken"]})
        store.run(
            "INSERT INTO pipeline_schedule_variables VALUES (?, ?, ?, ?)",
            [row["id"], key, value, vtype],
        )
    return json_response(_variable_doc(_load_variable(ctx, row, key)), 201)


def _editable_variable(ctx: Ctx, ident: Identity, project: Row) -> tuple[Row, Row]:
    """The schedule and its variable ``:key``, once the caller may edit them."""
    row = _load(ctx, project)
    _may_update(ctx, ident, project, row)
    return row, _load_variable(ctx, row)


@routes.put(ONE + "/variables/{key}")
@project_route(DEVELOPER)
def update_variable(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    row, var = _editable_variable(ctx, ident, project)
    value = str(ctx.arg("value")) if ctx.arg("value") is not None else var["value"]
    vtype = _variable_type(ctx, var["variable_type"])
    store.run(
        "UPDATE pipeline_schedule_variables SET value = ?, variable_type = ? "
        "WHERE schedule_id = ? AND key = ?",
        [value, vtype, row["id"], var["key"]],
    )
    return json_response(_variable_doc(_load_variable(ctx, row, var["key"])))


@routes.delete(ONE + "/variables/{key}")
@project_route(DEVELOPER)
def delete_variable(ctx: Ctx, ident: Identity, project: Row) -> Response:
    row, var = _editable_variable(ctx, ident, project)
    ctx.store.run(
        "DELETE FROM pipeline_schedule_variables WHERE schedule_id = ? AND key = ?",
        [row["id"], var["key"]],
    )
    return json_response(_variable_doc(var), 202)  # GitLab: `status :accepted`


# running ------------------------------------------------------------------------------------


def _branch(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


def run_schedule(store: Store, row: Row, *, user_id: int) -> int | None:
    """Create the schedule's pipeline as ``user_id``; its id, or None when GitLab would refuse.

    The schedule's variables become pipeline variables (file-type ones stay files for the job).
    """
    project = store.one("SELECT * FROM projects WHERE id = ?", [row["project_id"]])
    if project is None:
        return None
    variables = [
        {"key": v["key"], "value": v["value"], "variable_type": v["variable_type"]}
        for v in store.all(
            "SELECT * FROM pipeline_schedule_variables WHERE schedule_id = ? ORDER BY rowid",
            [row["id"]],
        )
    ]
    try:
        pid = pl.create(
            store,
            project,
            ref=_branch(row["ref"]),
            user_id=user_id,
            source="schedule",
            variables=variables,
        )
    except pl.PipelineError as exc:
        log.info("sandbox: schedule %s created no pipeline: %s", row["id"], "; ".join(exc.errors))
        return None
    store.run("INSERT INTO pipeline_schedule_pipelines VALUES (?, ?)", [row["id"], pid])
    return pid


def run_due(store: Store, now: datetime) -> int:
    """What GitLab's ``PipelineScheduleWorker`` does at cron time ``now``; pipelines created."""
    created = 0
    due = store.all(
        "SELECT * FROM pipeline_schedules WHERE active = 1 AND next_run_at <= ? ORDER BY id",
        [now_iso(now)],
    )
    for row in due:
        # Move next_run_at first: a failing pipeline must not make the schedule fire again.
        after = max(now, parse_iso(row["next_run_at"]) or now)
        store.update(
            "pipeline_schedules",
            row["id"],
            {"next_run_at": now_iso(next_run(row["cron"], row["cron_timezone"], after))},
        )
        if run_schedule(store, row, user_id=row["owner_id"]) is not None:
            created += 1
    return created


def realign(store: Store, now: datetime) -> None:
    """Bring back ``next_run_at`` times that lie beyond the cron's next time after ``now``.

    A fast clock (``--schedule-tick``) runs ahead of real time, and the next start's clock
    begins at real time again: without this, the schedules of a data dir used with a fast tick
    would not fire for as long as that clock had run ahead. A time in the past stays, so that
    a schedule missed while the sandbox was stopped fires once, as GitLab's would.
    """
    for row in store.all("SELECT * FROM pipeline_schedules"):
        fresh = next_run(row["cron"], row["cron_timezone"], now)
        stored = parse_iso(row["next_run_at"])
        if stored is None or stored > fresh:
            store.update("pipeline_schedules", row["id"], {"next_run_at": now_iso(fresh)})
