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

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.sandbox.server import SandboxHandle

__all__ = ["start_background"]


def start_background(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: int = 0,
    fault_rate: float = 0.0,
    external_url: str | None = None,
    seed: int | None = None,
) -> SandboxHandle:
    """Start a sandbox in a background thread (see ``server.start_background``)."""
    from provisioner.sandbox import server

    return server.start_background(
        data_dir,
        host=host,
        port=port,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        external_url=external_url,
        seed=seed,
    )
