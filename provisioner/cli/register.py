"""``runnerctl register | unregister | runners list | token rotate``.

The GitLab connection options defined here (``GitLabUrl``, ``TokenFile``...) are the shared
vocabulary for every command that talks to GitLab: a token is never an option value.
"""

from __future__ import annotations

import os
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.host import RemoteHostOption, SshKeyOption
from provisioner.errors import UsageError
from provisioner.gitlab.models import AccessLevel, RunnerStatus
from provisioner.registration.executors import Executor, PullPolicy, Shell

if TYPE_CHECKING:
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import Runner
    from provisioner.registration.service import ConfigStorePort, RegisterResult
    from provisioner.runner_config import ConfigStore

runners_app = typer.Typer(no_args_is_help=True, help="What GitLab knows about your runners.")
token_app = typer.Typer(no_args_is_help=True, help="Runner authentication tokens.")

GITLAB = "GitLab connection"
SERVER = "Server-side settings (stored in GitLab)"
DOCKER = "docker executor"
K8S = "kubernetes executor"
SHELL = "shell executor"

GitLabUrl = Annotated[
    str | None,
    typer.Option(
        "--gitlab-url",
        help="GitLab base URL (default: $GITLAB_URL, $CI_SERVER_URL).",
        rich_help_panel=GITLAB,
        show_default=False,
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the access token (else $GITLAB_TOKEN). Never pass it as a value.",
        rich_help_panel=GITLAB,
        dir_okay=False,
    ),
]
ConfigSection = Annotated[
    str | None,
    typer.Option(
        "--gitlab-config-section",
        help="Section of a python-gitlab config file (~/.python-gitlab.cfg) with url and token.",
        rich_help_panel=GITLAB,
    ),
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        help="PEM file with the CA chain of your GitLab.",
        rich_help_panel=GITLAB,
        dir_okay=False,
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Do not verify GitLab's TLS certificate (throwaway test instances only).",
        rich_help_panel=GITLAB,
    ),
]
ConfigPath = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="gitlab-runner's config.toml (default: $CONFIG_FILE, /etc/gitlab-runner/"
        "config.toml as root, ~/.gitlab-runner/config.toml otherwise).",
        show_default=False,
    ),
]


def connect(
    *,
    gitlab_url: str | None,
    token_file: Path | None,
    config_section: str | None,
    ca_bundle: Path | None,
    insecure: bool,
    app: AppContext,
    require_token: bool = True,
) -> GitLabAPI:
    """Resolve connection settings and build the adapter; the token joins the redactor."""
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.connection import resolve_connection

    settings = resolve_connection(
        url=gitlab_url,
        token_file=token_file,
        config_section=config_section,
        ca_bundle=ca_bundle,
        insecure=insecure,
        require_token=require_token,
    )
    app.redactor.add(settings.token)
    return GitLabAPI.from_settings(settings)


def open_store(config: Path | None) -> ConfigStore:
    """The config.toml store for ``--config`` (or the default path)."""
    from provisioner.runner_config import ConfigStore
    from provisioner.settings import default_config_path

    return ConfigStore(config or default_config_path())


