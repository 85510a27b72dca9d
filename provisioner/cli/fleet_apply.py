"""``runnerctl fleet apply | ci``: converge a fleet, and the pipeline that does it on a schedule.

The commands are attached to the ``fleet`` group of :mod:`provisioner.cli.fleet` by
:func:`attach`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.fleet import EnvName, FleetFile
from provisioner.cli.options import (
    GitLabOptions,
    SSHChoices,
    with_gitlab_options,
    with_ssh_options,
)
from provisioner.cli.render import table
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.fleet.apply import ActionFinished, ApplyResult
    from provisioner.fleet.model import FleetPlan

NOT_CONVERGED = 12

Adopt = Annotated[
    list[str] | None,
    typer.Option(
        "--adopt",
        metavar="NAME",
        help="Mark the existing unmanaged runner described NAME as this fleet's (repeatable).",
    ),
]


def attach(group: typer.Typer) -> None:
    """Add ``apply`` and ``ci`` to the ``fleet`` command group."""
    group.command("apply")(apply_command)
    group.command("ci")(ci_command)


@with_ssh_options
@with_gitlab_options
def apply_command(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    fleet_file: FleetFile,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan-file",
            help="Apply this saved plan (`fleet plan --out`); refused (exit 13) if the state "
            "changed since.",
        ),
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Apply without asking (needed without a TTY).")
    ] = False,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, max=64, help="Hosts worked on at once.")
    ] = 4,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write a JUnit report: one case per action.")
    ] = None,
    adopt: Adopt = None,
    env: EnvName = None,
    *,
    connection: GitLabOptions,
    ssh: SSHChoices,
) -> None:
    """Converge the fleet: plan (or take a saved plan), then apply it.

    Hosts are provisioned in one Ansible run, runners created, updated, their tokens rotated
    and handed to every host, stale entries removed and owned runners not in the file deleted.
    A host that fails does not stop the others. Exits 12 when something did not converge (a
    re-run finishes the job) and 13 when another apply holds the lock or the saved plan is
    stale.

    Examples:

      runnerctl fleet apply FLEET.toml --auto-approve --key-file ~/.ssh/fleet
      runnerctl fleet apply FLEET.toml --plan-file plan.json --auto-approve --junit fleet.xml
    """
    from dataclasses import replace

    from provisioner.fleet.apply import ApplySettings
    from provisioner.fleet.converge import converge
    from provisioner.fleet.junit import write_junit
    from provisioner.fleet.pipeline import live_fleet

    app = get_app(ctx)
    if not auto_approve and not sys.stdin.isatty():
        raise UsageError(
            "fleet apply needs --auto-approve when it cannot ask (stdin is not a terminal).",
            hint="Review `runnerctl fleet plan FLEET.toml` first, then re-run with "
            "--auto-approve (or apply a saved plan: --plan-file PLAN.json --auto-approve).",
        )
    live = live_fleet(
        fleet_file,
        env=env,
        gitlab=lambda url: app.gitlab(replace(connection, url=connection.url or url)),
        ssh=ssh.resolve(app),
        connect=app.ssh,
        on_secret=app.redactor.add,
    )
    approve = None if auto_approve else _confirm(app)
    done = converge(
        live.fleet,
        observe=live.observe,
        make_plan=live.make_plan,
        gitlab=live.gitlab,
        hosts=live.hosts,
        plan_file=plan_file,
        adopt=tuple(adopt or ()),
        settings=ApplySettings(parallel=parallel),
        report=_progress(app),
        approve=approve,
    )
    if junit is not None:
        write_junit(done.result, junit)
    _render(app, done.result)
    if not done.result.converged:
        raise typer.Exit(code=NOT_CONVERGED)


def _confirm(app: AppContext) -> Callable[[FleetPlan], bool]:
    def ask(plan: FleetPlan) -> bool:
        for action in plan.actions:
            app.note(f"  {action.key}: {action.reason}")
        return typer.confirm(f"Apply these {len(plan.actions)} actions?", err=True)

    return ask


def _progress(app: AppContext) -> Callable[[ActionFinished], None]:
    def report(event: ActionFinished) -> None:
        result = event.result
        app.note(f"{result.status.value:>7}  {result.action.key}  {result.detail}".rstrip())

    return report


def _render(app: AppContext, result: ApplyResult) -> None:
    from provisioner.fleet.apply import ActionStatus

    if app.json:
        app.emit_json(result.to_json())
        return
    if result.results:
        rows = (
            (r.status.value.upper(), r.action.key, app.redactor(r.detail or r.action.reason))
            for r in result.results
        )
        app.out.print(table(("STATUS", "ACTION", "DETAIL"), rows, wrap=("DETAIL",)))
    for host, error in sorted(result.unreachable.items()):
        app.echo(f"unreachable  {host}: {error}")
    counts = ", ".join(f"{result.count(s)} {s.value}" for s in ActionStatus)
    verdict = "converged" if result.converged else "NOT converged: re-run to finish"
    app.echo(f"Fleet {result.fleet}: {counts}; {verdict}")


def ci_command(
    fleet_file: Annotated[
        str, typer.Option("--fleet-file", help="FLEET.toml's path in the repository.")
    ] = "FLEET.toml",
    image: Annotated[
        str | None, typer.Option("--image", help="Job image with runnerctl installed.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Runner tag for the jobs (repeatable).")
    ] = None,
) -> None:
    """Print a .gitlab-ci.yml (save it as such): plan on merge requests, apply on a schedule.

    The apply job runs in `resource_group: fleet`; the SSH key comes from a File variable
    FLEET_SSH_KEY (and FLEET_KNOWN_HOSTS), the GitLab token from a masked GITLAB_TOKEN.

    Examples:

      runnerctl fleet ci --image registry.example.com/ops/runnerctl:1 --tag fleet
    """
    from provisioner.fleet.ci import CiOptions, ci_config

    sys.stdout.write(ci_config(CiOptions(fleet_file, image, tuple(tag or ()))))
