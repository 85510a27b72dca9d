"""``runnerctl demo``: the offline rehearsal that ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.render import JobTable
from provisioner.cli.smoke import SmokeReporter
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.demo import DemoPieces, DemoResult, DemoStep

DEFAULT_PORT = 8929


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the sandbox state and the demo config.toml live."),
    ] = None,
    port: Annotated[
        int,
        typer.Option(help="Sandbox port on 127.0.0.1 (make demo: DEMO_PORT=PORT)."),
    ] = DEFAULT_PORT,
    python: Annotated[str, typer.Option(help="Python version of the job image.")] = "3.11",
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the sandbox and the runner up until Ctrl-C."),
    ] = False,
) -> None:
    """Rehearse the whole journey offline: Docker, job image, GitLab sandbox, register a runner,
    check its config, then run the smoke pipeline on it and check what it published.

    A second run reuses the image, the sandbox state and the runner.

    Examples:

      runnerctl demo
      runnerctl demo --port 9000 --data-dir /tmp/runnerctl-demo --keep-running
    """
    from provisioner.demo import run_demo
    from provisioner.settings import cache_dir

    app = get_app(ctx)
    if not 0 < port < 65536:
        raise UsageError(
            f"--port {port} is not a TCP port.",
            hint=f"Pick a free port from 1 to 65535 (the default is {DEFAULT_PORT}).",
        )
    target = data_dir or cache_dir() / "demo"
    table = JobTable(app)
    try:
        result = run_demo(
            target,
            pieces=_real_pieces(app, port=port, python=python, table=table, data_dir=target),
            on_step=lambda step: _show_step(app, step),
            keep_running=keep_running,
        )
    finally:
        table.close()
    _render(app, result)
    if keep_running:
        _wait_for_interrupt(app)


def _real_pieces(
    app: AppContext, *, port: int, python: str, table: JobTable, data_dir: Path
) -> DemoPieces:
    from provisioner.demo import DEMO_RUNNER_TAG, DEMO_SMOKE_PROJECT, DemoPieces, ImageOutcome
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings
    from provisioner.images.build import default_tag, ensure_job_image
    from provisioner.sandbox import start_background
    from provisioner.sandbox_runner import start_background as start_runner
    from provisioner.smoke import SmokeRequest, SmokeResult, run_smoke

    def ensure_image() -> ImageOutcome:
        docker = app.docker()
        had = docker.inspect_image(default_tag(python)) is not None
        if not had:
            app.note(f"building the job image for Python {python} (first run only)...")
        ref = ensure_job_image(python, docker=docker)
        return ImageOutcome(tag=ref.tag, built=not had)

    def connect(url: str, token: str) -> GitLabAPI:
        app.redactor.add(token)
        return app.factories.gitlab(
            ConnectionSettings(url=url, token=token, auth_source="the sandbox root token")
        )

    def smoke(url: str, token: str) -> SmokeResult:
        request = SmokeRequest(
            tag=DEMO_RUNNER_TAG, project=DEMO_SMOKE_PROJECT, image=default_tag(python)
        )
        return run_smoke(
            request,
            gitlab=connect(url, token),
            gitlab_url=url,
            report=SmokeReporter(app, table, prefix="         smoke: "),
            on_secret=app.redactor.add,
        )

    return DemoPieces(
        docker_version=lambda: app.docker().server_version(),
        ensure_image=ensure_image,
        start_sandbox=lambda path: start_background(path, port=port),
        connect=connect,
        on_secret=app.redactor.add,
        start_runner=lambda config: start_runner(config, work_dir=data_dir / "runner"),
        smoke=smoke,
    )


def _show_step(app: AppContext, step: DemoStep) -> None:
    if app.json:
        return
    app.note(f"[{step.status.value:>6}] {step.name:<15} {step.detail}  ({step.seconds:.1f} s)")


def _render(app: AppContext, result: DemoResult) -> None:
    from provisioner.smoke.service import how_to_look, pipeline_api_url

    if app.json:
        app.emit_json(result)
        return
    app.echo(f"GitLab sandbox: {result.gitlab_url}  (data: {result.data_dir / 'gitlab'})")
    app.echo(f"Demo config:    {result.config_path}")
    app.echo(f"Job image:      {result.image}")
    app.echo(f"Look at it:     runnerctl config show --config {result.config_path}")
    smoke = result.smoke
    if smoke is None:
        return
    app.echo("")
    # The sandbox has no web UI: its pipeline pages would be a 404, the API answers.
    app.echo(f"Smoke pipeline #{smoke.pipeline_id}: {pipeline_api_url(smoke)}")
    for stage in smoke.stages:
        took = f"{stage.seconds:6.1f} s" if stage.seconds is not None else "      -"
        app.echo(f"  {stage.name:<19} {stage.status:<8} {took}")
    app.echo(f"  time to green       {smoke.time_to_green or 0:6.1f} s")
    for check in smoke.checks:
        app.echo(f"  check: {check.name:<22} {'ok' if check.passed else 'FAILED'}  {check.detail}")
    app.echo(f"Package:        {smoke.package_name} {smoke.version}")
    app.echo(f"  PyPI index:   {smoke.pypi_index_url}")
    app.echo(f"  signatures:   {smoke.generic_url} (<file>.sig, <file>.bundle, cosign.pub)")
    token_file = result.data_dir / "gitlab" / "root_token"
    app.echo(f"Look at them (export the root token from {token_file} as GITLAB_TOKEN first):")
    for line in how_to_look(smoke):
        app.echo(f"  {line}")
    if not result.kept_running:
        app.echo("The sandbox and the runner are stopped; --keep-running leaves them up.")


def _wait_for_interrupt(app: AppContext) -> None:
    import threading

    app.note("sandbox and runner left running; press Ctrl-C to stop them")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        app.note("stopped")
