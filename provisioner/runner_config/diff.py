"""Semantic diff of two config.toml files: global keys, and runners added, removed or changed.

Runners are paired by ``id`` when it is non-zero on both sides, else by ``name`` (and by
position for runners that have neither). Formatting, comments and key order do not count;
case-insensitive key spellings are compared by gitlab-runner's canonical name. Secret values
are never part of the result: a changed token shows as ``[MASKED]`` on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from provisioner.runner_config.document import ConfigDocument
from provisioner.runner_config.model import SECRET_KEYS, mask_environment_entry
from provisioner.runner_config.schema import canonicalize
from provisioner.secrets import MASK, redact


@dataclass(frozen=True)
class KeyChange:
    """One key whose value differs; ``None`` on a side means the key is absent there."""

    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class RunnerDiff:
    """How one runner differs between the two files."""

    runner: str
    changes: tuple[KeyChange, ...]


@dataclass(frozen=True)
class ConfigDiff:
    """The whole comparison, ``a`` -> ``b``."""

    global_changes: tuple[KeyChange, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[RunnerDiff, ...]

    @property
    def empty(self) -> bool:
        """True when the files are semantically the same."""
        return not (self.global_changes or self.added or self.removed or self.changed)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict) and (value or not prefix):
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = value
    return out


def _safe(key: str, value: Any) -> Any:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in SECRET_KEYS and value not in (None, ""):
        return MASK
    if leaf == "environment" and isinstance(value, list):
        return [mask_environment_entry(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_safe(key, v) for v in value]
    return value


def _changes(a: dict[str, Any], b: dict[str, Any]) -> tuple[KeyChange, ...]:
    flat_a, flat_b = _flatten(a), _flatten(b)
    out = []
    for key in list(flat_a) + [k for k in flat_b if k not in flat_a]:
        old, new = flat_a.get(key), flat_b.get(key)
        if old != new or (key in flat_a) != (key in flat_b):
            out.append(KeyChange(key, _safe(key, old), _safe(key, new)))
    return tuple(out)


def _label(runner: dict[str, Any], index: int, *, with_id: bool = False) -> str:
    name = runner.get("name")
    runner_id = runner.get("id")
    if isinstance(name, str) and name:
        return f"{name} (id {runner_id})" if with_id and runner_id else name
    if isinstance(runner_id, int) and runner_id:
        return f"id {runner_id}"
    return f"runners[{index}]"


def _key(runner: dict[str, Any], index: int) -> tuple[Any, ...]:
    runner_id = runner.get("id")
    if isinstance(runner_id, int) and not isinstance(runner_id, bool) and runner_id:
        return ("id", runner_id)
    name = runner.get("name")
    if isinstance(name, str) and name:
        return ("name", name)
    return ("index", index)


def diff_documents(a: ConfigDocument, b: ConfigDocument) -> ConfigDiff:
    """Compare two documents semantically (``a`` is the old side)."""
    data_a, _ = canonicalize(a.plain())
    data_b, _ = canonicalize(b.plain())
    runners_a = [r for r in data_a.pop("runners", []) or [] if isinstance(r, dict)]
    runners_b = [r for r in data_b.pop("runners", []) or [] if isinstance(r, dict)]
    by_key_a = {_key(r, i): (i, r) for i, r in enumerate(runners_a)}
    by_key_b = {_key(r, i): (i, r) for i, r in enumerate(runners_b)}
    # A runner gets its id only after registration: pair an id on one side with the name on
    # the other when that is the only way they match.
    for key_b, (_i_b, r_b) in list(by_key_b.items()):
        if key_b in by_key_a or key_b[0] != "id":
            continue
        by_name = ("name", r_b.get("name"))
        if by_name in by_key_a:
            by_key_a[key_b] = by_key_a.pop(by_name)
    added_runners = [(i, r) for k, (i, r) in by_key_b.items() if k not in by_key_a]
    removed_runners = [(i, r) for k, (i, r) in by_key_a.items() if k not in by_key_b]
    # The same name on both sides with different ids: two different GitLab runners, so the
    # labels carry the ids to tell them apart.
    clash = {_label(r, i) for i, r in added_runners} & {_label(r, i) for i, r in removed_runners}
    added = tuple(_label(r, i, with_id=_label(r, i) in clash) for i, r in added_runners)
    removed = tuple(_label(r, i, with_id=_label(r, i) in clash) for i, r in removed_runners)
    changed = []
    for key, (i_a, r_a) in by_key_a.items():
        if key not in by_key_b:
            continue
        _i_b, r_b = by_key_b[key]
        changes = _changes(r_a, r_b)
        if changes:
            changed.append(RunnerDiff(_label(r_b, i_a), changes))
    return ConfigDiff(
        global_changes=_changes(data_a, data_b),
        added=added,
        removed=removed,
        changed=tuple(changed),
    )
