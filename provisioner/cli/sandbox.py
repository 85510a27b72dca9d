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
    lost_answer_rate: Annotated[
        float,
        typer.Option(
            "--lost-answer-rate",
            help="Share of API requests that are carried out but whose answer is lost "
            "(502 or a dropped connection) (0-1).",
        ),
    ] = 0.0,
    external_url: Annotated[
        str | None,
        typer.Option("--external-url", help="URL clients use, if not the listening address."),
    ] = None,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Also print the root token itself on stdout.")
    ] = False,
) -> None:
    """Serve the sandbox in the foreground until Ctrl-C.

    Prints the base URL and the path of the root personal access token's file
    (``<data-dir>/root_token``, mode 0600); the token itself only with ``--show-token``.
    State survives restarts. One sandbox per data dir: a second one is refused.

    Example: ``runnerctl sandbox up --port 8929 --data-dir ./gitlab-data``
    """
    state = get_app(ctx)
    for name, rate in (("--fault-rate", fault_rate), ("--lost-answer-rate", lost_answer_rate)):
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"{name} {rate} is out of range", hint="use 0 to 1")
    if external_url is not None:
        _check_external_url(external_url)
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
            doc = {"url": url, "token_file": str(token_file), "data_dir": str(directory)}
            state.emit_json({**doc, "token": token} if show_token else doc)
        else:
            # stdout ends up in terminals' scrollback and CI logs: the token only on request.
            import sys

            lines = [f"GitLab sandbox: {url}", f"Root token file: {token_file}"]
            if show_token:
                lines.append(f"Root token: {token}")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            state.note("Ctrl-C stops the server")

    serve_forever(
        SandboxOptions(
            data_dir=directory,
            host=host,
            port=port,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            lost_answer_rate=lost_answer_rate,
            external_url=external_url,
        ),
        ready,
    )


def _check_external_url(url: str) -> None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise UsageError(
            f"--external-url {url!r} is not a URL: {exc}", hint="e.g. http://gitlab.local:8929"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"--external-url {url!r} is not an http(s) URL",
            hint="give scheme and host, e.g. http://gitlab.local:8929",
        )


@app.command("runner")
def runner(
    ctx: typer.Context,
    *,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="config.toml to run (default: gitlab-runner's location)."),
    ] = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Exit when no job is running and no runner got a new one."),
    ] = False,
    max_jobs: Annotated[
        int | None, typer.Option("--max-jobs", min=1, help="Exit after this many jobs.")
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Build directories (when builds_dir is not set)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Run shell-executor jobs as this user.")
    ] = None,
) -> None:
    """Run jobs from the sandbox with the shell and docker executors (a gitlab-runner stand-in).

    Reads the config.toml that ``runnerctl register`` wrote, verifies every runner's token, polls
    for jobs and runs them: real git clone with the job token, scripts, artifacts, masked
    trace streaming. Ctrl-C (or SIGTERM) stops taking jobs and lets running ones finish; a second
    one kills them. A rehearsal tool: against a real GitLab, the official gitlab-runner runs jobs.
    """
    import signal

    from provisioner.sandbox_runner import RunnerEvent, start_background
    from provisioner.settings import default_config_path

    state = get_app(ctx)
    path = config or default_config_path()

    def show(event: RunnerEvent) -> None:
        state.note(event.render())

    handle = start_background(
        path, work_dir=work_dir, once=once, max_jobs=max_jobs, user=user, on_event=show
    )
    signals = {"count": 0}

    def on_signal(signum: int, _frame: object) -> None:
        signals["count"] += 1
        name = signal.Signals(signum).name
        if signals["count"] == 1:
            state.note(
                f"{name} received: not taking new jobs; running jobs may finish "
                "(send it again to abort them)"
            )
        else:
            state.note(f"{name} received again: aborting running jobs")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not handle.wait(0.5) and not signals["count"]:
            pass
        if signals["count"]:
            import threading

            stopper = threading.Thread(target=handle.stop, daemon=True)
            stopper.start()
            while stopper.is_alive():
                if signals["count"] > 1:
                    handle.stop(force=True)
                stopper.join(0.3)
        summary = handle.stop()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if state.json:
        state.emit_json(
            {
                "jobs": [
                    {
                        "id": r.job_id,
                        "name": r.name,
                        "project": r.project_path,
                        "runner": r.runner,
                        "status": r.state.value,
                        "failure_reason": r.failure_reason,
                        "exit_code": r.exit_code,
                        "duration_s": round(r.duration, 3),
                    }
                    for r in summary.results
                ],
                "idle_runners": list(summary.idle_runners),
            }
        )
        return
    for r in summary.results:
        reason = f" ({r.failure_reason})" if r.failure_reason else ""
        state.echo(
            f"job {r.job_id} {r.project_path}:{r.name} {r.state.value}{reason} "
            f"{r.duration:.1f}s on {r.runner}"
        )
