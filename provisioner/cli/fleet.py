"""``runnerctl fleet``: a desired state for a whole fleet of runners (FLEET.toml).

``validate`` checks the file; ``plan`` reads GitLab and the hosts and prints what ``apply`` would
do. The text views live in :mod:`provisioner.cli.fleet_view`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli import fleet_apply
from provisioner.cli.context import command_group, get_app

if TYPE_CHECKING:
    from provisioner.fleet.load import FleetReport

# provisioner.fleet (pydantic, tomlkit) is imported inside the commands so that `runnerctl
# --help` stays fast.

app = command_group(
    "Plan and apply a desired state for a fleet of runners (FLEET.toml).\n\n"
    "Examples:\n\n"
    "  runnerctl fleet validate FLEET.toml\n"
    "  runnerctl fleet validate FLEET.toml -o json\n"
)

#: FLEET.toml errors are usage errors: a bad input file named by the user.
INVALID_EXIT = 2

FleetFile = Annotated[
    Path,
    typer.Argument(help="The fleet's desired state (see docs/fleet.md).", dir_okay=False),
]


@app.command("validate")
def validate(ctx: typer.Context, fleet_file: FleetFile) -> None:
    """Check FLEET.toml: syntax, keys and types (its JSON Schema), hosts, runners and scopes.

    Each problem is listed as FILE:LINE:COL: message. Exits 0 when the file is valid and 2 when
    it is not; nothing is written and nothing is contacted.

    Examples:

      runnerctl fleet validate FLEET.toml
      runnerctl fleet validate FLEET.toml -o json
    """
    from provisioner.fleet.load import check_file

    out = get_app(ctx)
    report = check_file(fleet_file)
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


# `apply` and `ci` live in their own module.
fleet_apply.attach(app)