def register(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    executor: Annotated[
        Executor, typer.Option("--executor", "-e", help="How jobs run.", case_sensitive=False)
    ],
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            "-s",
            help="Where the runner is attached: instance, group:PATH|ID or project:PATH|ID.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(
            "--name", "-n", help="Runner name (its description in GitLab) (default: hostname)."
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Job tag (repeatable).", rich_help_panel=SERVER),
    ] = None,
    run_untagged: Annotated[
        bool,
        typer.Option("--run-untagged", help="Also pick up untagged jobs.", rich_help_panel=SERVER),
    ] = False,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked", help="Lock a project runner to its project.", rich_help_panel=SERVER
        ),
    ] = False,
    paused: Annotated[
        bool, typer.Option("--paused", help="Create it paused.", rich_help_panel=SERVER)
    ] = False,
    maximum_timeout: Annotated[
        int | None,
        typer.Option(
            "--maximum-timeout", help="Job timeout cap in seconds (>= 600).", rich_help_panel=SERVER
        ),
    ] = None,
    access_level: Annotated[
        AccessLevel,
        typer.Option("--access-level", help="Which refs may use it.", rich_help_panel=SERVER),
    ] = AccessLevel.NOT_PROTECTED,
    config: ConfigPath = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            help="Max concurrent jobs of this runner (0: no limit).",
            min=0,
            max=2**63 - 1,  # gitlab-runner reads config.toml integers as int64
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the planned API calls and config diff; change nothing."
        ),
    ] = False,
    show_token: Annotated[
        bool, typer.Option("--show-token", help="Print the runner token (masked otherwise).")
    ] = False,
    legacy_env: Annotated[
        str | None,
        typer.Option(
            "--legacy-registration-token-env",
            metavar="VAR",
            help="Deprecated: register with the registration token in environment variable VAR "
            "(POST /runners) for GitLab older than 16.0.",
        ),
    ] = None,
    docker_image: Annotated[
        str | None,
        typer.Option(
            "--docker-image",
            help="Default job image (default: runnerctl/python:3.11).",
            rich_help_panel=DOCKER,
        ),
    ] = None,
    docker_volume: Annotated[
        list[str] | None,
        typer.Option(
            "--docker-volume",
            help="Extra volume SRC:DST[:ro] (repeatable).",
            rich_help_panel=DOCKER,
        ),
    ] = None,
    pip_cache_volume: Annotated[
        str | None,
        typer.Option(
            "--pip-cache-volume",
            help="Named volume at /cache with PIP_CACHE_DIR=/cache/pip; '' disables "
            "(default: runnerctl-pip-cache).",
            rich_help_panel=DOCKER,
        ),
    ] = None,
    pull_policy: Annotated[
        PullPolicy | None,
        typer.Option(
            "--pull-policy",
            help="(default: never for runnerctl/* images (built locally), always otherwise).",
            rich_help_panel=DOCKER,
        ),
    ] = None,
    allowed_image: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-image",
            help="Extra image pattern jobs may use (repeatable).",
            rich_help_panel=DOCKER,
        ),
    ] = None,
    k8s_namespace: Annotated[
        str | None,
        typer.Option("--k8s-namespace", help="(default: gitlab-runner)", rich_help_panel=K8S),
    ] = None,
    k8s_service_account: Annotated[
        str | None,
        typer.Option(
            "--k8s-service-account",
            help="ServiceAccount of the runner manager (default: gitlab-runner).",
            rich_help_panel=K8S,
        ),
    ] = None,
    k8s_cpu_request: Annotated[
        str | None, typer.Option("--k8s-cpu-request", help="(default: 500m)", rich_help_panel=K8S)
    ] = None,
    k8s_cpu_limit: Annotated[
        str | None, typer.Option("--k8s-cpu-limit", help="(default: 2)", rich_help_panel=K8S)
    ] = None,
    k8s_memory_request: Annotated[
        str | None,
        typer.Option("--k8s-memory-request", help="(default: 512Mi)", rich_help_panel=K8S),
    ] = None,
    k8s_memory_limit: Annotated[
        str | None, typer.Option("--k8s-memory-limit", help="(default: 2Gi)", rich_help_panel=K8S)
    ] = None,
    k8s_image: Annotated[
        str | None,
        typer.Option("--k8s-image", help="(default: runnerctl/python:3.11)", rich_help_panel=K8S),
    ] = None,
    k8s_rbac_file: Annotated[
        Path | None,
        typer.Option(
            "--k8s-rbac-file",
            help="Where to write the RBAC manifests (default: <config dir>/<name>-rbac.yaml).",
            rich_help_panel=K8S,
            dir_okay=False,
        ),
    ] = None,
    shell: Annotated[
        Shell | None,
        typer.Option("--shell", help="(default: bash)", rich_help_panel=SHELL),
    ] = None,
    builds_dir: Annotated[
        str | None, typer.Option("--builds-dir", help="Absolute path.", rich_help_panel=SHELL)
    ] = None,
    gitlab_url: GitLabUrl = None,
    token_file: TokenFile = None,
    gitlab_config_section: ConfigSection = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = False,
    host: RemoteHostOption = None,
    ssh_key: SshKeyOption = None,
) -> None:
    """Create a runner in GitLab (glrt- token) and write its entry into config.toml.

    Safe to run again: an identical run changes nothing; changed tags or flags update the
    runner in place; a runner whose token GitLab refuses is replaced.
    """
    from provisioner.registration import (
        DockerOptions,
        ExecutorConfig,
        KubernetesOptions,
        ShellOptions,
        parse_scope,
    )
    from provisioner.registration.service import RegisterRequest
    from provisioner.registration.service import register as do_register

    app = get_app(ctx)
    parsed_scope = parse_scope(scope)
    docker_given = [
        o
        for o, v in (
            ("--docker-image", docker_image),
            ("--docker-volume", docker_volume),
            ("--pip-cache-volume", pip_cache_volume),
            ("--allowed-image", allowed_image),
        )
        if v is not None
    ]
    k8s_given = [
        o
        for o, v in (
            ("--k8s-namespace", k8s_namespace),
            ("--k8s-service-account", k8s_service_account),
            ("--k8s-cpu-request", k8s_cpu_request),
            ("--k8s-cpu-limit", k8s_cpu_limit),
            ("--k8s-memory-request", k8s_memory_request),
            ("--k8s-memory-limit", k8s_memory_limit),
            ("--k8s-image", k8s_image),
            ("--k8s-rbac-file", k8s_rbac_file),
        )
        if v is not None
    ]
    shell_given = [o for o, v in (("--shell", shell), ("--builds-dir", builds_dir)) if v]
    foreign = {
        Executor.SHELL: docker_given + k8s_given + (["--pull-policy"] if pull_policy else []),
        Executor.DOCKER: k8s_given + shell_given,
        Executor.KUBERNETES: docker_given + shell_given,
    }[executor]
    if foreign:
        raise UsageError(
            f"{', '.join(foreign)} do not apply to the {executor.value} executor.",
            hint="Drop them, or choose the executor they belong to with --executor.",
        )
    legacy_token: str | None = None
    if legacy_env:
        legacy_token = os.environ.get(legacy_env)
        if not legacy_token:
            raise UsageError(
                f"Environment variable {legacy_env} is empty or unset.",
                hint=f"export {legacy_env}=<registration token> (never on the command line).",
            )
        app.redactor.add(legacy_token)
    runner_name = name or socket.gethostname()
    store: ConfigStorePort = open_store(config)
    if host is not None:  # config.toml on a runner host, over SSH (reloaded after a write)
        from provisioner.cli.host import open_remote_store

        store = open_remote_store(app, host, config=config, ssh_key=ssh_key)
    kube = KubernetesOptions()
    kube = KubernetesOptions(
        namespace=k8s_namespace or kube.namespace,
        service_account=k8s_service_account or kube.service_account,
        image=k8s_image or kube.image,
        cpu_request=k8s_cpu_request or kube.cpu_request,
        cpu_limit=k8s_cpu_limit or kube.cpu_limit,
        memory_request=k8s_memory_request or kube.memory_request,
        memory_limit=k8s_memory_limit or kube.memory_limit,
        pull_policy=pull_policy,
    )
    dock = DockerOptions()
    dock = DockerOptions(
        image=docker_image or dock.image,
        volumes=tuple(docker_volume or ()),
        pip_cache_volume=dock.pip_cache_volume if pip_cache_volume is None else pip_cache_volume,
        pull_policy=pull_policy,
        allowed_images=tuple(allowed_image or ()),
    )
    executor_config = ExecutorConfig(
        executor,
        shell=ShellOptions(shell or Shell.BASH, builds_dir),
        docker=dock,
        kubernetes=kube,
    )
    rbac = k8s_rbac_file or store.path.parent / f"{_file_safe(runner_name)}-rbac.yaml"
    gitlab = connect(
        gitlab_url=gitlab_url,
        token_file=token_file,
        config_section=gitlab_config_section,
        ca_bundle=ca_bundle,
        insecure=insecure,
        app=app,
        require_token=legacy_token is None,
    )
    request = RegisterRequest(
        name=runner_name,
        scope=parsed_scope,
        gitlab_url=gitlab.settings.url,
        executor=executor_config,
        tags=tuple(tag or ()),
        run_untagged=run_untagged,
        locked=locked,
        paused=paused,
        maximum_timeout=maximum_timeout,
        access_level=access_level,
        limit=limit,
        legacy_registration_token=legacy_token,
        rbac_path=rbac if executor is Executor.KUBERNETES else None,
    )
    result = do_register(
        request, gitlab=gitlab, store=store, dry_run=dry_run, on_secret=app.redactor.add
    )
    _render_register(app, result, show_token=show_token)


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "runner"


