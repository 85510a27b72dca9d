"""``runnerctl config``: show, validate, lint and diff gitlab-runner's config.toml."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, command_group, get_app
from provisioner.cli.options import (
    ConfigPath,
    FailOn,
    RemoteHost,
    SshKey,
    config_path,
    config_store,
    learn_config_secrets,
)
from provisioner.cli.render import text_table
from provisioner.cli.render import to_jsonable as to_json
from provisioner.secrets import MASK

if TYPE_CHECKING:
    from provisioner.runner_config import ConfigDiff, Finding, RunnerConfig, ValidationReport
    from provisioner.runner_config.validate import Issue

# provisioner.runner_config (tomlkit, the field table) is imported inside the commands so that
# `runnerctl --help` stays fast.

app = command_group(
    "Inspect and check gitlab-runner's config.toml.\n\n"
    "Examples:\n\n"
    "  runnerctl config validate --strict\n"
    "  runnerctl config lint --fail-on medium\n"
)

INVALID_EXIT = 3
# Lint findings are not a broken file: their own code, so scripts can tell the two apart.
FINDINGS_EXIT = 9
# `config diff`: as diff(1) does.
DIFFERENT_EXIT = 1


def _read(
    app: AppContext, config: Path | None, host: str | None, ssh_key: Path | None
) -> tuple[Path, str]:
    """(path, text) of config.toml, here or on ``--host`` over SSH."""
    from provisioner.runner_config import read_config_text

    if host is None:
        path = config_path(config)
        text = read_config_text(path)
    else:
        store = config_store(app, config, host=host, ssh_key=ssh_key)
        path, text = store.path, store.load().dumps()
    learn_config_secrets(app, text)
    return path, text


@app.command("show")
def show(
    ctx: typer.Context,
    config: ConfigPath = None,
    host: RemoteHost = None,
    ssh_key: SshKey = None,
) -> None:
    """Show the global settings and the runners of config.toml (tokens masked).

    A file that `config validate` rejects is not shown: its errors are listed and the exit
    code is 3.

    Examples:

      runnerctl config show
      runnerctl config show --host ops@runner-1 -o json
    """
    from provisioner.runner_config import ConfigDocument, build_model, to_jsonable, validate_text

    out = get_app(ctx)
    path, text = _read(out, config, host, ssh_key)
    document = ConfigDocument.parse(text, source=str(path))  # a syntax error: its position
    validate_text(text, source=str(path)).raise_if_invalid()
    model = build_model(document.plain())
    if out.json:
        out.emit_json({"path": str(path), **to_jsonable(model)})
        return
    out.echo(_render_show(path, model))


@app.command("validate")
def validate(
    ctx: typer.Context,
    config: ConfigPath = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Unknown keys are errors, as in `gitlab-runner lint`.")
    ] = False,
    host: RemoteHost = None,
    ssh_key: SshKey = None,
) -> None:
    """Check config.toml the way gitlab-runner reads it: syntax, types, durations, enums.

    Exits 0 when the file is valid and 3 when it is not; each problem is listed with its line
    and column. Unknown keys are warnings (gitlab-runner ignores them) unless --strict.

    Examples:

      runnerctl config validate --strict --config ./config.toml
    """
    from provisioner.runner_config import validate_text

    out = get_app(ctx)
    path, text = _read(out, config, host, ssh_key)
    report = validate_text(text, source=str(path), strict=strict)
    if out.json:
        out.emit_json(_report_json(report))
    else:
        out.echo(_render_report(report))
    if not report.valid:
        raise typer.Exit(code=INVALID_EXIT)


@app.command("lint")
def lint(
    ctx: typer.Context,
    config: ConfigPath = None,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 9 when a finding has this severity or worse (never: always exit 0).",
        ),
    ] = FailOn.HIGH,
    host: RemoteHost = None,
    ssh_key: SshKey = None,
) -> None:
    """Report security risks in config.toml, each with its severity and fix.

    Rules: privileged containers, a mounted Docker socket, risky pull policies on shared
    runners, no allowed_images, Docker over tcp:// without TLS, a config file readable by
    others, secrets in a runner's environment. Exits 9 when a finding is at or above
    --fail-on (default: high); a file that cannot be read or parsed exits 3.

    Examples:

      runnerctl config lint --fail-on medium
      runnerctl config lint --host ops@runner-1
    """
    from provisioner.runner_config import (
        ConfigDocument,
        lint_document,
        to_jsonable,
    )

    out = get_app(ctx)
    path, text = _read(out, config, host, ssh_key)
    document = ConfigDocument.parse(text, source=str(path))
    findings = lint_document(document, path=None if host else path)
    failing = fail_on.failing(findings)
    if out.json:
        out.emit_json(
            {
                "path": str(path),
                "fail_on": fail_on.value,
                "failed": bool(failing),
                "findings": [to_jsonable(f) for f in findings],
            }
        )
    else:
        out.echo(_render_findings(path, findings, fail_on, failing))
    if failing:
        raise typer.Exit(code=FINDINGS_EXIT)


@app.command("diff")
def diff(
    ctx: typer.Context,
    other: Annotated[Path, typer.Argument(help="The config.toml to compare with.")],
    config: ConfigPath = None,
) -> None:
    """Compare config.toml with OTHER: runners added, removed, and keys changed (tokens masked).

    Exits as diff(1) does: 0 when there is no semantic difference, 1 when there is one, and 3
    when a file cannot be read or parsed.

    Examples:

      runnerctl config diff ./config.toml.bak --config ./config.toml
    """
    from provisioner.runner_config import ConfigDocument, diff_documents, to_jsonable

    out = get_app(ctx)
    path, text = _read(out, config, None, None)
    _, other_text = _read(out, other, None, None)
    result = diff_documents(
        ConfigDocument.parse(text, source=str(path)),
        ConfigDocument.parse(other_text, source=str(other)),
    )
    if out.json:
        out.emit_json({"a": str(path), "b": str(other), **to_jsonable(result)})
    else:
        out.echo(_render_diff(path, other, result))
    if not result.empty:
        raise typer.Exit(code=DIFFERENT_EXIT)


# --------------------------------------------------------------------------- rendering


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def _render_show(path: Path, model: RunnerConfig) -> str:
    s = model.settings
    lines = [
        f"config: {path}",
        f"concurrent: {_cell(s.concurrent)}  check_interval: {_cell(s.check_interval)}  "
        f"shutdown_timeout: {_cell(s.shutdown_timeout)}  log_level: {_cell(s.log_level)}  "
        f"log_format: {_cell(s.log_format)}",
    ]
    if s.listen_address:
        lines.append(f"listen_address: {s.listen_address}")
    if s.session_server and s.session_server.listen_address:
        lines.append(f"session_server: {s.session_server.listen_address}")
    lines.append(f"runners: {len(model.runners)}")
    if model.runners:
        rows = [["NAME", "ID", "EXECUTOR", "URL", "IMAGE", "TOKEN"]]
        for r in model.runners:
            image = (r.docker.image if r.docker else None) or (
                r.kubernetes.image if r.kubernetes else None
            )
            rows.append(
                [
                    _cell(r.name),
                    _cell(r.id),
                    _cell(r.executor),
                    _cell(r.url),
                    _cell(image),
                    MASK if r.token else "(none)",
                ]
            )
        lines.extend(text_table(rows))
    return "\n".join(lines)


def _report_json(report: ValidationReport) -> Any:
    def issues(found: tuple[Issue, ...]) -> list[Any]:
        # The location is flattened into line and column (null when unknown).
        return [
            {
                **to_json(i, only=("code", "path", "message")),
                "line": i.location.line if i.location else None,
                "column": i.location.column if i.location else None,
            }
            for i in found
        ]

    return to_json(
        report,
        only=("source", "valid", "strict", "errors", "warnings"),
        rename={"source": "path"},
        convert={"errors": issues, "warnings": issues},
    )


def _render_report(report: ValidationReport) -> str:
    lines = [i.render(report.source) for i in report.issues]
    errors, warnings = len(report.errors), len(report.warnings)
    if report.valid:
        extra = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
        lines.append(f"valid: {report.source}{extra}")
    else:
        lines.append(
            f"invalid: {report.source}: {errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}"
        )
    return "\n".join(lines)


def _render_findings(
    path: Path, findings: tuple[Finding, ...], fail_on: FailOn, failing: tuple[Finding, ...]
) -> str:
    from provisioner.runner_config import Severity

    lines: list[str] = []
    for f in findings:
        runner = f" [{f.runner}]" if f.runner else ""
        lines.append(f"{f.severity.value.upper():<6} {f.rule}{runner} {f.message}")
        lines.append(f"       fix: {f.fix}")
    if not findings:
        lines.append(f"no findings: {path}")
    else:
        counts = ", ".join(
            f"{sum(1 for f in findings if f.severity is s)} {s.value}"
            for s in reversed(Severity)
            if any(f.severity is s for f in findings)
        )
        verdict = (
            f"failed (--fail-on {fail_on.value})"
            if failing
            else f"passed (--fail-on {fail_on.value})"
        )
        lines.append(
            f"{len(findings)} finding{'s' if len(findings) != 1 else ''} ({counts}): {verdict}"
        )
    return "\n".join(lines)


def _show_value(value: Any) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _render_diff(a: Path, b: Path, result: ConfigDiff) -> str:
    lines = [f"--- {a}", f"+++ {b}"]
    if result.empty:
        lines.append("no semantic differences")
        return "\n".join(lines)
    for change in result.global_changes:
        lines.append(f"~ {change.key}: {_show_value(change.old)} -> {_show_value(change.new)}")
    lines.extend(f"+ runner {name}" for name in result.added)
    lines.extend(f"- runner {name}" for name in result.removed)
    for runner in result.changed:
        lines.append(f"~ runner {runner.runner}")
        for change in runner.changes:
            lines.append(
                f"    {change.key}: {_show_value(change.old)} -> {_show_value(change.new)}"
            )
    return "\n".join(lines)
