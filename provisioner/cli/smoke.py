"""``runnerctl smoke``: prove a runner works by running the smoke pipeline on it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.options import (
    GitLabOptions,
    with_gitlab_options,
)
from provisioner.cli.render import JobTable

if TYPE_CHECKING:
    from provisioner.smoke import SmokeResult
    from provisioner.smoke.events import SmokeEvent


@with_gitlab_options
def smoke(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    project: Annotated[
        str | None,
        typer.Option(
            help="Project path (default: <your user>/runnerctl-smoke); created if missing."
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(help="Tag of the runner under test (default: $SMOKE_RUNNER_TAG)."),
    ] = None,
    signing: Annotated[
        str, typer.Option(help="key (offline cosign key pair) or keyless (gitlab.com only).")
    ] = "key",
    image: Annotated[str, typer.Option(help="Job image for docker executors.")] = (
        "runnerctl/python:3.11"
    ),
    timeout: Annotated[str, typer.Option(help="Give up after this long (90s, 15m, 1h).")] = "15m",
    junit: Annotated[
        Path | None, typer.Option(help="Write JUnit XML here.", dir_okay=False)
    ] = None,
    keep: Annotated[
        int, typer.Option(help="Keep the last N smoke versions in the registries.")
    ] = 5,
    variable: Annotated[
        list[str] | None,
        typer.Option(
            "--variable",
            help="Extra pipeline variable KEY=VALUE (repeatable), e.g. "
            "SMOKE_TAMPER=wheel-after-sign for a negative test.",
        ),
    ] = None,
    *,
    connection: GitLabOptions,
) -> None:
    """Push the smoke project, run its pipeline on the runner tagged TAG, check what it published.

    Stages: test, build, sign, verify, publish, publish_signatures, consumer_verify. Then
    runnerctl checks the PyPI and generic registries and verifies the signatures itself.
    Exit 7 when the pipeline fails, a check fails, or no runner picks up the jobs in time.

    Examples:

      runnerctl smoke --tag docker
      runnerctl smoke --tag shell --project ops/runnerctl-smoke --timeout 30m --junit smoke.xml
    """
    from provisioner.errors import SmokeError, UsageError
    from provisioner.smoke import SigningMode, SmokeRequest, SmokeStatus, run_smoke
    from provisioner.smoke.junit import write_junit
    from provisioner.smoke.service import parse_timeout, pipeline_api_url

    app = get_app(ctx)
    if signing not in ("key", "keyless"):
        raise UsageError(f"Unknown signing mode {signing!r}.", hint="Use --signing key or keyless.")
    request = SmokeRequest(
        tag=tag or os.environ.get("SMOKE_RUNNER_TAG", ""),
        project=project,
        signing=SigningMode(signing),
        image=image,
        timeout=parse_timeout(timeout),
        keep=keep,
        variables=_variables(variable or []),
    )
    gitlab = app.gitlab(connection)
    table = JobTable(app)
    try:
        result = run_smoke(
            request,
            gitlab=gitlab,
            gitlab_url=gitlab.settings.url,
            report=SmokeReporter(app, table),
            on_secret=app.redactor.add,
        )
    finally:
        table.close()
    if junit is not None:
        write_junit(result, junit)
    render(app, result)
    if result.status is SmokeStatus.INTERRUPTED:
        app.note(f"Interrupted: {result.message}")
        raise typer.Exit(code=130)
    if result.status is not SmokeStatus.PASSED:
        if result.trace_tail and not app.json:
            app.note(f"--- last lines of the {result.failing_job} job log ---")
            app.note(result.trace_tail)
        hint = (
            "Start the runner registered with this tag and check it is online with "
            "'runnerctl runners list'; its tags must include the one given to --tag."
            if result.status is SmokeStatus.TIMED_OUT
            # `runnerctl doctor` (issue 13) will classify the failed job: name it here once it
            # ships. Until then, the API URL works on GitLab and on the sandbox (no web UI).
            else f"List the jobs of pipeline #{result.pipeline_id}: "
            f'curl -H "Authorization: Bearer $GITLAB_TOKEN" {pipeline_api_url(result)} ; '
            "a job's whole log is at /api/v4/projects/ID/jobs/JOB_ID/trace."
        )
        raise SmokeError(result.message, hint=hint)


def _variables(items: list[str]) -> dict[str, str]:
    from provisioner.errors import UsageError

    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.replace("_", "").isalnum():
            raise UsageError(
                f"--variable {item!r} is not KEY=VALUE.", hint="For example --variable FOO=bar."
            )
        result[key.strip()] = value
    return result


class SmokeReporter:
    """Turns a smoke run's events into the job table and one line each on stderr."""

    def __init__(self, app: AppContext, table: JobTable, *, prefix: str = "") -> None:
        self._app = app
        self._table = table
        self._prefix = prefix

    def __call__(self, event: SmokeEvent) -> None:
        from provisioner.smoke.events import JobsChanged

        if isinstance(event, JobsChanged):
            self._table.update(event.jobs)
        elif not self._app.json:
            self._app.note(self._prefix + smoke_sentence(event))


def smoke_sentence(event: SmokeEvent) -> str:
    """The line shown for a smoke progress event (the job table draws JobsChanged)."""
    from provisioner.smoke import events as ev

    match event:
        case ev.ProjectReady(path=path, created=created):
            return f"project {path} {'created' if created else 'exists'}"
        case ev.KeyPairReady(generated=True):
            return "cosign key pair generated and stored as CI/CD variables (password masked)"
        case ev.KeyPairReady():
            return "cosign key pair found in the project's CI/CD variables"
        case ev.TemplateSynced(pushed=True, files=files, commit=commit):
            return f"smoke project pushed ({files} files, commit {commit[:8]})"
        case ev.TemplateSynced():
            return "smoke project is up to date"
        case ev.PipelineCreated(pipeline_id=pipeline_id, web_url=web_url):
            return f"pipeline #{pipeline_id} created: {web_url}"
        case ev.CheckFinished(name=name, passed=passed):
            return f"check {name}: {'ok' if passed else 'FAILED'}"
        case ev.OldVersionsDeleted(count=count, keep=keep):
            return f"deleted {count} old smoke versions (keeping {keep})"
        case ev.JobsChanged(jobs=jobs):
            return f"{len(jobs)} jobs"


def render(app: AppContext, result: SmokeResult) -> None:
    """Print the smoke result: JSON, or stages, checks, timings and where things are."""
    from provisioner.smoke.service import how_to_look, pipeline_api_url

    if app.json:
        app.emit_json(result)
        return
    app.echo(f"Smoke {result.status.value}: {result.message}")
    app.echo(f"Pipeline: {result.pipeline_url}")
    app.echo(f"  jobs (API): {pipeline_api_url(result)}")
    for stage in result.stages:
        took = f"{stage.seconds:6.1f} s" if stage.seconds is not None else "     - "
        app.echo(f"  {stage.name:<19} {stage.status:<9} {took}")
    for check in result.checks:
        app.echo(f"  check {check.name:<22} {'ok' if check.passed else 'FAILED'}  {check.detail}")
    if result.time_to_green is not None:
        app.echo(f"Time to green: {result.time_to_green:.1f} s (whole run {result.elapsed:.1f} s)")
        app.echo(f"Package:    {result.package_name} {result.version} in {result.pypi_index_url}")
        app.echo(f"Signatures: {result.generic_url}")
        if result.deleted_versions:
            app.echo(f"Pruned:     {', '.join(result.deleted_versions)}")
        app.echo("Look at them:")
        for line in how_to_look(result):
            app.echo(f"  {line}")
