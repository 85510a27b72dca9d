"""``runnerctl register | unregister``: create a runner in GitLab and write its config entry."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provisioner.cli.context import AppContext, get_app
from provisioner.cli.options import (
    ConfigPath,
    GitLabOptions,
    RemoteHost,
    SshKey,
    config_store,
    with_gitlab_options,
)
from provisioner.cli.render import to_jsonable
from provisioner.errors import UsageError
from provisioner.gitlab.models import AccessLevel
from provisioner.registration.executors import Executor, PullPolicy, Shell

if TYPE_CHECKING:
    from provisioner.k8s.values import WrittenBundle
    from provisioner.registration import ExecutorConfig, Scope
    from provisioner.registration.service import (
        RegisterRequest,
        RegisterResult,
        UnregisterResult,
    )

SERVER = "Server-side settings (stored in GitLab)"
DOCKER = "docker executor"
K8S = "kubernetes executor"
SHELL = "shell executor"


@with_gitlab_options
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
            "--name",
            "-n",
            "--description",
            help="Runner name (its description in GitLab) (default: hostname).",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            "--tag-list",
            help="Job tag (repeatable; a,b gives two, as gitlab-runner's --tag-list).",
            rich_help_panel=SERVER,
        ),
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
    non_interactive: Annotated[  # noqa: ARG001 (accepted for gitlab-runner's scripts)
        bool,
        typer.Option(
            "--non-interactive",
            help="Accepted for gitlab-runner's scripts; runnerctl never prompts.",
        ),
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
    k8s_allow_service: Annotated[
        list[str] | None,
        typer.Option(
            "--k8s-allow-service",
            help="Service image jobs may start (repeatable); grants the services RBAC rule.",
            rich_help_panel=K8S,
        ),
    ] = None,
    helm_values: Annotated[
        Path | None,
        typer.Option(
            "--helm-values",
            help="Also write Helm chart values here, and the token Secret beside them "
            "(<name>-token-secret.yaml, mode 0600).",
            rich_help_panel=K8S,
        ),
    ] = None,
    shell: Annotated[
        Shell | None,
        typer.Option("--shell", help="(default: bash)", rich_help_panel=SHELL),
    ] = None,
    builds_dir: Annotated[
        str | None, typer.Option("--builds-dir", help="Absolute path.", rich_help_panel=SHELL)
    ] = None,
    *,
    connection: GitLabOptions,
    host: RemoteHost = None,
    ssh_key: SshKey = None,
) -> None:
    """Create a runner in GitLab (glrt- token) and write its entry into config.toml.

    Safe to run again: an identical run changes nothing; changed tags or flags update the
    runner in place; a runner whose token GitLab refuses is replaced.

    Examples:

      runnerctl register -e docker -s group:ops/ci -n docker-1 -t docker,linux
      runnerctl register -e shell -s project:ops/app -t shell --dry-run
      runnerctl register --non-interactive --url $GITLAB_URL -e shell -s instance --tag-list a,b
    """
    from provisioner.registration import parse_scope
    from provisioner.registration.service import register as do_register

    app = get_app(ctx)
    parsed_scope = parse_scope(scope)
    executor_config = _executor_config(
        executor,
        pull_policy=pull_policy,
        docker_image=docker_image,
        docker_volume=docker_volume,
        pip_cache_volume=pip_cache_volume,
        allowed_image=allowed_image,
        k8s_namespace=k8s_namespace,
        k8s_service_account=k8s_service_account,
        k8s_cpu_request=k8s_cpu_request,
        k8s_cpu_limit=k8s_cpu_limit,
        k8s_memory_request=k8s_memory_request,
        k8s_memory_limit=k8s_memory_limit,
        k8s_image=k8s_image,
        k8s_rbac_file=k8s_rbac_file,
        k8s_allow_service=k8s_allow_service,
        helm_values=helm_values,
        shell=shell,
        builds_dir=builds_dir,
    )
    legacy_token = _legacy_token(app, legacy_env)
    store = config_store(app, config, host=host, ssh_key=ssh_key)
    gitlab = app.gitlab(
        connection,
        require_token=legacy_token is None,
    )
    runner_name = name or socket.gethostname()
    request = _request(
        name=runner_name,
        scope=parsed_scope,
        gitlab_url=gitlab.settings.url,
        executor=executor_config,
        config_dir=store.path.parent,
        rbac_file=k8s_rbac_file,
        tags=split_tags(tag),
        run_untagged=run_untagged,
        locked=locked,
        paused=paused,
        maximum_timeout=maximum_timeout,
        access_level=access_level,
        limit=limit,
        legacy_token=legacy_token,
    )
    result = do_register(
        request, gitlab=gitlab, store=store, dry_run=dry_run, on_secret=app.redactor.add
    )
    helm = None
    if helm_values is not None and not dry_run:
        from provisioner.cli.k8s import write_after_register

        helm = write_after_register(store, runner=runner_name, values_path=helm_values)
    _render_register(app, result, show_token=show_token, helm=helm, helm_target=helm_values)


def split_tags(values: list[str] | None) -> tuple[str, ...]:
    """Repeated ``--tag`` values, each possibly ``a,b`` as gitlab-runner's ``--tag-list``."""
    return tuple(t.strip() for v in values or () for t in v.split(",") if t.strip())


