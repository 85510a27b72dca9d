"""Ansible adapter: the only module that imports ansible_runner.

:func:`run_playbook` runs a playbook with ansible-runner and turns its events into
:class:`PlaybookEvent` objects (host, kind, task), its stats into :class:`HostStats`, and its
failures into our errors. Every text that leaves this module is redacted: tokens that slip
past ``no_log`` still never reach the terminal. ``ansible-playbook`` is found next to the
running Python (the venv's ``bin``), which ansible-runner needs on ``PATH``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from provisioner.errors import HostError
from provisioner.events import Event, Reporter
from provisioner.secrets import Redactor

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    """The per-host events a run reports."""

    TASK = "task"
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class PlaybookEvent(Event):
    """One host result (or the start of a task, with ``host`` empty)."""

    kind: EventKind
    task: str
    host: str = ""
    message: str = ""


@dataclass(frozen=True)
class HostStats:
    """ansible-playbook's recap line for one host."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class PlaybookRun:
    """What a run did: rc, status, per-host stats, the last error per host, artifacts."""

    rc: int
    status: str
    stats: tuple[HostStats, ...]
    errors: Mapping[str, str]
    artifacts: Path


@dataclass(frozen=True)
class PlaybookSpec:
    """Everything ansible-runner needs for one run."""

    project_dir: Path
    playbook: str
    inventory: Path
    private_data_dir: Path
    extravars: Mapping[str, Any]
    envvars: Mapping[str, str]
    forks: int = 10
    limit: str | None = None
    check: bool = False
    diff: bool = False
    ident: str | None = None


_RESULT_KINDS = {
    "runner_on_ok": EventKind.OK,
    "runner_on_failed": EventKind.FAILED,
    "runner_on_unreachable": EventKind.UNREACHABLE,
    "runner_on_skipped": EventKind.SKIPPED,
    "runner_item_on_failed": EventKind.FAILED,
}


def ansible_bin_dir() -> Path:
    """The directory holding ``ansible-playbook`` (the running venv's ``bin``, else PATH)."""
    here = Path(sys.executable).parent
    if (here / "ansible-playbook").exists():
        return here
    found = shutil.which("ansible-playbook")
    if found:
        return Path(found).parent
    raise HostError(
        "ansible-playbook not found",
        hint="Install runnerctl with its dependencies (pip install runnerctl) so ansible-core "
        "is in the same environment.",
    )


def run_playbook(
    spec: PlaybookSpec,
    *,
    redactor: Redactor,
    on_event: Reporter[PlaybookEvent] | None = None,
) -> PlaybookRun:
    """Run the playbook; a failed host is a result (``rc`` != 0), not an exception."""
    import ansible_runner
    import yaml

    bin_dir = ansible_bin_dir()
    # ansible-runner puts an extravars *dict* on the command line (visible in ps): write them
    # to env/extravars (0600) instead, which it passes as -e @file; removed after the run.
    env_dir = spec.private_data_dir / "env"
    env_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    extravars_file = env_dir / "extravars"
    fd = os.open(extravars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(dict(spec.extravars), fh)
    env = dict(spec.envvars)
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    cmdline: list[str] = []
    if spec.check:
        cmdline.append("--check")
    if spec.diff:
        cmdline.append("--diff")
    errors: dict[str, str] = {}

    def handle(event: Mapping[str, Any]) -> bool:
        _dispatch(event, redactor, errors, on_event)
        return True

    try:
        runner = ansible_runner.run(
            private_data_dir=str(spec.private_data_dir),
            project_dir=str(spec.project_dir),
            playbook=spec.playbook,
            inventory=str(spec.inventory),
            envvars=env,
            forks=spec.forks,
            limit=spec.limit,
            cmdline=" ".join(cmdline) or None,
            ident=spec.ident,
            event_handler=handle,
            quiet=True,
            suppress_env_files=True,
        )
    except Exception as exc:  # ansible-runner raises plain exceptions for setup problems
        raise HostError(
            f"ansible-runner could not start: {redactor(str(exc))}",
            hint="Check that ansible-core is installed in runnerctl's environment.",
        ) from exc
    finally:
        extravars_file.unlink(missing_ok=True)
    stats = _stats(runner.stats or {})
    artifacts = Path(runner.config.artifact_dir)
    return PlaybookRun(
        rc=int(runner.rc if runner.rc is not None else 1),
        status=str(runner.status),
        stats=stats,
        errors=errors,
        artifacts=artifacts,
    )


def _dispatch(
    event: Mapping[str, Any],
    redactor: Redactor,
    errors: dict[str, str],
    on_event: Reporter[PlaybookEvent] | None,
) -> None:
    name = str(event.get("event", ""))
    data: Mapping[str, Any] = event.get("event_data") or {}
    task = redactor(str(data.get("task", "")))
    if name == "playbook_on_task_start":
        if on_event:
            on_event(PlaybookEvent(EventKind.TASK, task))
        return
    kind = _RESULT_KINDS.get(name)
    if kind is None:
        return
    host = str(data.get("host", ""))
    res: Mapping[str, Any] = data.get("res") or {}
    if kind is EventKind.OK and res.get("changed"):
        kind = EventKind.CHANGED
    message = ""
    if kind in (EventKind.FAILED, EventKind.UNREACHABLE):
        if data.get("ignore_errors"):
            return
        message = redactor(
            str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "")
        )
        errors[host] = f"{task}: {message.strip()}"[:500]
    if on_event:
        on_event(PlaybookEvent(kind, task, host=host, message=message))


def _stats(raw: Mapping[str, Mapping[str, int]]) -> tuple[HostStats, ...]:
    hosts: set[str] = set()
    for counts in raw.values():
        if isinstance(counts, Mapping):
            hosts.update(counts)

    def get(key: str, host: str) -> int:
        return int((raw.get(key) or {}).get(host, 0))

    return tuple(
        HostStats(
            host=h,
            ok=get("ok", h),
            changed=get("changed", h),
            failed=get("failures", h),
            unreachable=get("dark", h),
            skipped=get("skipped", h),
        )
        for h in sorted(hosts)
    )


def redact_artifacts(directory: Path, secrets: Sequence[str]) -> None:
    """Mask ``secrets`` in every text file of an artifacts directory (kept for debugging)."""
    redactor = Redactor(secrets)
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        masked = redactor(text)
        if masked != text:
            path.write_text(masked, encoding="utf-8")
