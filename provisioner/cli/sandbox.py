"""``runnerctl sandbox``: the embedded GitLab-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioner.cli.context import get_app
from provisioner.errors import UsageError

app = typer.Typer(no_args_is_help=True, help="Embedded GitLab-compatible server for rehearsal.")


@app.command("up")
def up(
    ctx: typer.Context,
    *,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8929,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="State directory (SQLite, repositories, packages)."),
    ] = None,
    latency_ms: Annotated[
        int, typer.Option("--latency-ms", help="Delay added to every API request.")
    ] = 0,
    fault_rate: Annotated[
        float,
        typer.Option("--fault-rate", help="Share of API requests answered with 5xx or 429 (0-1)."),
    ] = 0.0,
    external_url: Annotated[
        str | None,
        typer.Option("--external-url", help="URL clients use, if not the listening address."),
    ] = None,
) -> None:
    """Serve the sandbox in the foreground until Ctrl-C.

    Prints the base URL and the root personal access token; the token is also written, mode
    0600, to ``<data-dir>/root_token``. State survives restarts.
    """
    state = get_app(ctx)
    if not 0.0 <= fault_rate <= 1.0:
        raise UsageError(f"--fault-rate {fault_rate} is out of range", hint="use 0 to 1")
    if latency_ms < 0:
        raise UsageError("--latency-ms must not be negative", hint="use 0 for no added delay")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range", hint="use 1-65535, or 0 for any")
    from provisioner.sandbox.server import SandboxOptions, serve_forever
    from provisioner.settings import cache_dir

    directory = data_dir or cache_dir() / "sandbox"

    def ready(url: str, token: str, token_file: Path) -> None:
        state.redactor.add(token)
        if state.json:
            state.emit_json({"url": url, "token_file": str(token_file), "data_dir": str(directory)})
        else:
            # The token is the point of this output: print it unmasked, once, on stdout.
            import sys

            sys.stdout.write(f"GitLab sandbox: {url}\nRoot token: {token}\n")
            sys.stdout.flush()
            state.note(f"Token file: {token_file}  (Ctrl-C stops the server)")

    serve_forever(
        SandboxOptions(
            data_dir=directory,
            host=host,
            port=port,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            external_url=external_url,
        ),
        ready,
    )
