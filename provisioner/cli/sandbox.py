"""``runnerctl sandbox``: the embedded GitLab-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import command_group, get_app
from provisioner.cli.options import ConfigPath, config_path, learn_config_secrets
from provisioner.cli.render import to_jsonable
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.sandbox_runner import RunnerEvent

app = command_group(
    "Embedded GitLab-compatible server for rehearsal.\n\n"
    "Examples:\n\n"
    "  runnerctl sandbox up --port 8929\n"
    "  runnerctl sandbox runner --config ./config.toml --once\n"
)

_JOB_FIELDS = (
    "job_id",
    "name",
    "project_path",
    "runner",
    "state",
    "failure_reason",
    "exit_code",
    "duration",
)
_JOB_KEYS = {
    "job_id": "id",
    "project_path": "project",
    "state": "status",
    "duration": "duration_s",
}


# gitlab-runner marks its own log lines by level (an info line has no mark).
_LEVEL_MARKS = {"info": "", "warning": "WARNING: ", "error": "ERROR: "}


def runner_line(event: RunnerEvent) -> str:
    """gitlab-runner's logfmt-like line for a runner event: ``ERROR: message  runner=abc``."""
    tail = f"  runner={event.runner}" if event.runner else ""
    return f"{_LEVEL_MARKS[event.level]}{event.message}{tail}"


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
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="Serve HTTPS with this certificate (PEM).", dir_okay=False),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="The private key of --tls-cert (PEM).", dir_okay=False),
    ] = None,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Also print the root token itself on stdout.")
    ] = False,
    schedule_tick: Annotated[
        float,
        typer.Option(
            "--schedule-tick",
            help="Real seconds that count as one minute for pipeline schedules "
            "(60 = real time; 0.5 fires a '* * * * *' schedule every half second).",
        ),
    ] = 60.0,
) -> None:
    """Serve the sandbox in the foreground until Ctrl-C.

    Prints the base URL and the path of the root personal access token's file
    (``<data-dir>/root_token``, mode 0600); the token itself only with ``--show-token``.
    State survives restarts. One sandbox per data dir: a second one is refused.

    Examples:

      runnerctl sandbox up --port 8929 --data-dir /tmp/gitlab-sandbox
      runnerctl sandbox up --fault-rate 0.3 --latency-ms 200 --show-token
      runnerctl sandbox up --schedule-tick 0.5
    """
    state = get_app(ctx)
    for name, rate in (("--fault-rate", fault_rate), ("--lost-answer-rate", lost_answer_rate)):
        if not 0.0 <= rate <= 1.0:
            raise UsageError(f"{name} {rate} is out of range", hint="use 0 to 1")
    if external_url is not None:
        _check_external_url(external_url)
    if latency_ms < 0:
        raise UsageError("--latency-ms must not be negative", hint="use 0 for no added delay")
    if not schedule_tick > 0:
        raise UsageError(
            f"--schedule-tick {schedule_tick} must be positive", hint="use 60 for real time"
        )
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range", hint="use 1-65535, or 0 for any")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together", hint="pass both, or neither")
    for path in (tls_cert, tls_key):
        if path is not None and not path.is_file():
            raise UsageError(f"no such file: {path}", hint="pass a PEM certificate and its key")
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
            tls_cert=tls_cert,
            tls_key=tls_key,
            schedule_tick=schedule_tick,
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
    config: ConfigPath = None,
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

    Examples:

      runnerctl sandbox runner --config ./config.toml
      runnerctl sandbox runner --once --max-jobs 5
    """
    import contextlib
    import signal

    from provisioner.errors import SandboxError
    from provisioner.sandbox_runner import start_background

    state = get_app(ctx)
    path = config_path(config)
    with contextlib.suppress(OSError, UnicodeDecodeError):  # the runner reports a bad file
        learn_config_secrets(state, path.read_text(encoding="utf-8"))

    def show(event: RunnerEvent) -> None:
        state.note(runner_line(event))

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
    if not summary.results and len(summary.idle_runners) == len(handle.service.setup.runners):
        raise SandboxError(
            f"No runner in {path} can take jobs: {', '.join(summary.idle_runners)}.",
            hint="The lines above say why each was refused. Re-register a runner whose token "
            "GitLab refuses (`runnerctl register`, or `runnerctl token rotate NAME`); the "
            "stand-in runner runs the shell and docker executors only.",
        )
    if state.json:
        state.emit_json(
            {
                "jobs": [
                    to_jsonable(
                        r,
                        only=_JOB_FIELDS,
                        rename=_JOB_KEYS,
                        convert={"duration": lambda d: round(d, 3)},
                    )
                    for r in summary.results
                ],
                "idle_runners": to_jsonable(summary.idle_runners),
            }
        )
        return
    for r in summary.results:
        reason = f" ({r.failure_reason})" if r.failure_reason else ""
        state.echo(
            f"job {r.job_id} {r.project_path}:{r.name} {r.state.value}{reason} "
            f"{r.duration:.1f}s on {r.runner}"
        )
