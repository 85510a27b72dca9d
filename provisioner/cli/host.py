"""``runnerctl host check | provision``: runner hosts over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, command_group, get_app
from provisioner.cli.options import (
    Hosts,
    SSHChoices,
    learn_config_secrets,
    parse_targets,
    with_ssh_options,
)
from provisioner.cli.render import table, to_jsonable
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.hosts.preflight import HostReport, PreflightResult
    from provisioner.hosts.provision import ProvisionEvent, ProvisionResult

app = command_group(
    "Runner hosts over SSH: preflight checks and provisioning with Ansible.\n\n"
    "Examples:\n\n"
    "  runnerctl host check ops@10.0.0.5\n"
    "  runnerctl host provision ops@10.0.0.5 --check --diff\n"
)

HOST_FAILED = 5


@app.command("check")
@with_ssh_options
def check(
    ctx: typer.Context,
    hosts: Hosts = None,
    gitlab_url: Annotated[
        str | None,
        typer.Option("--gitlab-url", help="Also check that GitLab is reachable from the host."),
    ] = None,
    min_free_gib: Annotated[
        float, typer.Option("--min-free-gib", help="Free space needed on / and Docker's root.")
    ] = 5.0,
    *,
    ssh: SSHChoices,
) -> None:
    """Check that each host can run a runner: SSH, sudo, OS, arch, disk, clock, GitLab.

    Prints a table with a fix for every failed check (or JSON). Exits 5 if any check fails.

    Examples:

      runnerctl host check ops@10.0.0.5 ops@10.0.0.6:2222 --accept-new
    """
    from provisioner.hosts.preflight import default_checks, preflight

    app = get_app(ctx)
    targets = parse_targets(hosts)
    options = ssh.resolve(app)
    result = preflight(
        targets,
        connect=lambda t: app.ssh(t, options),
        checks_for=lambda t: default_checks(
            t,
            gitlab_url=gitlab_url,
            with_password=options.become_password is not None,
            min_free_gib=min_free_gib,
        ),
    )
    if app.json:
        app.emit_json(_preflight_json(result))
    else:
        for report in result.hosts:
            _render_report(app, report)
    if not result.ok:
        raise typer.Exit(code=HOST_FAILED)


def _preflight_json(result: PreflightResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "hosts": [
            {
                "host": str(r.target),
                "ok": r.ok,
                "checks": [
                    to_jsonable(
                        f,
                        only=("check", "verdict", "evidence", "fix"),
                        rename={"verdict": "status", "evidence": "detail"},
                    )
                    for f in r.findings
                ],
            }
            for r in result.hosts
        ],
    }


def _render_report(app: AppContext, report: HostReport) -> None:
    verdict = "ready" if report.ok else "NOT READY"
    app.echo(f"{report.target}: {verdict}")
    rows = (
        (f.check, f.verdict.value.upper(), app.redactor(f.evidence), app.redactor(f.fix or ""))
        for f in report.findings
    )
    app.out.print(table(("CHECK", "STATUS", "DETAIL", "FIX"), rows, fold=True))


@app.command("provision")
@with_ssh_options
def provision(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    hosts: Hosts = None,
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", help="An Ansible inventory file instead of HOST arguments."),
    ] = None,
    check_mode: Annotated[
        bool, typer.Option("--check", help="Dry run: report what would change, change nothing.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show file differences.")] = False,
    limit: Annotated[
        str | None, typer.Option("--limit", help="Only these hosts (an Ansible host pattern).")
    ] = None,
    extra_vars: Annotated[
        Path | None,
        typer.Option(
            "--vars",
            help="YAML file of role variables (see the roles' READMEs).",
            dir_okay=False,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-file",
            help="config.toml to deploy; a token the runner rotated on the host is kept.",
            dir_okay=False,
        ),
    ] = None,
    forks: Annotated[int, typer.Option("--forks", help="Hosts provisioned in parallel.")] = 10,
    *,
    ssh: SSHChoices,
) -> None:
    """Turn fresh Debian/Ubuntu VMs into runner hosts with the packaged Ansible playbooks.

    Roles: common, docker, python, cosign, gitlab_runner, runner_config. Prints per-host
    progress, then a recap; the ansible-runner artifacts directory is kept for debugging.
    Exits 5 if any host failed or was unreachable (the other hosts still finish).

    Examples:

      runnerctl host provision ops@10.0.0.5 --vars vars.yml
      runnerctl host provision --inventory hosts.yml --limit runner-1 --check --diff
    """
    from provisioner.hosts.provision import ProvisionRequest, load_vars
    from provisioner.hosts.provision import provision as do_provision

    app = get_app(ctx)
    if bool(hosts) == (inventory is not None):
        raise UsageError(
            "Name the hosts: HOST arguments or --inventory FILE (one of them).",
            hint="e.g. runnerctl host provision ops@10.0.0.5 ops@10.0.0.6",
        )
    options = ssh.resolve(app)
    config_text: str | None = None
    if config_file is not None:
        from provisioner.runner_config import read_config_text

        config_text = read_config_text(config_file)
        learn_config_secrets(app, config_text)
    request = ProvisionRequest(
        targets=tuple(parse_targets(hosts)),
        inventory=inventory,
        ssh=options,
        extra_vars=load_vars(extra_vars) if extra_vars else {},
        check=check_mode,
        diff=diff,
        limit=limit,
        forks=forks,
        config_text=config_text,
    )
    result = do_provision(
        request, on_event=None if app.json else _progress(app), on_secret=app.redactor.add
    )
    if app.json:
        app.emit_json(_provision_json(result))
    else:
        _render_recap(app, result)
    if not result.ok:
        raise typer.Exit(code=HOST_FAILED)


def _progress(app: AppContext) -> Any:
    def show(event: ProvisionEvent) -> None:
        c = event.counts
        app.note(
            f"[{event.host}] {event.kind.value:<9} {event.task} "
            f"(ok={c.ok} changed={c.changed} failed={c.failed})"
        )

    return show


def _provision_json(result: ProvisionResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        **to_jsonable(result, only=("check", "artifacts", "hosts")),
    }


def _render_recap(app: AppContext, result: ProvisionResult) -> None:
    mode = " (check mode: nothing changed)" if result.check else ""
    app.echo(f"PLAY RECAP{mode}")
    for r in result.hosts:
        line = (
            f"{r.host:<28} {r.status.value.upper():<12} ok={r.ok} changed={r.changed} "
            f"failed={r.failed} unreachable={r.unreachable} skipped={r.skipped}"
        )
        app.echo(line)
        if r.error:
            app.echo(f"    {r.error}")
    app.echo(f"artifacts: {result.artifacts}")