def _render_register(app: AppContext, result: RegisterResult, *, show_token: bool) -> None:
    for warning in result.warnings:
        app.note(f"Warning: {warning}", style="yellow")
    if app.json:
        doc: dict[str, Any] = {
            "action": result.action.value,
            "dry_run": result.dry_run,
            "name": result.name,
            "runner_id": result.runner_id,
            "config": str(result.config_path),
            "config_changed": result.config_changed,
            "server_changes": list(result.server_changes),
            "config_changes": list(result.config_changes),
            "tags": list(result.tags),
            "calls": [
                {"method": c.method, "path": c.path, "purpose": c.purpose, "done": c.done}
                for c in result.calls
            ],
            "diff": result.diff,
            "rbac_file": str(result.rbac_path) if result.rbac_path else None,
            "stale_runner_id": result.stale_runner_id,
            "requests": result.requests,
            "warnings": list(result.warnings),
        }
        if show_token and result.token:
            doc["token"] = result.token
            _raw_json(doc)
        else:
            app.emit_json(doc)
        return
    verb = {
        "created": "Created",
        "unchanged": "Unchanged:",
        "updated": "Updated",
        "replaced": "Replaced",
    }[result.action.value]
    if result.dry_run:
        app.echo(f"Dry run: would be {result.action.value}: runner {result.name!r}")
        app.echo("Planned API calls:")
        for call in result.calls:
            app.echo(f"  {'(done, read-only) ' if call.done else ''}{call}")
        if not result.calls:
            app.echo("  none")
        app.echo(result.diff.rstrip("\n") if result.diff else "No change to the config file.")
        if result.rbac_path:
            app.echo(f"Would write RBAC manifests to {result.rbac_path}")
        return
    ident = f"runner {result.name!r} (id {result.runner_id})"
    app.echo(f"{verb} {ident}; tags: {', '.join(result.tags) or '(none, runs untagged)'}")
    if result.server_changes:
        app.echo(f"  GitLab: changed {', '.join(result.server_changes)}")
    state = "written" if result.config_changed else "unchanged"
    app.echo(f"  config: {result.config_path} ({state})")
    if result.stale_runner_id:
        app.echo(f"  replaced stale runner {result.stale_runner_id}")
    if result.rbac_path:
        app.echo(f"  RBAC manifests: {result.rbac_path} (apply with kubectl apply -f)")
    if show_token and result.token:
        sys.stdout.write(f"  token: {result.token}\n")


