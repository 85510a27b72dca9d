"""``runnerctl demo``: the offline rehearsal that ``make demo`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, get_app

if TYPE_CHECKING:
    from provisioner.demo import DemoPieces, DemoResult, DemoStep


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the sandbox state and the demo config.toml live."),
    ] = None,
    port: Annotated[int, typer.Option(help="Sandbox port on 127.0.0.1.")] = 8929,
    python: Annotated[str, typer.Option(help="Python version of the job image.")] = "3.11",
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the sandbox up until Ctrl-C.")
    ] = False,
) -> None:
    """Rehearse the whole journey offline: Docker, job image, GitLab sandbox, register, check.

    A second run reuses the image, the sandbox state and the runner.
    """
    from provisioner.demo import run_demo
    from provisioner.settings import cache_dir

    app = get_app(ctx)
    target = data_dir or cache_dir() / "demo"
    result = run_demo(
        target,
        pieces=_real_pieces(app, port=port, python=python),
        on_step=lambda step: _show_step(app, step),
        keep_running=keep_running,
    )
    _render(app, result)
    if keep_running:
        _wait_for_interrupt(app)


def _real_pieces(app: AppContext, *, port: int, python: str) -> DemoPieces:
    from provisioner.demo import DemoPieces, ImageOutcome
    from provisioner.docker_api import DockerAPI
    from provisioner.gitlab_api import ConnectionSettings, GitLabAPI
    from provisioner.images.build import default_tag, ensure_job_image
    from provisioner.sandbox import start_background

    docker = DockerAPI.from_env()

    def ensure_image() -> ImageOutcome:
        had = docker.inspect_image(default_tag(python)) is not None
        if not had:
            app.note(f"building the job image for Python {python} (first run only)...")
        ref = ensure_job_image(python, docker=docker)
        return ImageOutcome(tag=ref.tag, built=not had)

    def connect(url: str, token: str) -> GitLabAPI:
        return GitLabAPI.from_settings(
            ConnectionSettings(url=url, token=token, auth_source="the sandbox root token")
        )

    return DemoPieces(
        docker_version=docker.server_version,
        ensure_image=ensure_image,
        start_sandbox=lambda path: start_background(path, port=port),
        connect=connect,
        on_secret=app.redactor.add,
    )


def _show_step(app: AppContext, step: DemoStep) -> None:
    if app.json:
        return
    took = "" if step.status.value == "coming" else f"  ({step.seconds:.1f} s)"
    app.note(f"[{step.status.value:>6}] {step.name:<15} {step.detail}{took}")


def _render(app: AppContext, result: DemoResult) -> None:
    from dataclasses import asdict

    if app.json:
        app.emit_json(asdict(result))
        return
    app.echo(f"GitLab sandbox: {result.gitlab_url}  (data: {result.data_dir / 'gitlab'})")
    app.echo(f"Demo config:    {result.config_path}")
    app.echo(f"Job image:      {result.image}")
    app.echo(f"Look at it:     runnerctl config show --config {result.config_path}")
    coming = [s.name for s in result.steps if s.status.value == "coming"]
    if coming:
        app.echo(f"Still coming:   {', '.join(coming)} (not part of this release yet)")


def _wait_for_interrupt(app: AppContext) -> None:
    import threading

    app.note("sandbox left running; press Ctrl-C to stop it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        app.note("stopped")
