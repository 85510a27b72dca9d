"""The ``[[runners]]`` entries registration reads and writes in config.toml.

Finding an entry, the keys ``register`` manages, the token fields, validation of what is about
to be written, and the masked diff that ``--dry-run`` and the result show.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.gitlab.models import RunnerCredentials
from provisioner.registration.executors import Executor, executor_settings
from provisioner.registration.model import RegisterRequest
from provisioner.runner_config import ConfigDocument, RunnerRef, lint_document, validate_text
from provisioner.runner_config.model import SECRET_KEYS, mask_environment_entry
from provisioner.secrets import MASK

# One `key = value` line of a config diff, with its +/-/space marker.
_ASSIGNMENT_LINE_RE = re.compile(
    r"^(?P<head>[+\- ]?\s*(?P<key>[A-Za-z0-9_\-]+)\s*=\s*)(?P<value>.*)$", re.MULTILINE
)
_TOML_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SECRET_KEYS_FOLDED = frozenset(key.lower() for key in SECRET_KEYS)


def find_entry(doc: ConfigDocument, request: RegisterRequest) -> dict[str, Any] | None:
    url = request.gitlab_url.rstrip("/")
    hits = [
        entry
        for entry in doc.iter_runner_plain()
        if entry.get("name") == request.name and str(entry.get("url", "")).rstrip("/") == url
    ]
    if len(hits) > 1:
        raise ConfigError(
            f"{len(hits)} [[runners]] entries in the config are named {request.name!r} for {url}.",
            hint="Remove the duplicates with `runnerctl unregister --id ID`, then re-run.",
        )
    return hits[0] if hits else None


def desired_entry(request: RegisterRequest, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keys register manages, other than identity and token fields."""
    entry: dict[str, Any] = {"executor": settings["executor"]}
    for key, value in settings.items():
        if key != "executor":
            entry[key] = value
    if request.limit is not None:
        entry["limit"] = request.limit
    return entry


def config_changes(
    entry: Mapping[str, Any], request: RegisterRequest, runner_id: int
) -> dict[str, Any]:
    desired = desired_entry(request, executor_settings(request.executor))
    changes: dict[str, Any] = {}
    if entry.get("id") != runner_id:
        changes["id"] = runner_id
    for key, value in desired.items():
        current = entry.get(key)
        if key == "environment":
            merged = merge_environment(current, value)
            if merged != current:
                changes[key] = merged
        elif isinstance(value, dict):
            section = current if isinstance(current, dict) else {}
            delta = {k: v for k, v in value.items() if section.get(k) != v}
            if delta:
                changes[key] = delta
        elif current != value:
            changes[key] = value
    if desired["executor"] != entry.get("executor"):
        # Switching executor: drop the sections of the others (user keys elsewhere stay).
        for other in ("docker", "kubernetes"):
            if other not in desired and other in entry:
                changes[other] = None
        if request.executor.executor is not Executor.SHELL:
            for key in ("shell", "builds_dir"):
                if key in entry:
                    changes[key] = None
    return changes


def merge_environment(current: Any, wanted: list[str]) -> list[str]:
    existing = [str(v) for v in current] if isinstance(current, list) else []
    names = {w.split("=", 1)[0] for w in wanted}
    kept = [e for e in existing if e.split("=", 1)[0] not in names]
    return kept + list(wanted) if existing != kept + list(wanted) else existing


def ref(entry: Mapping[str, Any] | None) -> RunnerRef:
    assert entry is not None
    # A runner's identity is (URL, id): two GitLab instances hand out the same ids.
    url = str(entry["url"]) if entry.get("url") else None
    if isinstance(entry.get("id"), int) and entry.get("id"):
        return RunnerRef(id=int(entry["id"]), url=url)
    if entry.get("token"):
        return RunnerRef(token=str(entry["token"]))
    return RunnerRef(name=str(entry.get("name")), url=url)