def _raw_json(doc: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def unregister(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Runner name in config.toml.")] = None,
    runner_id: Annotated[
        int | None, typer.Option("--id", help="Runner id instead of the name.")
    ] = None,
    keep_server: Annotated[
        bool,
        typer.Option("--keep-server", help="Only remove the config entry; keep it in GitLab."),
    ] = False,
    config: ConfigPath = None,
    gitlab_url: GitLabUrl = None,
    token_file: TokenFile = None,
    gitlab_config_section: ConfigSection = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = False,
) -> None:
    """Delete a runner in GitLab and remove its config.toml entry atomically."""
    from provisioner.registration.service import unregister as do_unregister

    app = get_app(ctx)
    if (name is None) == (runner_id is None):
        raise UsageError(
            "Name the runner to remove: NAME or --id ID (one of them).",
            hint="`runnerctl config show` lists the configured runners.",
        )
    gitlab = None
    if not keep_server:
        gitlab = connect(
            gitlab_url=gitlab_url,
            token_file=token_file,
            config_section=gitlab_config_section,
            ca_bundle=ca_bundle,
            insecure=insecure,
            app=app,
        )
    result = do_unregister(
        name=name,
        runner_id=runner_id,
        keep_server=keep_server,
        gitlab=gitlab,
        store=open_store(config),
        on_secret=app.redactor.add,
    )
    for warning in result.warnings:
        app.note(f"Warning: {warning}", style="yellow")
    if app.json:
        app.emit_json(
            {
                "name": result.name,
                "runner_id": result.runner_id,
                "deleted_in_gitlab": result.deleted_in_gitlab,
                "config": str(result.config_path),
            }
        )
        return
    where = "deleted in GitLab and " if result.deleted_in_gitlab else ""
    app.echo(
        f"Runner {result.name!r} (id {result.runner_id}) {where}removed from {result.config_path}"
    )


@runners_app.command("list")
def list_command(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    scope: Annotated[
        str | None,
        typer.Option(
            "--scope",
            "-s",
            help="instance, group:PATH|ID or project:PATH|ID (default: the token's runners).",
        ),
    ] = None,
    status: Annotated[
        RunnerStatus | None, typer.Option("--status", help="online, offline, stale, ...")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Only with this tag.")
    ] = None,
    gitlab_url: GitLabUrl = None,
    token_file: TokenFile = None,
    gitlab_config_section: ConfigSection = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = False,
) -> None:
    """List runners GitLab knows, with their last contact in your timezone."""
    from provisioner.registration import parse_scope
    from provisioner.registration.service import list_runners

    app = get_app(ctx)
    if status in (RunnerStatus.ACTIVE, RunnerStatus.UNKNOWN):
        raise UsageError(
            f"--status {status.value} is not a filter.",
            hint="Use online, offline, stale, never_contacted or paused.",
        )
    parsed = parse_scope(scope) if scope else None
    gitlab = connect(
        gitlab_url=gitlab_url,
        token_file=token_file,
        config_section=gitlab_config_section,
        ca_bundle=ca_bundle,
        insecure=insecure,
        app=app,
    )
    found = list_runners(scope=parsed, status=status, tags=tuple(tag or ()), gitlab=gitlab)
    if app.json:
        app.emit_json([_runner_json(r) for r in found])
        return
    _runner_table(app, found)


def _local(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _runner_json(runner: Runner) -> dict[str, Any]:
    return {
        "id": runner.id,
        "description": runner.description,
        "runner_type": runner.runner_type.value,
        "status": runner.status.value,
        "paused": runner.paused,
        "tags": list(runner.tag_list),
        "contacted_at": runner.contacted_at.astimezone().isoformat()
        if runner.contacted_at
        else None,
    }


def _runner_table(app: AppContext, runners: tuple[Runner, ...]) -> None:
    from rich.table import Table

    if not runners:
        app.note("No runners match.")
        return
    table = Table(box=None, show_edge=False, pad_edge=False)
    for column in ("ID", "NAME", "TYPE", "STATUS", "TAGS", "LAST CONTACT"):
        table.add_column(column, no_wrap=column != "TAGS")
    for r in runners:
        table.add_row(
            str(r.id),
            app.redactor(r.description),
            r.runner_type.value.removesuffix("_type"),
            r.status.value,
            ", ".join(r.tag_list),
            _local(r.contacted_at),
        )
    app.out.print(table)


@token_app.command("rotate")
def rotate_command(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Runner name in config.toml.")],
    config: ConfigPath = None,
    show_token: Annotated[bool, typer.Option("--show-token", help="Print the new token.")] = False,
    gitlab_url: GitLabUrl = None,
    token_file: TokenFile = None,
    gitlab_config_section: ConfigSection = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = False,
) -> None:
    """Reset a runner's token in GitLab and write the new one into config.toml atomically."""
    from provisioner.registration.service import rotate_token

    app = get_app(ctx)
    gitlab = connect(
        gitlab_url=gitlab_url,
        token_file=token_file,
        config_section=gitlab_config_section,
        ca_bundle=ca_bundle,
        insecure=insecure,
        app=app,
    )
    result = rotate_token(name, gitlab=gitlab, store=open_store(config), on_secret=app.redactor.add)
    for warning in result.warnings:
        app.note(f"Warning: {warning}", style="yellow")
    expires = result.token_expires_at.isoformat() if result.token_expires_at else None
    if app.json:
        doc: dict[str, Any] = {
            "name": result.name,
            "runner_id": result.runner_id,
            "config": str(result.config_path),
            "token_expires_at": expires,
            "new_token_verified": result.new_token_verified,
            "old_token_refused": result.old_token_refused,
        }
        if show_token and result.token:
            doc["token"] = result.token
            _raw_json(doc)
        else:
            app.emit_json(doc)
        return
    app.echo(
        f"Rotated the token of runner {result.name!r} (id {result.runner_id}); "
        f"expires: {expires or 'never'}; new token verified, old token "
        f"{'refused' if result.old_token_refused else 'STILL ACCEPTED'}"
    )
    if show_token and result.token:
        sys.stdout.write(f"  token: {result.token}\n")
