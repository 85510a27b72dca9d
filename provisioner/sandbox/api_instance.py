"""REST v4 instance level: version and metadata, application settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox.auth import (
    Identity,
    user_route,
)
from provisioner.sandbox.web import (
    Ctx,
    RouteTable,
    json_response,
    to_bool,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Store


routes = RouteTable()


@routes.get("/api/v4/version")
@routes.get("/api/v4/metadata")
@user_route(write=False)
def version(_ctx: Ctx, _ident: Identity) -> Response:
    return json_response(
        {
            "version": ent.VERSION,
            "revision": ent.REVISION,
            "kas": {
                "enabled": False,
                "externalUrl": None,
                "externalK8sProxyUrl": None,
                "version": None,
            },
            "enterprise": False,
        }
    )


def _settings_doc(store: Store) -> dict[str, Any]:
    return {
        "id": 1,
        "allow_runner_registration_token": store.setting("allow_runner_registration_token")
        == "true",
        "default_branch_name": "main",
        "signup_enabled": False,
        "max_artifacts_size": 100,
        "default_ci_config_path": None,
    }


@routes.get("/api/v4/application/settings")
@user_route(admin=True)
def get_settings(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    return json_response(_settings_doc(store))


@routes.put("/api/v4/application/settings")
@user_route(admin=True)
def put_settings(ctx: Ctx, _ident: Identity) -> Response:
    store = ctx.store
    value = ctx.arg("allow_runner_registration_token")
    if value is not None:
        store.set_setting("allow_runner_registration_token", "true" if to_bool(value) else "false")
    return json_response(_settings_doc(store))
