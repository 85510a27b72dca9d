"""REST v4 runners: create (new and legacy workflow), verify, list, details, update, delete."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import (
    MAINTAINER,
    OWNER,
    Identity,
    ancestor_ids,
    descendant_ids,
    group_access,
    group_route,
    load_group,
    load_project,
    project_access,
    project_route,
    require_token_scope,
    require_user,
    user_route,
)
from provisioner.sandbox.state import digest, new_token, now_iso, parse_iso
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
    paginate_query,
    to_bool,
    to_int,
    to_list,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

RUNNER_TYPES = ("instance_type", "group_type", "project_type")
PARTITION = {"instance_type": "t1_", "group_type": "t2_", "project_type": "t3_"}
STATUSES = ("active", "paused", "online", "offline", "never_contacted", "stale")


routes = RouteTable()


def find_runner_by_token(store: Store, token: str | None) -> Row | None:
    if not token:
        return None
    return store.one("SELECT * FROM runners WHERE digest = ?", [digest(str(token))])


def runner_for_token(store: Store, token: str | None) -> Row:
    """The runner of an authentication token: 400 when none was sent, 403 when it is unknown."""
    if not token:
        raise missing_param("token")
    runner = find_runner_by_token(store, token)
    if runner is None:
        raise forbidden()
    return runner


def touch_runner(store: Store, runner: Row, ctx: Ctx | None = None) -> None:
    """``contacted_at`` moves on every authenticated runner call (GitLab's heartbeat)."""
    values: dict[str, Any] = {"contacted_at": now_iso()}
    info = ctx.json().get("info") if ctx is not None else None
    if isinstance(info, dict):
        for key in ("version", "revision", "platform", "architecture", "name"):
            if info.get(key):
                values[key] = str(info[key])
    store.update("runners", runner["id"], values)
    system_id = ctx.json().get("system_id") if ctx is not None else None
    if system_id:
        with store.tx():
            known = store.scalar(
                "SELECT id FROM runner_managers WHERE runner_id = ? AND system_id = ?",
                [runner["id"], str(system_id)],
            )
            if known is not None:
                store.update("runner_managers", known, {"contacted_at": values["contacted_at"]})
                return
            store.insert(
                "runner_managers",
                {
                    "runner_id": runner["id"],
                    "system_id": str(system_id),
                    "created_at": values["contacted_at"],
                    "contacted_at": values["contacted_at"],
                    "version": values.get("version"),
                    "revision": values.get("revision"),
                    "platform": values.get("platform"),
                    "architecture": values.get("architecture"),
                },
            )


def _validate(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    errors = []
    timeout = attrs.get("maximum_timeout")
    if timeout is not None and timeout < 600:
        errors.append(("maximum_timeout", "needs to be at least 10 minutes"))
    tags = attrs.get("tag_list", [])
    if len(tags) > 50:
        errors.append(("tags_list", "must be less than the limit of 50 tags"))
    if not tags and not attrs.get("run_untagged", True):
        errors.append(
            ("tags_list", "can not be empty when runner is not allowed to pick untagged jobs")
        )
    if len(attrs.get("description") or "") > 1024:
        errors.append(("description", "is too long (maximum is 1024 characters)"))
    return errors


def _full_message(field: str, msg: str) -> str:
    return f"{field.replace('_', ' ').capitalize()} {msg}"


def _runner_attrs(ctx: Ctx) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    body = ctx.json()
    if "description" in body:
        attrs["description"] = str(body.get("description") or "")
    for key in ("maintenance_note", "maintainer_note"):
        if body.get(key) is not None:
            attrs["maintenance_note"] = str(body[key])
    if "paused" in body:
        attrs["paused"] = to_bool(body["paused"])
    elif "active" in body:
        attrs["paused"] = not to_bool(body["active"])
    for key in ("locked", "run_untagged"):
        if key in body:
            attrs[key] = to_bool(body[key])
    if "tag_list" in body:
        attrs["tag_list"] = to_list(body["tag_list"])
    if "maximum_timeout" in body:
        attrs["maximum_timeout"] = to_int(body["maximum_timeout"], "maximum_timeout")
    if "access_level" in body:
        if body["access_level"] not in ("not_protected", "ref_protected"):
            raise ApiError(400, "access_level does not have a valid value", key="error")
        attrs["access_level"] = body["access_level"]
    if "token_expires_at" in body:
        attrs["token_expires_at"] = body["token_expires_at"]
    return attrs


def _insert_runner(
    store: Store,
    runner_type: str,
    attrs: dict[str, Any],
    *,
    creator: int | None,
    group_id: int | None,
    project_id: int | None,
    legacy: bool,
) -> tuple[int, str]:
    token = ("" if legacy else "glrt-") + PARTITION[runner_type] + new_token("", 20)
    rid = store.insert(
        "runners",
        {
            "digest": digest(token),
            "runner_type": runner_type,
            "description": attrs.get("description", ""),
            "paused": 1 if attrs.get("paused") else 0,
            "locked": 1 if attrs.get("locked") else 0,
            "run_untagged": 1 if attrs.get("run_untagged", True) else 0,
            "tag_list": json.dumps(attrs.get("tag_list", [])),
            "maximum_timeout": attrs.get("maximum_timeout"),
            "access_level": attrs.get("access_level", "not_protected"),
            "maintenance_note": attrs.get("maintenance_note"),
            "created_at": now_iso(),
            "updated_at": now_iso(),
            "created_by": creator,
            "group_id": group_id,
            "legacy": 1 if legacy else 0,
            "token_expires_at": attrs.get("token_expires_at"),
        },
    )
    if project_id is not None:
        store.run("INSERT INTO runner_projects VALUES (?, ?)", [rid, project_id])
    return rid, token


@routes.post("/api/v4/user/runners")
def create_user_runner(ctx: Ctx) -> Response:
    """``POST /user/runners``: the new workflow; the PAT needs ``create_runner`` or ``api``."""
    store = ctx.store
    ident = require_token_scope(store, ctx, ("create_runner", "api"))
    runner_type = ctx.arg("runner_type")
    if not runner_type:
        raise missing_param("runner_type")
    if runner_type not in RUNNER_TYPES:
        raise ApiError(400, "runner_type does not have a valid value", key="error")
    attrs = _runner_attrs(ctx)
    group_id = project_id = None
    if runner_type == "instance_type":
        if not ident.is_admin:
            raise forbidden("User is not allowed to create an instance runner")
    elif runner_type == "group_type":
        gid = to_int(ctx.arg("group_id"), "group_id")
        if gid is None:
            raise ApiError(400, "group_id is missing", key="error")
        group = load_group(store, ident, str(gid))
        if not ident.is_admin and group_access(store, ident.user_id, group["id"]) < OWNER:
            raise forbidden("User is not allowed to create a runner on the group")
        group_id = group["id"]
    else:
        pid = to_int(ctx.arg("project_id"), "project_id")
        if pid is None:
            raise ApiError(400, "project_id is missing", key="error")
        project = load_project(store, ident, str(pid))
        if not ident.is_admin and project_access(store, ident.user_id, project) < MAINTAINER:
            raise forbidden("User is not allowed to create a runner on the project")
        project_id = project["id"]
    errors = _validate(attrs)
    if errors:
        raise bad_request(" and ".join(_full_message(f, m) for f, m in errors))
    with store.tx():
        rid, token = _insert_runner(
            store,
            runner_type,
            attrs,
            creator=ident.user_id,
            group_id=group_id,
            project_id=project_id,
            legacy=False,
        )
    return json_response(
        {"id": rid, "token": token, "token_expires_at": attrs.get("token_expires_at")}, 201
    )


@routes.post("/api/v4/runners")
def register_legacy(ctx: Ctx) -> Response:
    """``POST /runners`` with a registration token (410 once registration tokens are off)."""
    store = ctx.store
    token = ctx.arg("token")
    if not token:
        raise missing_param("token")
    if "paused" in ctx.json() and "active" in ctx.json():
        raise ApiError(400, "paused, active are mutually exclusive", key="error")
    runner_type: str | None = None
    group_id = project_id = None
    if token == store.setting("instance_runners_token"):
        runner_type = "instance_type"
    else:
        group = store.one("SELECT * FROM namespaces WHERE runners_token = ?", [token])
        project = store.one("SELECT * FROM projects WHERE runners_token = ?", [token])
        if group is not None:
            runner_type, group_id = "group_type", group["id"]
        elif project is not None:
            runner_type, project_id = "project_type", project["id"]
    if runner_type is None:
        raise forbidden("invalid token supplied")
    if store.setting("allow_runner_registration_token") != "true":
        raise ApiError(410, "410 Gone - runner registration disallowed")
    attrs = _runner_attrs(ctx)
    errors = _validate(attrs)
    if errors:
        body: dict[str, list[str]] = {}
        for field_name, msg in errors:
            body.setdefault(field_name, []).append(msg)
        raise ApiError(400, body)
    with store.tx():
        rid, new = _insert_runner(
            store,
            runner_type,
            attrs,
            creator=None,
            group_id=group_id,
            project_id=project_id,
            legacy=True,
        )
        info = ctx.json().get("info")
        if isinstance(info, dict):
            store.update(
                "runners",
                rid,
                {
                    k: str(info[k])
                    for k in ("version", "revision", "platform", "architecture", "name")
                    if info.get(k)
                },
            )
    return json_response({"id": rid, "token": new, "token_expires_at": None}, 201)


@routes.post("/api/v4/runners/verify")
def verify(ctx: Ctx) -> Response:
    store = ctx.store
    token = ctx.arg("token") or ctx.header("runner-token")
    runner = runner_for_token(store, token)
    touch_runner(store, runner, ctx)
    return json_response(
        {"id": runner["id"], "token": token, "token_expires_at": runner["token_expires_at"]}
    )


def check_unmodified_since(ctx: Ctx, last_modified: str | None) -> None:
    """GitLab's ``check_unmodified_since!``: 412 when the resource changed after the header's time.

    An unparsable header is ignored, as Ruby's ``Time.parse`` failing is.
    """
    header = ctx.header("if-unmodified-since")
    changed = parse_iso(last_modified)
    if not header or changed is None:
        return
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        try:
            since = datetime.fromisoformat(header.replace("Z", "+00:00"))
        except ValueError:
            return
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if changed > since:
        raise ApiError(412, "412 Precondition Failed")


def _delete_runner_rows(store: Store, rid: int) -> None:
    with store.tx():
        store.run("DELETE FROM runners WHERE id = ?", [rid])
        store.run("DELETE FROM runner_projects WHERE runner_id = ?", [rid])
        store.run("DELETE FROM runner_managers WHERE runner_id = ?", [rid])


@routes.delete("/api/v4/runners")
def delete_by_token(ctx: Ctx) -> Response:
    store = ctx.store
    token = ctx.arg("token")
    runner = runner_for_token(store, token)
    _delete_runner_rows(store, runner["id"])
    return Response(status_code=204)


@routes.delete("/api/v4/runners/managers")
def delete_manager(ctx: Ctx) -> Response:
    store = ctx.store
    token, system_id = ctx.arg("token"), ctx.arg("system_id")
    if token and not system_id:
        raise missing_param("system_id")
    runner = runner_for_token(store, token)
    row = store.one(
        "SELECT id FROM runner_managers WHERE runner_id = ? AND system_id = ?",
        [runner["id"], system_id],
    )
    if row is None:
        raise ApiError(404, "404 Runner manager not found")
    store.run("DELETE FROM runner_managers WHERE id = ?", [row["id"]])
    return Response(status_code=204)


@routes.post("/api/v4/runners/reset_authentication_token")
def reset_with_token(ctx: Ctx) -> Response:
    store = ctx.store
    token = ctx.arg("token")
    runner = runner_for_token(store, token)
    return json_response(_reset(store, runner), 201)


def _reset(store: Store, runner: Row) -> dict[str, Any]:
    prefix = "" if runner["legacy"] else "glrt-"
    token = prefix + PARTITION[runner["runner_type"]] + new_token("", 20)
    # GitLab saves the runner, so the reset moves ``updated_at`` (If-Unmodified-Since).
    store.update("runners", runner["id"], {"digest": digest(token), "updated_at": now_iso()})
    return {"token": token, "token_expires_at": runner["token_expires_at"]}


# access to a runner by id -------------------------------------------------------------------


def _runner_projects(store: Store, rid: int) -> list[int]:
    return [
        r["project_id"]
        for r in store.all(
            "SELECT project_id FROM runner_projects WHERE runner_id = ? ORDER BY rowid", [rid]
        )
    ]


def can_read_runner(store: Store, ident: Identity, runner: Row) -> bool:
    if ident.is_admin or runner["runner_type"] == "instance_type":
        return True
    return can_admin_runner(store, ident, runner)


def can_admin_runner(store: Store, ident: Identity, runner: Row) -> bool:
    if ident.is_admin:
        return True
    if runner["runner_type"] == "group_type":
        return group_access(store, ident.user_id, runner["group_id"]) >= OWNER
    if runner["runner_type"] == "project_type":
        for pid in _runner_projects(store, runner["id"]):
            project = store.one("SELECT * FROM projects WHERE id = ?", [pid])
            if project is not None and project_access(store, ident.user_id, project) >= MAINTAINER:
                return True
    return False


# lists --------------------------------------------------------------------------------------


def _state_matches(row: Row, wanted: str | None) -> bool:
    if wanted is None or wanted in (*RUNNER_TYPES, "specific", "shared"):
        return True
    if wanted == "active":
        return not row["paused"]
    if wanted == "paused":
        return bool(row["paused"])
    return ent.runner_status(row, rest=False) == wanted


def _type_matches(row: Row, scope: str | None, rtype: str | None) -> bool:
    kind = row["runner_type"]
    if scope in RUNNER_TYPES and kind != scope:
        return False
    if scope == "specific" and kind == "instance_type":
        return False
    if scope == "shared" and kind != "instance_type":
        return False
    return not (rtype and kind != rtype)


def _filter(ctx: Ctx, rows: list[Row], *, scopes: tuple[str, ...]) -> list[Row]:
    scope = ctx.query("scope")
    if scope is not None and scope not in scopes:
        raise ApiError(400, "Scope contains invalid value")
    rtype = ctx.query("type")
    if rtype is not None and rtype not in RUNNER_TYPES:
        raise ApiError(400, "type does not have a valid value", key="error")
    status = ctx.query("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "status does not have a valid value", key="error")
    paused = ctx.query("paused")
    tags = set(to_list(ctx.query("tag_list")))
    version_prefix = ctx.query("version_prefix")
    return [
        row
        for row in rows
        if _type_matches(row, scope, rtype)
        and _state_matches(row, scope)
        and _state_matches(row, status)
        and (paused is None or bool(row["paused"]) == to_bool(paused))
        and (not tags or tags <= set(json.loads(row["tag_list"])))
        and (not version_prefix or (row["version"] or "").startswith(version_prefix))
    ]


def _render(ctx: Ctx, store: Store) -> Any:
    return lambda r: ent.runner_entity(store, ctx.base_url, r)


LIGHT_COLUMNS = (
    "id, runner_type, paused, tag_list, contacted_at, created_at, version, group_id, run_untagged"
)
FILTERS = ("scope", "type", "status", "paused", "tag_list", "version_prefix")


def _paginate_runners(ctx: Ctx, store: Store, ids: list[int]) -> Response:
    def fetch(offset: int, limit: int) -> list[Row]:
        page = ids[offset : offset + limit]
        if not page:
            return []
        marks = ",".join("?" * len(page))
        return store.all(f"SELECT * FROM runners WHERE id IN ({marks}) ORDER BY id", page)  # noqa: S608

    return paginate_query(ctx, len(ids), fetch, _render(ctx, store))


@routes.get("/api/v4/runners")
@user_route()
def list_owned(ctx: Ctx, ident: Identity) -> Response:
    store = ctx.store
    rows = store.all(f"SELECT {LIGHT_COLUMNS} FROM runners ORDER BY id")  # noqa: S608
    if not ident.is_admin:
        rows = [
            r
            for r in rows
            if r["runner_type"] != "instance_type"
            and can_admin_runner(
                store, ident, store.one("SELECT * FROM runners WHERE id = ?", [r["id"]]) or r
            )
        ]
    rows = _filter(ctx, rows, scopes=STATUSES)
    return _paginate_runners(ctx, store, [r["id"] for r in rows])


@routes.get("/api/v4/runners/all")
@user_route(admin=True)
def list_all(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    scopes = (*STATUSES, "specific", "shared", *RUNNER_TYPES)
    if not any(ctx.query(f) is not None for f in FILTERS):
        # The common case (python-gitlab paging through everything) loads one page only.
        total = int(store.scalar("SELECT COUNT(*) FROM runners"))
        return paginate_query(
            ctx,
            total,
            lambda offset, limit: store.all(
                "SELECT * FROM runners ORDER BY id LIMIT ? OFFSET ?", [limit, offset]
            ),
            _render(ctx, store),
        )
    rows = _filter(
        ctx,
        store.all(f"SELECT {LIGHT_COLUMNS} FROM runners ORDER BY id"),  # noqa: S608
        scopes=scopes,
    )
    return _paginate_runners(ctx, store, [r["id"] for r in rows])


@routes.get("/api/v4/groups/{id}/runners")
@group_route(MAINTAINER)
def list_group(ctx: Ctx, _ident: Identity, group: Row) -> Response:
    store = ctx.store
    chain = ancestor_ids(store, group["id"])
    inner = set(descendant_ids(store, group["id"]))
    rows = []
    for r in store.all("SELECT * FROM runners ORDER BY id"):
        if r["runner_type"] == "instance_type" or (
            r["runner_type"] == "group_type" and r["group_id"] in chain
        ):
            rows.append(r)
        elif r["runner_type"] == "project_type":
            pids = _runner_projects(store, r["id"])
            nss = {
                store.scalar("SELECT namespace_id FROM projects WHERE id = ?", [p]) for p in pids
            }
            if nss & inner:
                rows.append(r)
    rows = _filter(ctx, rows, scopes=(*STATUSES, *RUNNER_TYPES))
    return paginate(ctx, rows, _render(ctx, store))


@routes.get("/api/v4/projects/{id}/runners")
@project_route(MAINTAINER)
def list_project(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    rows = [
        r
        for r in store.all("SELECT * FROM runners ORDER BY id")
        if runner_serves_project(store, r, project)
    ]
    rows = _filter(ctx, rows, scopes=(*STATUSES, "specific", "shared", *RUNNER_TYPES))
    return paginate(ctx, rows, _render(ctx, store))


# one runner; after the lists, so that /runners/all is tried before /runners/{runner_id}


def _load_runner(ctx: Ctx, *, admin: bool) -> tuple[Store, Identity, Row]:
    store = ctx.store
    ident = require_user(store, ctx)
    rid = to_int(ctx.params["runner_id"], "id")
    runner = store.one("SELECT * FROM runners WHERE id = ?", [rid])
    if runner is None:
        raise not_found("Runner")
    allowed = (
        can_admin_runner(store, ident, runner) if admin else can_read_runner(store, ident, runner)
    )
    if not allowed:
        raise forbidden("No access granted")
    return store, ident, runner


@routes.get("/api/v4/runners/{runner_id}")
def get_runner(ctx: Ctx) -> Response:
    store, _, runner = _load_runner(ctx, admin=False)
    doc = ent.runner_details(store, ctx.base_url, runner)
    if not to_bool(ctx.query("include_projects"), True):
        doc.pop("projects")
    return json_response(doc)


@routes.put("/api/v4/runners/{runner_id}")
def update_runner(ctx: Ctx) -> Response:
    store, _, runner = _load_runner(ctx, admin=True)
    attrs = _runner_attrs(ctx)
    if not attrs:
        raise ApiError(
            400,
            "description, active, paused, tag_list, run_untagged, locked, "
            "access_level, maximum_timeout, maintenance_note are missing, at "
            "least one parameter must be provided",
            key="error",
        )
    merged = {
        "tag_list": attrs.get("tag_list", json.loads(runner["tag_list"])),
        "run_untagged": attrs.get("run_untagged", bool(runner["run_untagged"])),
        "maximum_timeout": attrs.get("maximum_timeout", runner["maximum_timeout"]),
        "description": attrs.get("description", runner["description"]),
    }
    errors = _validate(merged)
    if errors:
        body: dict[str, list[str]] = {}
        for field_name, msg in errors:
            body.setdefault(field_name, []).append(msg)
        raise ApiError(400, body)
    values: dict[str, Any] = {}
    for key, value in attrs.items():
        if key == "tag_list":
            values[key] = json.dumps(value)
        elif key in ("paused", "locked", "run_untagged"):
            values[key] = 1 if value else 0
        else:
            values[key] = value
    # Rails moves ``updated_at`` only when an attribute really changes; heartbeats
    # (``contacted_at``) never do.
    if any(runner[key] != value for key, value in values.items()):
        values["updated_at"] = now_iso()
    store.update("runners", runner["id"], values)
    fresh = store.one("SELECT * FROM runners WHERE id = ?", [runner["id"]])
    assert fresh is not None
    return json_response(ent.runner_details(store, ctx.base_url, fresh))


@routes.delete("/api/v4/runners/{runner_id}")
def delete_runner(ctx: Ctx) -> Response:
    store, ident, runner = _load_runner(ctx, admin=True)
    if not ident.is_admin and len(_runner_projects(store, runner["id"])) > 1:
        raise forbidden("Runner associated with more than one project")
    check_unmodified_since(ctx, runner["updated_at"] or runner["created_at"])
    _delete_runner_rows(store, runner["id"])
    return Response(status_code=204)


@routes.post("/api/v4/runners/{runner_id}/reset_authentication_token")
def reset_by_id(ctx: Ctx) -> Response:
    store, _, runner = _load_runner(ctx, admin=True)
    return json_response(_reset(store, runner), 201)


@routes.get("/api/v4/runners/{runner_id}/managers")
def runner_managers(ctx: Ctx) -> Response:
    store, _, runner = _load_runner(ctx, admin=False)
    rows = store.all(
        "SELECT * FROM runner_managers WHERE runner_id = ? ORDER BY id", [runner["id"]]
    )
    return json_response(
        [
            {
                "id": r["id"],
                "system_id": r["system_id"],
                "version": r["version"],
                "revision": r["revision"],
                "platform": r["platform"],
                "architecture": r["architecture"],
                "created_at": r["created_at"],
                "contacted_at": r["contacted_at"],
                "ip_address": None,
                "status": "online" if r["contacted_at"] else "never_contacted",
                "job_execution_status": "idle",
            }
            for r in rows
        ]
    )


def runner_serves_project(store: Store, runner: Row, project: Row) -> bool:
    if runner["runner_type"] == "instance_type":
        return bool(project["shared_runners_enabled"])
    if runner["runner_type"] == "group_type":
        return bool(project["group_runners_enabled"]) and runner["group_id"] in ancestor_ids(
            store, project["namespace_id"]
        )
    return project["id"] in _runner_projects(store, runner["id"])


@routes.post("/api/v4/projects/{id}/runners")
@project_route(MAINTAINER)
def assign_to_project(ctx: Ctx, ident: Identity, project: Row) -> Response:
    store = ctx.store
    rid = to_int(ctx.arg("runner_id"), "runner_id")
    if rid is None:
        raise missing_param("runner_id")
    runner = store.one("SELECT * FROM runners WHERE id = ?", [rid])
    if runner is None:
        raise not_found("Runner")
    if runner["runner_type"] != "project_type" or (runner["locked"] and not ident.is_admin):
        raise forbidden(
            "Runner is a group runner"
            if runner["runner_type"] == "group_type"
            else "Runner is locked"
            if runner["locked"]
            else ""
        )
    if not can_admin_runner(store, ident, runner):
        raise forbidden("No access granted")
    if project["id"] in _runner_projects(store, runner["id"]):
        raise ApiError(400, {"runner": ["has already been taken"]})
    store.run("INSERT INTO runner_projects VALUES (?, ?)", [runner["id"], project["id"]])
    return json_response(ent.runner_entity(store, ctx.base_url, runner), 201)


@routes.delete("/api/v4/projects/{id}/runners/{runner_id}")
@project_route(MAINTAINER)
def unassign_from_project(ctx: Ctx, _ident: Identity, project: Row) -> Response:
    store = ctx.store
    rid = to_int(ctx.params["runner_id"], "runner_id")
    pids = _runner_projects(store, rid or 0)
    if project["id"] not in pids:
        raise not_found("Runner")
    if len(pids) == 1:
        raise forbidden(
            "Only one project associated with the runner. Please remove the runner instead"
        )
    store.run(
        "DELETE FROM runner_projects WHERE runner_id = ? AND project_id = ?", [rid, project["id"]]
    )
    return Response(status_code=204)