def obtained_at(now: datetime, entry: Mapping[str, Any] | None) -> datetime:
    """Second precision like gitlab-runner, and strictly newer than what the file holds.

    The store keeps the disk's token unless ours was obtained strictly later; two writes within
    one second (register, then rotate) would otherwise lose the newer token.
    """
    moment = now.astimezone(UTC).replace(microsecond=0)
    previous = (entry or {}).get("token_obtained_at")
    if isinstance(previous, datetime):
        previous = previous if previous.tzinfo else previous.replace(tzinfo=UTC)
        if previous >= moment:
            moment = previous.astimezone(UTC) + timedelta(seconds=1)
    return moment


def token_fields(
    creds: RunnerCredentials, now: Callable[[], datetime], entry: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "token": creds.token,
        "token_obtained_at": obtained_at(now(), entry),
        # gitlab-runner writes 0001-01-01T00:00:00Z for "never"; an absent key means the same.
        "token_expires_at": creds.token_expires_at,
    }


def check_valid(text: str, path: Path, *, ours: bool = False) -> None:
    report = validate_text(text, source=str(path))
    if report.valid:
        return
    first = report.errors[0].render(str(path))
    if ours:
        raise ConfigError(
            f"The new runner entry would make the config invalid: {first}",
            hint="Nothing was written and the new runner was removed from GitLab again; "
            "check the executor options.",
        )
    raise ConfigError(
        f"The config file is invalid: {first}"
        + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""),
        hint=f"Fix it first (`runnerctl config validate --config {path}`); nothing was "
        "changed in GitLab or on disk.",
    )


def index_of(doc: ConfigDocument, request: RegisterRequest) -> int:
    url = request.gitlab_url.rstrip("/")
    for index, entry in enumerate(doc.iter_runner_plain()):
        if entry.get("name") == request.name and str(entry.get("url", "")).rstrip("/") == url:
            return index
    raise AssertionError("the runner entry just written is missing")  # pragma: no cover


def lint_warnings(doc: ConfigDocument, name: str) -> list[str]:
    return [
        f"{f.rule} ({f.severity.value}): {f.message}. Fix: {f.fix}"
        for f in lint_document(doc)
        if f.runner == name and f.rule != "RC006"
    ]


def config_diff(before: str, after: str, path: Path) -> str:
    if before == after:
        return ""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (before)",
        tofile=f"{path} (after)",
    )
    return mask_tokens("".join(lines))


def mask_tokens(text: str) -> str:
    """Mask secrets in config diff lines: every value of a secret key (``token``, cache
    credentials...; any token shape, legacy ones too) and secret ``environment`` entries,
    with the same rules as ``runnerctl config show``."""

    def mask_line(match: re.Match[str]) -> str:
        key, value = match.group("key").lower(), match.group("value")
        if key in _SECRET_KEYS_FOLDED:
            return f'{match.group("head")}"{MASK}"'
        if key == "environment":
            entries = _TOML_STRING_RE.sub(
                lambda s: f'"{mask_environment_entry(s.group(1))}"', value
            )
            return match.group("head") + entries
        return match.group(0)

    return _ASSIGNMENT_LINE_RE.sub(mask_line, text)


def find_configured(
    doc: ConfigDocument, *, name: str | None, runner_id: int | None
) -> dict[str, Any]:
    entries = list(doc.iter_runner_plain())
    if runner_id is not None:
        hits = [e for e in entries if e.get("id") == runner_id]
        what = f"id {runner_id}"
    else:
        hits = [e for e in entries if e.get("name") == name]
        what = f"name {name!r}"
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{e.get('name')!r} (id {e.get('id')})" for e in entries) or "none"
    if not hits:
        raise ConfigError(
            f"No runner with {what} in {doc.source}.",
            hint=f"Configured runners: {known}.",
            exit_code=2,
        )
    raise ConfigError(
        f"{len(hits)} runners with {what} in {doc.source}.",
        hint="Name the runner by --id instead.",
    )