def _executor_config(
    executor: Executor,
    *,
    pull_policy: PullPolicy | None,
    docker_image: str | None,
    docker_volume: list[str] | None,
    pip_cache_volume: str | None,
    allowed_image: list[str] | None,
    k8s_namespace: str | None,
    k8s_service_account: str | None,
    k8s_cpu_request: str | None,
    k8s_cpu_limit: str | None,
    k8s_memory_request: str | None,
    k8s_memory_limit: str | None,
    k8s_image: str | None,
    k8s_rbac_file: Path | None,
    k8s_allow_service: list[str] | None,
    helm_values: Path | None,
    shell: Shell | None,
    builds_dir: str | None,
) -> ExecutorConfig:
    """The executor section the options describe; options of another executor are refused."""
    from provisioner.registration import (
        DockerOptions,
        ExecutorConfig,
        KubernetesOptions,
        ShellOptions,
    )

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
            ("--k8s-allow-service", k8s_allow_service),
            ("--helm-values", helm_values),
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
    kube = KubernetesOptions()
    if helm_values is not None:
        from provisioner.cli.k8s import check_helm_target

        check_helm_target(helm_values)
    dock = DockerOptions()
    return ExecutorConfig(
        executor,
        shell=ShellOptions(shell or Shell.BASH, builds_dir),
        docker=DockerOptions(
            image=docker_image or dock.image,
            volumes=tuple(docker_volume or ()),
            pip_cache_volume=dock.pip_cache_volume
            if pip_cache_volume is None
            else pip_cache_volume,
            pull_policy=pull_policy,
            allowed_images=tuple(allowed_image or ()),
        ),
        kubernetes=KubernetesOptions(
            namespace=k8s_namespace or kube.namespace,
            service_account=k8s_service_account or kube.service_account,
            image=k8s_image or kube.image,
            cpu_request=k8s_cpu_request or kube.cpu_request,
            cpu_limit=k8s_cpu_limit or kube.cpu_limit,
            memory_request=k8s_memory_request or kube.memory_request,
            memory_limit=k8s_memory_limit or kube.memory_limit,
            pull_policy=pull_policy,
            allowed_services=tuple(k8s_allow_service or ()),
        ),
    )


def _legacy_token(app: AppContext, variable: str | None) -> str | None:
    """The legacy registration token from environment variable ``variable`` (redacted)."""
    if not variable:
        return None
    token = os.environ.get(variable)
    if not token:
        raise UsageError(
            f"Environment variable {variable} is empty or unset.",
            hint=f"export {variable}=<registration token> (never on the command line).",
        )
    app.redactor.add(token)
    return token


def _request(
    *,
    name: str,
    scope: Scope,
    gitlab_url: str,
    executor: ExecutorConfig,
    config_dir: Path,
    rbac_file: Path | None,
    tags: tuple[str, ...],
    run_untagged: bool,
    locked: bool,
    paused: bool,
    maximum_timeout: int | None,
    access_level: AccessLevel,
    limit: int | None,
    legacy_token: str | None,
) -> RegisterRequest:
    """The registration request; a kubernetes runner's RBAC file sits beside config.toml."""
    from provisioner.registration.service import RegisterRequest

    rbac = rbac_file or config_dir / f"{_file_safe(name)}-rbac.yaml"
    return RegisterRequest(
        name=name,
        scope=scope,
        gitlab_url=gitlab_url,
        executor=executor,
        tags=tags,
        run_untagged=run_untagged,
        locked=locked,
        paused=paused,
        maximum_timeout=maximum_timeout,
        access_level=access_level,
        limit=limit,
        legacy_registration_token=legacy_token,
        rbac_path=rbac if executor.executor is Executor.KUBERNETES else None,
    )


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "runner"


