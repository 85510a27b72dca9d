"""The config.toml ``[[runners]]`` entry of a fleet runner on one host.

An entry is the runner's identity (``name``, ``url``, ``id``), its token fields (written by
apply, then owned by gitlab-runner), and the settings FLEET.toml describes: ``executor``, the
executor's table (``[runners.docker]``...) and the ``[runners.config]`` keys. Every host of a
runner gets the same settings, so :func:`desired_settings` is what a plan compares an observed
entry's ``settings`` with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from provisioner.fleet.model import Fleet, RunnerDef
from provisioner.gitlab.models import RunnerCredentials
from provisioner.registration.entries import token_fields
from provisioner.runner_config import ConfigDocument, RunnerRef

#: Keys of an entry that are identity or secrets, not settings.
IDENTITY_KEYS = frozenset({"name", "url", "id", "token", "token_obtained_at", "token_expires_at"})


def desired_settings(runner: RunnerDef) -> dict[str, Any]:
    """The entry's keys other than identity and token fields (``executor`` included)."""
    settings: dict[str, Any] = {"executor": runner.executor}
    for key, value in runner.entry.items():
        if key not in IDENTITY_KEYS:
            settings[key] = _plain(value)
    return settings


def settings_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An existing entry's settings: everything but identity and token fields."""
    return {k: _plain(v) for k, v in entry.items() if k not in IDENTITY_KEYS}


def new_entry(
    fleet: Fleet,
    runner: RunnerDef,
    creds: RunnerCredentials,
    *,
    now: Callable[[], datetime],
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole entry for ``runner``: identity, token fields and settings."""
    return {
        "name": runner.name,
        "url": fleet.gitlab_url,
        "id": creds.id,
        **token_fields(creds, now, previous),
        **desired_settings(runner),
    }


def find_entry(doc: ConfigDocument, runner_id: int) -> dict[str, Any] | None:
    """The plain entry whose ``id`` is ``runner_id`` (a fleet entry is found by id only)."""
    for entry in doc.iter_runner_plain():
        if entry.get("id") == runner_id:
            return entry
    return None


def write_entry(
    doc: ConfigDocument,
    fleet: Fleet,
    runner: RunnerDef,
    creds: RunnerCredentials,
    *,
    now: Callable[[], datetime],
) -> None:
    """Add the entry of ``runner`` to ``doc``, or rewrite it: new token, declared settings.

    Only the keys FLEET.toml declares are set (tables key by key); the plan compares those
    alone, so what apply writes is what the next plan reads back as converged.
    """
    current = find_entry(doc, creds.id)
    if current is None:
        doc.add_runner(new_entry(fleet, runner, creds, now=now))
        return
    ref = RunnerRef(id=creds.id)
    values = {"name": runner.name, "url": fleet.gitlab_url, **token_fields(creds, now, current)}
    doc.update_runner(ref, {**values, **_settings_update(current, runner)})


def repair_entry(doc: ConfigDocument, fleet: Fleet, runner: RunnerDef, runner_id: int) -> bool:
    """Rewrite the settings of the entry ``runner_id`` (its token stays); False if absent."""
    current = find_entry(doc, runner_id)
    if current is None:
        return False
    values = {"name": runner.name, "url": fleet.gitlab_url, **_settings_update(current, runner)}
    doc.update_runner(RunnerRef(id=runner_id), values)
    return True


def remove_entry(doc: ConfigDocument, runner_id: int) -> bool:
    """Drop the entry ``runner_id``; False when the file has none."""
    if find_entry(doc, runner_id) is None:
        return False
    doc.remove_runner(RunnerRef(id=runner_id))
    return True


def _settings_update(current: Mapping[str, Any], runner: RunnerDef) -> dict[str, Any]:
    """The declared keys whose value differs (tables merged key by key).

    Keys FLEET.toml does not declare are left alone: gitlab-runner and people add defaults of
    their own, and the plan compares declared keys only, so they are not drift.
    """
    have = settings_of(current)
    return {k: v for k, v in desired_settings(runner).items() if not _subset(v, have.get(k))}


def _subset(wanted: Any, seen: Any) -> bool:
    if isinstance(wanted, dict) and isinstance(seen, dict):
        return all(_subset(v, seen.get(k)) for k, v in wanted.items())
    return bool(wanted == seen)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
