"""``verify``: check every runner of config.toml against GitLab, and repair what is broken.

A ``[[runners]]`` entry can disagree with GitLab after a command was killed half-way:
``token rotate`` killed between the reset and the write leaves a token GitLab refuses, and
``unregister`` killed between the delete and the write leaves an entry for a deleted runner.
``verify`` tells the two apart from GitLab alone, so it repairs both without knowing which
command was killed:

* the token verifies (``POST /runners/verify``): the entry is fine;
* the token is refused but the runner still exists and is the entry's (same id, and the
  description register gave it): the token is dead; ``--repair`` resets it with the user's
  access token (``POST /runners/:id/reset_authentication_token``) and writes the new one;
* otherwise GitLab no longer knows the runner: ``--delete`` (or ``--repair``) drops the entry.

Entries of another GitLab instance (another ``url``) are left alone. GitLab is asked outside
the config lock; the lock is taken once, to write what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from provisioner.gitlab.models import RunnerCredentials
from provisioner.registration.entries import ref, token_fields
from provisioner.registration.model import (
    ConfigStorePort,
    RunnerAPI,
    SecretSink,
    ignore_secret,
    update_store,
)
from provisioner.registration.unregister import still_ours
from provisioner.runner_config import ConfigDocument


class EntryState(StrEnum):
    """What ``verify`` found (and did) for one entry."""

    VALID = "valid"
    TOKEN_REFUSED = "token-refused"  # the runner exists, its token is dead  # noqa: S105
    GONE = "gone"  # GitLab no longer knows the runner
    REPAIRED = "repaired"  # the dead token was reset and written
    DELETED = "deleted"  # the entry of a gone runner was removed
    OTHER_INSTANCE = "other-instance"  # the entry belongs to another GitLab URL


#: States that leave config.toml and GitLab in disagreement.
PROBLEMS = frozenset({EntryState.TOKEN_REFUSED, EntryState.GONE})


@dataclass(frozen=True)
class EntryCheck:
    """One entry's outcome."""

    name: str
    url: str
    runner_id: int | None
    state: EntryState


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found and did."""

    config_path: Path
    entries: tuple[EntryCheck, ...]
    config_changed: bool

    @property
    def problems(self) -> tuple[EntryCheck, ...]:
        """The entries still in disagreement with GitLab."""
        return tuple(e for e in self.entries if e.state in PROBLEMS)


def verify_runners(
    *,
    gitlab_url: str,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    delete: bool = False,
    repair: bool = False,
    on_secret: SecretSink | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> VerifyResult:
    """Check every entry of ``store`` that belongs to ``gitlab_url`` against GitLab.

    Args:
        gitlab_url: the GitLab instance ``gitlab`` talks to.
        gitlab: the GitLab adapter (an access token is needed to tell a dead token from a
            deleted runner, and for ``repair``).
        store: the config.toml store.
        delete: drop entries whose runner GitLab no longer knows.
        repair: ``delete``, and also reset dead tokens with the access token.
        on_secret: told about every token (for output redaction).
        now: the clock for ``token_obtained_at``.
    """
    sink = on_secret or ignore_secret
    url = gitlab_url.rstrip("/")
    checks: list[EntryCheck] = []
    drops: list[Mapping[str, Any]] = []
    resets: list[tuple[Mapping[str, Any], RunnerCredentials]] = []
    for entry in store.load().iter_runner_plain():
        check = _check(entry, url, gitlab=gitlab, sink=sink)
        if check.state is EntryState.GONE and (delete or repair):
            drops.append(entry)
            check = EntryCheck(check.name, check.url, check.runner_id, EntryState.DELETED)
        elif check.state is EntryState.TOKEN_REFUSED and repair and check.runner_id:
            creds = gitlab.reset_token(check.runner_id)
            sink(creds.token)
            resets.append((entry, creds))
            check = EntryCheck(check.name, check.url, check.runner_id, EntryState.REPAIRED)
        checks.append(check)
    changed = False
    if drops or resets:

        def transaction(doc: ConfigDocument) -> None:
            for entry, creds in resets:
                if doc.find_runner(ref(entry)) is not None:
                    doc.update_runner(ref(entry), token_fields(creds, now, entry))
            for entry in drops:
                if doc.find_runner(ref(entry)) is None:
                    continue  # removed meanwhile
                if len(doc.runner_tables()) == 1:
                    # remove_runner would leave ``runners = []``, which the document refuses.
                    del doc.document["runners"]
                else:
                    doc.remove_runner(ref(entry))

        changed = update_store(store, transaction).changed
    return VerifyResult(store.path, tuple(checks), changed)


def _check(
    entry: Mapping[str, Any], url: str, *, gitlab: RunnerAPI, sink: SecretSink
) -> EntryCheck:
    name = str(entry.get("name", ""))
    entry_url = str(entry.get("url", "")).rstrip("/")
    raw_id = entry.get("id")
    rid = raw_id if isinstance(raw_id, int) and raw_id else None
    if entry_url != url:
        return EntryCheck(name, entry_url, rid, EntryState.OTHER_INSTANCE)
    token = str(entry.get("token") or "")
    if token:
        sink(token)
        verdict = gitlab.verify(token)
        if verdict.valid:
            return EntryCheck(name, entry_url, verdict.runner_id or rid, EntryState.VALID)
    if rid is not None and gitlab.authenticated and still_ours(gitlab, rid, entry):
        return EntryCheck(name, entry_url, rid, EntryState.TOKEN_REFUSED)
    return EntryCheck(name, entry_url, rid, EntryState.GONE)