_REGISTER_FIELDS = (
    "action",
    "dry_run",
    "name",
    "runner_id",
    "config_path",
    "config_changed",
    "server_changes",
    "config_changes",
    "tags",
    "calls",
    "diff",
    "rbac_path",
    "stale_runner_id",
    "requests",
    "warnings",
)


def _render_register(
    app: AppContext,
    result: RegisterResult,
    *,
    show_token: bool,
    helm: WrittenBundle | None = None,
    helm_target: Path | None = None,
) -> None:
    app.warn(result.warnings)
    if app.json:
        doc = to_jsonable(
            result,
            only=_REGISTER_FIELDS,
            rename={"config_path": "config", "rbac_path": "rbac_file"},
        )
        if helm is not None:
            from provisioner.cli.k8s import written_json

            doc["helm"] = written_json(helm)
        app.emit_json_with_token(doc, result.token if show_token else None)
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
        if helm_target is not None:
            app.echo(f"Would write Helm values to {helm_target} (and the token Secret beside it)")
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
    if show_token:
        app.echo_token(result.token)
    if helm is not None:
        from provisioner.cli.k8s import render_written

        render_written(app, helm)


@with_gitlab_options
def unregister(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Runner name in config.toml.")] = None,
    runner_id: Annotated[
        int | None, typer.Option("--id", help="Runner id instead of the name.")
    ] = None,
    all_runners: Annotated[
        bool,
        typer.Option(
            "--all-runners", help="Every runner in config.toml (as gitlab-runner's option)."
        ),
    ] = False,
    keep_server: Annotated[
        bool,
        typer.Option("--keep-server", help="Only remove the config entry; keep it in GitLab."),
    ] = False,
    config: ConfigPath = None,
    *,
    connection: GitLabOptions,
) -> None:
    """Delete a runner in GitLab and remove its config.toml entry atomically.

    Examples:

      runnerctl unregister docker-1
      runnerctl unregister --id 42 --keep-server
      runnerctl unregister --all-runners --config ./config.toml
    """
    from provisioner.registration.service import unregister as do_unregister

    app = get_app(ctx)
    if [name is not None, runner_id is not None, all_runners].count(True) != 1:
        raise UsageError(
            "Name the runner to remove: NAME or --id ID, or --all-runners (one of them).",
            hint="`runnerctl config show` lists the configured runners.",
        )
    if all_runners:
        _unregister_all(app, connection, keep_server=keep_server, config=config)
        return
    result = do_unregister(
        name=name,
        runner_id=runner_id,
        keep_server=keep_server,
        gitlab=None if keep_server else app.gitlab(connection),
        store=app.config_store(config),
        on_secret=app.redactor.add,
    )
    app.warn(result.warnings)
    if app.json:
        app.emit_json(
            to_jsonable(
                result,
                only=_UNREGISTER_FIELDS,
                rename={"config_path": "config"},
            )
        )
        return
    app.echo(_removed_line(result))


def _removed_line(result: UnregisterResult) -> str:
    where = "deleted in GitLab and " if result.deleted_in_gitlab else ""
    return (
        f"Runner {result.name!r} (id {result.runner_id}) {where}removed from {result.config_path}"
    )


_UNREGISTER_FIELDS = ("name", "runner_id", "deleted_in_gitlab", "config_path")


def _unregister_all(
    app: AppContext, options: GitLabOptions, *, keep_server: bool, config: Path | None
) -> None:
    from provisioner.registration.unregister_all import unregister_all

    gitlab = None if keep_server else app.gitlab(options)
    result = unregister_all(
        keep_server=keep_server,
        gitlab=gitlab,
        gitlab_url=gitlab.settings.url if gitlab is not None else None,
        store=app.config_store(config),
        on_secret=app.redactor.add,
    )
    for warning in (*(w for r in result.removed for w in r.warnings), *result.skipped):
        app.note(f"Warning: {warning}", style="yellow")
    if app.json:
        app.emit_json(
            {
                "removed": [
                    to_jsonable(r, only=_UNREGISTER_FIELDS, rename={"config_path": "config"})
                    for r in result.removed
                ],
                "skipped": list(result.skipped),
            }
        )
        return
    for removed in result.removed:
        app.echo(_removed_line(removed))
    if not result.removed:
        app.echo("No runner removed.")
