"""``runnerctl host check | provision``: runner hosts over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.hosts.preflight import HostReport, PreflightResult
    from provisioner.hosts.provision import HostRecap, ProvisionEvent, ProvisionResult
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.ssh import SSHOptions, SSHTarget

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Runner hosts over SSH: preflight checks and provisioning with Ansible.",
)

HOST_FAILED = 5
SSH = "SSH"

Hosts = Annotated[
    list[str] | None,
    typer.Argument(help="Hosts as [USER@]HOST[:PORT].", show_default=False),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        "-i",
        help="Private key (default: ssh-agent, then ~/.ssh/id_*).",
        dir_okay=False,
        rich_help_panel=SSH,
    ),
]
KnownHosts = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        help="known_hosts file [default: ~/.ssh/known_hosts].",
        dir_okay=False,
        rich_help_panel=SSH,
        show_default=False,
    ),
]
AcceptNew = Annotated[
    bool,
    typer.Option(
        "--accept-new",
        help="Trust and save the key of a host seen for the first time (changed keys are "
        "still refused).",
        rich_help_panel=SSH,
    ),
]
BecomePasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--become-password-file",
        help="File holding the sudo password (else passwordless sudo is required).",
        dir_okay=False,
        rich_help_panel=SSH,
    ),
]


def ssh_options(
    app: AppContext,
    *,
    key_file: Path | None,
    known_hosts: Path | None,
    accept_new: bool,
    become_password_file: Path | None,
) -> SSHOptions:
    """Build :class:`SSHOptions`; the become password joins the redactor."""
    from provisioner.ssh import DEFAULT_KNOWN_HOSTS, SSHOptions

    password: str | None = None
    if become_password_file is not None:
        try:
            password = become_password_file.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read {become_password_file}: {exc.strerror}",
                hint="Pass a readable file holding only the sudo password.",
            ) from None
        app.redactor.add(password)
    if key_file is not None and not key_file.expanduser().is_file():
        raise UsageError(f"key file not found: {key_file}", hint="Pass an existing private key.")
    return SSHOptions(
        key_file=key_file,
        known_hosts=known_hosts or DEFAULT_KNOWN_HOSTS,
        accept_new=accept_new,
        become_password=password,
    )


def parse_targets(hosts: list[str] | None) -> list[SSHTarget]:
    """``[USER@]HOST[:PORT]`` arguments as targets."""
    from provisioner.ssh import SSHTarget

    return [SSHTarget.parse(h) for h in hosts or []]


@app.command("check")
def check(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    hosts: Hosts = None,
    gitlab_url: Annotated[
        str | None,
        typer.Option("--gitlab-url", help="Also check that GitLab is reachable from the host."),
    ] = None,
    min_free_gib: Annotated[
        float, typer.Option("--min-free-gib", help="Free space needed on / and Docker's root.")
    ] = 5.0,
    key_file: KeyFile = None,
    known_hosts: KnownHosts = None,
    accept_new: AcceptNew = False,
    become_password_file: BecomePasswordFile = None,
) -> None:
    """Check that each host can run a runner: SSH, sudo, OS, arch, disk, clock, GitLab.

    Prints a table with a fix for every failed check (or JSON). Exits 5 if any check fails.
    """
    from provisioner.hosts.preflight import default_checks, preflight
    from provisioner.ssh import SSHSession

    app = get_app(ctx)
    targets = parse_targets(hosts)
    options = ssh_options(
        app,
        key_file=key_file,
        known_hosts=known_hosts,
        accept_new=accept_new,
        become_password_file=become_password_file,
    )
    result = preflight(
        targets,
        connect=lambda t: SSHSession.connect(t, options),
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
                    {
                        "check": f.check,
                        "status": f.verdict.value,
                        "detail": f.evidence,
                        "fix": f.fix,
                    }
                    for f in r.findings
                ],
            }
            for r in result.hosts
        ],
    }


def _render_report(app: AppContext, report: HostReport) -> None:
    from rich.table import Table

    verdict = "ready" if report.ok else "NOT READY"
    app.echo(f"{report.target}: {verdict}")
    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in ("CHECK", "STATUS", "DETAIL", "FIX"):
        table.add_column(column, overflow="fold")
    for f in report.findings:
        table.add_row(
            f.check, f.verdict.value.upper(), app.redactor(f.evidence), app.redactor(f.fix or "")
        )
    app.out.print(table)


@app.command("provision")
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
    key_file: KeyFile = None,
    known_hosts: KnownHosts = None,
    accept_new: AcceptNew = False,
    become_password_file: BecomePasswordFile = None,
) -> None:
    """Turn fresh Debian/Ubuntu VMs into runner hosts with the packaged Ansible playbooks.

    Roles: common, docker, python, cosign, gitlab_runner, runner_config. Prints per-host
    progress, then a recap; the ansible-runner artifacts directory is kept for debugging.
    Exits 5 if any host failed or was unreachable (the other hosts still finish).
    """
    from provisioner.hosts.provision import ProvisionRequest, load_vars
    from provisioner.hosts.provision import provision as do_provision

    app = get_app(ctx)
    if bool(hosts) == (inventory is not None):
        raise UsageError(
            "Name the hosts: HOST arguments or --inventory FILE (one of them).",
            hint="e.g. runnerctl host provision ops@10.0.0.5 ops@10.0.0.6",
        )
    options = ssh_options(
        app,
        key_file=key_file,
        known_hosts=known_hosts,
        accept_new=accept_new,
        become_password_file=become_password_file,
    )
    config_text: str | None = None
    if config_file is not None:
        from provisioner.runner_config import read_config_text

        config_text = read_config_text(config_file)
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


def _recap_json(r: HostRecap) -> dict[str, Any]:
    return {
        "host": r.host,
        "status": r.status.value,
        "ok": r.ok,
        "changed": r.changed,
        "failed": r.failed,
        "unreachable": r.unreachable,
        "skipped": r.skipped,
        "error": r.error,
    }


def _provision_json(result: ProvisionResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "check": result.check,
        "artifacts": str(result.artifacts),
        "hosts": [_recap_json(r) for r in result.hosts],
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


# --------------------------------------------------------------------------- --host for others

RemoteHostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Use config.toml on this host over SSH ([USER@]HOST[:PORT]; sudo for root's "
        "file; keys from ssh-agent, ~/.ssh or --ssh-key; ~/.ssh/known_hosts).",
        show_default=False,
        rich_help_panel=SSH,
    ),
]
SshKeyOption = Annotated[
    Path | None,
    typer.Option("--ssh-key", help="Private key for --host.", dir_okay=False, rich_help_panel=SSH),
]


def open_remote_store(
    app: AppContext, host: str, *, config: Path | None, ssh_key: Path | None
) -> RemoteConfigStore:
    """The config.toml store on ``host`` (``--config`` is then the path on the host)."""
    from provisioner.hosts.remote_store import DEFAULT_REMOTE_PATH, RemoteConfigStore
    from provisioner.ssh import SSHSession, SSHTarget

    options = ssh_options(
        app, key_file=ssh_key, known_hosts=None, accept_new=False, become_password_file=None
    )
    target = SSHTarget.parse(host)
    session = SSHSession.connect(target, options)
    path = config.as_posix() if config is not None else DEFAULT_REMOTE_PATH
    return RemoteConfigStore(session, path, label=str(target))
