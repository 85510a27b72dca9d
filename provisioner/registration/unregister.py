"""``unregister``: delete a runner in GitLab and remove its entry, under the config lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.errors import ConfigError, UsageError
from provisioner.registration.entries import find_configured, ref
from provisioner.registration.model import (
    ConfigStorePort,
    RunnerAPI,
    SecretSink,
    UnregisterResult,
    ignore_secret,
    update_store,
)
from provisioner.runner_config import ConfigDocument


@dataclass(frozen=True)
class _Removal:
    """What the transaction removed, and what happened in GitLab."""

    entry: Mapping[str, Any]
    runner_id: int | None
    deleted: bool
    warnings: tuple[str, ...] = ()


def unregister(
    *,
    name: str | None,
    runner_id: int | None,
    keep_server: bool,
    gitlab: RunnerAPI | None,
    store: ConfigStorePort,
    on_secret: SecretSink | None = None,
) -> UnregisterResult:
    """Delete the runner in GitLab (unless ``keep_server``) and remove its entry, under the lock."""
    if (name is None) == (runner_id is None):
        raise UsageError("Name the runner to remove: NAME or --id ID (one of them).")
    sink = on_secret or ignore_secret
    done: list[_Removal] = []

    def transaction(doc: ConfigDocument) -> None:
        entry = find_configured(doc, name=name, runner_id=runner_id)
        removal = _delete_in_gitlab(entry, keep_server=keep_server, gitlab=gitlab, sink=sink)
        if len(doc.runner_tables()) == 1:
            # Removing the last element through remove_runner leaves ``runners = []`` at the
            # top of the file, which the document then refuses to load; drop the key instead.
            del doc.document["runners"]
        else:
            doc.remove_runner(ref(entry))
        done.append(removal)

    update = update_store(store, transaction)
    if not update.changed:  # pragma: no cover - remove_runner always changes the text
        raise ConfigError(f"{store.path} was not changed.")
    (removal,) = done
    return UnregisterResult(
        name=str(removal.entry.get("name", "")),
        runner_id=removal.runner_id,
        config_path=store.path,
        deleted_in_gitlab=removal.deleted,
        warnings=removal.warnings,
    )


def _delete_in_gitlab(
    entry: Mapping[str, Any],
    *,
    keep_server: bool,
    gitlab: RunnerAPI | None,
    sink: SecretSink,
) -> _Removal:
    token = str(entry.get("token") or "")
    if token:
        sink(token)
    raw_id = entry.get("id")
    rid = raw_id if isinstance(raw_id, int) and raw_id else None
    if keep_server:
        return _Removal(entry, rid, deleted=False)
    assert gitlab is not None
    if token:
        # The stored token names the runner for sure; an id alone may name another runner
        # (a reused id, or an entry copied from another instance), so check it first.
        verdict = gitlab.verify(token)
        if verdict.valid:
            rid = verdict.runner_id or rid
        elif rid is not None and not still_ours(gitlab, rid, entry):
            return _Removal(
                entry,
                rid,
                deleted=False,
                warnings=(
                    f"GitLab no longer accepts this entry's token and runner {rid} is gone or "
                    "is another runner now; only the config entry was removed.",
                ),
            )
    if rid is None:
        return _Removal(
            entry,
            None,
            deleted=False,
            warnings=(
                "The entry has no runner id and GitLab does not know its token; only the "
                "config entry was removed.",
            ),
        )
    if gitlab.delete_runner(rid):
        return _Removal(entry, rid, deleted=True)
    return _Removal(
        entry, rid, deleted=False, warnings=(f"Runner {rid} was already gone from GitLab.",)
    )


def still_ours(gitlab: RunnerAPI, runner_id: int, entry: Mapping[str, Any]) -> bool:
    """Whether GitLab's runner ``runner_id`` is the one this entry describes (token dead).

    A token can be dead while its runner lives (a rotation killed half-way); the runner is then
    recognised by its description, which register sets to the entry's name.
    """
    runner = gitlab.find_runner(runner_id)
    return runner is not None and runner.description == entry.get("name")
