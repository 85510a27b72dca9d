"""REST v4 CI/CD variables of projects and groups."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox.auth import (
    MAINTAINER,
    OWNER,
    Identity,
    load_group,
    load_project,
    user_route,
)
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    Handler,
    RouteTable,
    json_response,
    missing_param,
    not_found,
    paginate,
    to_bool,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row


VAR_KEY_RE = re.compile(r"^[a-zA-Z0-9_]{1,255}$")


routes = RouteTable()


def _var_doc(row: Row) -> dict[str, Any]:
    return {
        "variable_type": row["variable_type"],
        "key": row["key"],
        # GitLab 17.4+: a hidden variable's value never leaves the server through the API.
        "value": None if row["hidden"] else row["value"],
        "hidden": bool(row["hidden"]),
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


def _variables_route(fn: Callable[[Ctx, int], Response]) -> Handler:
    """``handler(ctx, owner)`` where ``owner`` is the ``variables.project_id`` of ``:id``.

    That is the project's id, or minus the id for a group's variables; reaching them takes
    the maintainer role in a project and the owner role in a group, as in GitLab.
    """

    @user_route()
    @functools.wraps(fn)
    def handler(ctx: Ctx, ident: Identity) -> Response:
        store = ctx.store
        if ctx.raw_path.startswith("/api/v4/groups/"):
            group = load_group(store, ident, ctx.params["id"], min_level=OWNER)
            return fn(ctx, -int(group["id"]))
        project = load_project(store, ident, ctx.params["id"], min_level=MAINTAINER)
        return fn(ctx, int(project["id"]))

    return handler


@routes.get("/api/v4/groups/{id}/variables")
@routes.get("/api/v4/projects/{id}/variables")
@_variables_route
def list_variables(ctx: Ctx, owner: int) -> Response:
    store = ctx.store
    rows = store.all("SELECT * FROM variables WHERE project_id = ? ORDER BY rowid", [owner])
    return paginate(ctx, rows, _var_doc)


@routes.get("/api/v4/groups/{id}/variables/{key}")
@routes.get("/api/v4/projects/{id}/variables/{key}")
@_variables_route
def get_variable(ctx: Ctx, owner: int) -> Response:
    store = ctx.store
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
    hidden = bool(existing["hidden"]) if existing else to_bool(ctx.arg("masked_and_hidden"))
    masked = hidden or to_bool(pick("masked", existing["masked"] if existing else False))
    if existing is not None and hidden and not to_bool(ctx.arg("masked"), True):
        raise ApiError(
            400,
            {
                "masked": [
                    "The visibility setting cannot be changed for masked and hidden variables."
                ]
            },
        )
    if masked and not _masked_ok(str(value)):
        raise ApiError(400, {"value": ["is invalid"]})
    return {
        "hidden": 1 if hidden else 0,
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


@routes.post("/api/v4/groups/{id}/variables")
@routes.post("/api/v4/projects/{id}/variables")
@_variables_route
def create_variable(ctx: Ctx, owner: int) -> Response:
    store = ctx.store
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


@routes.put("/api/v4/groups/{id}/variables/{key}")
@routes.put("/api/v4/projects/{id}/variables/{key}")
@_variables_route
def update_variable(ctx: Ctx, owner: int) -> Response:
    store = ctx.store
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


@routes.delete("/api/v4/groups/{id}/variables/{key}")
@routes.delete("/api/v4/projects/{id}/variables/{key}")
@_variables_route
def delete_variable(ctx: Ctx, owner: int) -> Response:
    store = ctx.store
    if (
        store.one(
            "SELECT 1 FROM variables WHERE project_id = ? AND key = ?",
            [owner, ctx.params["key"]],
        )
        is None
    ):
        raise not_found("Variable")
    store.run("DELETE FROM variables WHERE project_id = ? AND key = ?", [owner, ctx.params["key"]])
    return Response(status_code=204)
