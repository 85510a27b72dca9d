"""``runnerctl k8s values | lint``: Helm chart values for kubernetes runners, and their lint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, command_group, get_app
from provisioner.cli.options import ConfigPath, FailOn, config_path, learn_config_secrets

if TYPE_CHECKING:
    from provisioner.k8s.lint import LintReport
    from provisioner.k8s.values import WrittenBundle
    from provisioner.registration.service import ConfigStorePort

app = command_group(
    "Kubernetes runners deployed with GitLab's Helm chart: values, token Secret, lint.\n\n"
    "Examples:\n\n"
    "  runnerctl k8s values --runner k8s-1 --values-file values.yaml\n"
    "  runnerctl k8s lint values.yaml\n"
)

FAIL_EXIT = 3


@app.command("values")
def values_command(  # noqa: PLR0917 (Typer passes options as parameters)
    ctx: typer.Context,
    runner: Annotated[str, typer.Option("--runner", "-r", help="Runner name in config.toml.")],
    config: ConfigPath = None,
    values_file: Annotated[
        Path | None,
        typer.Option(
            "--values-file",
            help="Where to write values.yaml (default: <config dir>/<runner>-values.yaml).",
            show_default=False,
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(
            "--secret-file",
            help="Where to write the token Secret, mode 0600 (default: beside the values, "
            "<values name>-token-secret.yaml).",
            show_default=False,
        ),
    ] = None,
    service_account: Annotated[
        str,
        typer.Option("--service-account", help="ServiceAccount the chart creates for the runner."),
    ] = "gitlab-runner",
) -> None:
    """Write Helm chart values and the token Secret for a kubernetes runner in config.toml.

    The values hold runners.config (the runner's [[runners]] entry), least-privilege
    rbac.rules for the features it uses, a restricted security context, and runners.secret
    naming the Secret; the token is only in the Secret file (base64, mode 0600).

    Examples:

      runnerctl k8s values --runner k8s-1 --values-file values.yaml --secret-file secret.yaml
    """
    from provisioner.k8s.values import write_chart_files

    app_ = get_app(ctx)
    written = write_chart_files(
        config_path(config),
        runner=runner,
        values_path=values_file,
        secret_path=secret_file,
        service_account=service_account,
        on_read=lambda text: learn_config_secrets(app_, text),
    )
    render_written(app_, written)


@app.command("lint")
def lint_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A values file or Kubernetes manifests (YAML).")],
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 3 when a finding has this severity or worse (never: always exit 0).",
        ),
    ] = FailOn.HIGH,
) -> None:
    """Check chart values or manifests for the mistakes that break kubernetes runners.

    Deprecated and unknown chart keys, typos in runners.config ([runners.kuberentes]),
    tags/locked with glrt- tokens, a Secret token with a newline, '*' RBAC rules, missing
    permissions, job overrides of namespace or service account, privilege escalation, no
    resource limits; manifests are validated against Kubernetes' schemas. Exits 3 when a
    finding is at or above --fail-on (default: high).

    Examples:

      runnerctl k8s lint values.yaml --fail-on medium
    """
    from provisioner.k8s.lint import lint_text, read_lint_file

    out = get_app(ctx)
    report = lint_text(read_lint_file(file), source=str(file))
    failing = fail_on.failing(report.findings)
    if out.json:
        out.emit_json(_report_json(report, fail_on, failed=bool(failing)))
    else:
        out.echo(_render_report(report, fail_on, failed=bool(failing)))
    if failing:
        raise typer.Exit(code=FAIL_EXIT)


def render_written(app: AppContext, written: WrittenBundle) -> None:
    """Print where the chart files went and the commands to install the chart."""
    commands = install_commands(written)
    if app.json:
        app.emit_json(written_json(written))
        return
    state = {True: "written", False: "unchanged"}
    app.echo(
        f"Helm values for runner {written.runner!r} (chart {written.chart} "
        f"{written.chart_version}): {written.values_path} ({state[written.values_changed]})"
    )
    app.echo(f"Token Secret (mode 0600): {written.secret_path} ({state[written.secret_changed]})")
    app.echo(f"RBAC: {len(written.rules)} rules for {', '.join(written.features)}")
    app.echo("Install on your cluster:")
    for command in commands:
        app.echo(f"  {command}")


def written_json(written: WrittenBundle) -> dict[str, Any]:
    """The JSON form of what ``k8s values`` (or ``register --helm-values``) wrote."""
    return {
        "runner": written.runner,
        "namespace": written.namespace,
        "chart": written.chart,
        "chart_version": written.chart_version,
        "values_file": str(written.values_path),
        "values_changed": written.values_changed,
        "secret_file": str(written.secret_path),
        "secret_changed": written.secret_changed,
        "features": list(written.features),
        "rules": [rule.as_dict() for rule in written.rules],
        "commands": install_commands(written),
    }


def write_after_register(
    store: ConfigStorePort, *, runner: str, values_path: Path
) -> WrittenBundle:
    """``register --helm-values``: the chart files for the runner just registered."""
    from provisioner.errors import ProvisionerError
    from provisioner.k8s.values import write_for_document

    try:
        return write_for_document(
            store.load(),
            runner=runner,
            directory=store.path.parent,
            values_path=values_path,
        )
    except ProvisionerError as exc:
        exc.hint = (exc.hint or "") + (
            f" The runner is registered; write the chart files with `runnerctl k8s values "
            f"--runner {runner} --values-file FILE`."
        )
        raise


def check_helm_target(values_path: Path) -> None:
    """Refuse a ``--helm-values`` target that cannot be written, before registering."""
    from provisioner.k8s.files import check_target
    from provisioner.k8s.values import secret_path_for

    check_target(values_path, option="--helm-values")
    check_target(secret_path_for(values_path), option="--helm-values")


def install_commands(written: WrittenBundle) -> list[str]:
    """What the user runs on a machine with kubectl and helm pointed at the cluster."""
    ns = written.namespace
    return [
        f"kubectl create namespace {ns}",
        f"kubectl apply -f {written.secret_path}",
        "helm repo add gitlab https://charts.gitlab.io",
        f"helm install --namespace {ns} {_release(written.runner)} gitlab/gitlab-runner "
        f"--version {written.chart_version} -f {written.values_path}",
    ]


def _release(runner: str) -> str:
    name = "".join(c if c.isalnum() else "-" for c in runner.lower()).strip("-")
    return (name or "runner")[:53]


def _report_json(report: LintReport, fail_on: FailOn, *, failed: bool) -> dict[str, Any]:
    return {
        "path": report.source,
        "documents": list(report.documents),
        "kubernetes_version": report.kubernetes_version,
        "chart_version": report.chart_version,
        "fail_on": fail_on.value,
        "failed": failed,
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "where": f.runner,
                "message": f.message,
                "fix": f.fix,
            }
            for f in report.findings
        ],
    }


def _render_report(report: LintReport, fail_on: FailOn, *, failed: bool) -> str:
    lines = [
        f"{report.source}: {', '.join(report.documents)} (Kubernetes {report.kubernetes_version} "
        f"schemas, chart {report.chart_version} keys)"
    ]
    for f in report.findings:
        where = f" [{f.runner}]" if f.runner else ""
        lines.append(f"{f.severity.value.upper():<6} {f.rule}{where} {f.message}")
        lines.append(f"       fix: {f.fix}")
    count = len(report.findings)
    verdict = "failed" if failed else "passed"
    lines.append(f"{count} finding{'s' if count != 1 else ''}: {verdict} (--fail-on {fail_on})")
    return "\n".join(lines)
