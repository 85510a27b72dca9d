"""An embedded GitLab-compatible server for offline rehearsal and tests.

Python entry point (tests, ``runnerctl demo``)::

    from provisioner.sandbox import start_background

    handle = start_background(tmp_path / "gitlab", port=0)
    gl = gitlab.Gitlab(handle.url, private_token=handle.root_token)
    ...
    handle.stop()

The server itself (Starlette, uvicorn) is imported only when a sandbox starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.sandbox.server import start_background

__all__ = ["start_background"]


def __getattr__(name: str) -> Any:
    """``start_background`` from :mod:`provisioner.sandbox.server`, imported on first use."""
    if name == "start_background":
        from provisioner.sandbox import server

        return server.start_background
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
