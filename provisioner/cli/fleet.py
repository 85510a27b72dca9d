"""``runnerctl fleet``: a desired state for a whole fleet of runners (FLEET.toml).

``validate`` checks the file; ``plan`` reads GitLab and the hosts and prints what ``apply`` would
do. The text views live in :mod:`provisioner.cli.fleet_view`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import command_group, get_app
from provisioner.cli.options import GitLabOptions, SSHChoices, with_gitlab_options, with_ssh_options
from provisioner.errors import ProvisionerError

if TYPE_CHECKING:
    from provisioner.fleet.load import FleetReport
    from provisioner.fleet.model import HostSpec
    from provisioner.fleet.observe import HostSession

# provisioner.fleet (pydantic, tomlkit) is imported inside the commands so that `runnerctl
# --help` stays fast.

app = command_group(
    "Plan and apply a desired state for a fleet of runners (FLEET.toml).\n\n"
    "Examples:\n\n"
    "  runnerctl fleet validate FLEET.toml\n"
    "  runnerctl fleet plan FLEET.toml --detailed-exitcode\n"
)

#: FLEET.toml errors are usage errors: a bad input file named by the user.
INVALID_EXIT = 2
#: ``fleet plan``: a host could not be read (as ``host check``).
UNREACHABLE_EXIT = 5
#: ``fleet plan --detailed-exitcode``, as ``terraform plan``: 0 no changes, 1 error, 2 changes.
DETAILED_CHANGES, DETAILED_ERROR = 2, 1

FleetFile = Annotated[
    Path,
    typer.Argument(help="The fleet's desired state (see docs/fleet.md).", dir_okay=False),
]
EnvName = Annotated[
    str | None,
    typer.Option(
        "--env",
        metavar="NAME",
        help="Merge the file's [env.NAME] tables over it (staging, prod...).",
        show_default=False,
    ),
]


@app.command("validate")
def validate(ctx: typer.Context, fleet_file: FleetFile, env: EnvName = None) -> None:
    """Check FLEET.toml: syntax, keys and types (its JSON Schema), hosts, runners and scopes.

    Each problem is listed as FILE:LINE:COL: message. Exits 0 when the file is valid and 2 when
    it is not; nothing is written and nothing is contacted.

    Examples:

      runnerctl fleet validate FLEET.toml
      runnerctl fleet validate FLEET.toml --env staging -o json
    """
    from provisioner.fleet.load import check_file

    out = get_app(ctx)
    report = check_file(fleet_file, env=env)
    if out.json:
        out.emit_json(_report_json(report))
    else:
        out.echo(_render_report(report))
    if not report.valid:
        raise typer.Exit(code=INVALID_EXIT)


def _report_json(report: FleetReport) -> dict[str, Any]:
    fleet = report.fleet
    return {
        "path": report.source,
        "valid": report.valid,
        "errors": [
            {
                "path": i.path,
                "message": i.message,
                "line": i.location.line if i.location else None,
                "column": i.location.column if i.location else None,
            }
            for i in report.issues
        ],
        "fleet": fleet.name if fleet else None,
        "hosts": len(fleet.hosts) if fleet else None,
        "runners": len(fleet.runners) if fleet else None,
    }


def _render_report(report: FleetReport) -> str:
    if report.valid and report.fleet is not None:
        fleet = report.fleet
        return (
            f"valid: {report.source}: fleet {fleet.name}, {len(fleet.hosts)} host"
            f"{'s' if len(fleet.hosts) != 1 else ''}, {len(fleet.runners)} runner"
            f"{'s' if len(fleet.runners) != 1 else ''}"
        )
    lines = [i.render(report.source) for i in report.issues]
    count = len(report.issues)
    lines.append(f"invalid: {report.source}: {count} error{'s' if count != 1 else ''}")
    return "\n".join(lines)


@app.command("plan")
@with_gitlab_options
@with_ssh_options
def plan(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    fleet_file: FleetFile,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 0 when there is nothing to do, 2 when there are changes, 1 on any error "
            "(an unreachable host included).",
        ),
    ] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also save the plan (JSON, mode 0600, no secret) for `fleet apply --plan-file`.",
            dir_okay=False,
        ),
    ] = None,
    adopt: Annotated[
        list[str] | None,
        typer.Option(
            "--adopt",
            metavar="NAME",
            help="Take over the existing runner whose description is NAME (it has no fleet "
            "marker yet). \\[repeatable]",
        ),
    ] = None,
    env: EnvName = None,
    *,
    connection: GitLabOptions,
    ssh: SSHChoices,
) -> None:
    """Show what `fleet apply` would change: read GitLab and every host, write nothing.

    GitLab is read in one GraphQL request per 100 runners (an administrator's token).

    Each host is read over one SSH session. Runners without this fleet's marker are left alone.

    Exits 0, or 5 when a host could not be read (2: FLEET.toml is invalid). With
    --detailed-exitcode: 0 no changes, 2 changes, 1 any error.

    Examples:

      runnerctl fleet plan FLEET.toml
      runnerctl fleet plan FLEET.toml --out plan.json --detailed-exitcode -o json
      runnerctl fleet plan FLEET.toml --adopt build --known-hosts ./known_hosts
    """
    from dataclasses import replace

    from provisioner.fleet.load import load_fleet
    from provisioner.fleet.service import plan_fleet, save_plan
    from provisioner.ssh import SSHTarget

    app = get_app(ctx)
    try:
        fleet = load_fleet(fleet_file, env=env)
        options = ssh.resolve(app)
        gitlab = app.gitlab(replace(connection, url=connection.url or fleet.gitlab_url))

        def connect(spec: HostSpec) -> HostSession:
            return app.ssh(SSHTarget(spec.address, spec.user, spec.port), options)

        result = plan_fleet(fleet, gitlab=gitlab, connect=connect, adopt=adopt or ())
    except ProvisionerError as exc:
        if detailed_exitcode:  # every error is 1: 2 means "changes"
            exc.exit_code = DETAILED_ERROR
        raise
    if out_file is not None:
        save_plan(result, out_file)
    if app.json:
        app.emit_json(result.to_json())
    else:
        from provisioner.cli.fleet_view import render_plan

        app.echo(render_plan(result))
    if detailed_exitcode:
        code = DETAILED_ERROR if result.unreachable else DETAILED_CHANGES if result.changes else 0
        raise typer.Exit(code=code)
    if result.unreachable:
        raise typer.Exit(code=UNREACHABLE_EXIT)
