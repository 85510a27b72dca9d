"""Sandbox-only endpoints (not GitLab's): observe and tune fault injection at run time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.sandbox.auth import require_admin, require_user
from provisioner.sandbox.web import ApiError, Ctx, RouteTable, json_response, to_int

if TYPE_CHECKING:
    from starlette.responses import Response

    from provisioner.sandbox.faults import Faults


routes = RouteTable()


def _faults(ctx: Ctx) -> Faults:
    require_admin(require_user(ctx.app.store, ctx, write=False))
    faults: Faults = ctx.app.faults
    return faults


@routes.get("/-/sandbox/faults")
def get_faults(ctx: Ctx) -> Response:
    """``GET /-/sandbox/faults``: settings and how many faults were injected so far."""
    return json_response(_faults(ctx).snapshot())


@routes.get("/-/sandbox/requests")
def get_requests(ctx: Ctx) -> Response:
    """``GET /-/sandbox/requests``: requests received per route since start (or reset)."""
    _faults(ctx)  # the same admin check
    counts = ctx.app.requests.snapshot()
    return json_response({"total": sum(counts.values()), "routes": counts})


@routes.delete("/-/sandbox/requests")
def reset_requests(ctx: Ctx) -> Response:
    """``DELETE /-/sandbox/requests``: start counting from zero (admin token)."""
    _faults(ctx)
    ctx.app.requests.reset()
    return json_response({"total": 0, "routes": {}})


@routes.put("/-/sandbox/faults")
def put_faults(ctx: Ctx) -> Response:
    """``PUT /-/sandbox/faults``: ``latency_ms``, ``fault_rate``, ``lost_answer_rate`` (admin)."""
    faults = _faults(ctx)
    rate = ctx.arg("fault_rate")
    lost = ctx.arg("lost_answer_rate")
    try:
        faults.configure(
            latency_ms=to_int(ctx.arg("latency_ms"), "latency_ms"),
            fault_rate=None if rate is None else float(rate),
            lost_answer_rate=None if lost is None else float(lost),
        )
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"400 Bad request - {exc}") from exc
    return json_response(faults.snapshot())
