"""``unregister --all-runners``: every runner of config.toml, one transaction each.

gitlab-runner's ``unregister --all-runners`` removes every entry. Each removal here is an
ordinary :func:`~provisioner.registration.unregister.unregister` (so it gets the same checks),
and the entries of another GitLab instance are left alone: the user's token only speaks for the
instance it belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.registration.model import (
    ConfigStorePort,
    RunnerAPI,
    SecretSink,
    UnregisterResult,
)
from provisioner.registration.unregister import unregister


@dataclass(frozen=True)
class UnregisterAllResult:
    """What ``unregister --all-runners`` removed, and the entries it left alone."""

    removed: tuple[UnregisterResult, ...]
    skipped: tuple[str, ...] = ()


def unregister_all(
    *,
    keep_server: bool,
    gitlab: RunnerAPI | None,
    gitlab_url: str | None,
    store: ConfigStorePort,
    on_secret: SecretSink | None = None,
) -> UnregisterAllResult:
    """Remove every runner of ``store`` (deleting it in GitLab unless ``keep_server``).

    Args:
        keep_server: only remove the entries; GitLab keeps the runners.
        gitlab: the user's GitLab (None with ``keep_server``).
        gitlab_url: the instance ``gitlab`` talks to; entries of other URLs are skipped.
        store: the config.toml.
        on_secret: told every runner token read.
    """
    removed: list[UnregisterResult] = []
    skipped: list[str] = []
    for entry in list(store.load().iter_runner_plain()):
        name = str(entry.get("name") or "")
        if not keep_server and gitlab_url and not _same_instance(entry, gitlab_url):
            skipped.append(
                f"Runner {name!r} belongs to {entry.get('url')}, not {gitlab_url}: kept; "
                f"run again with --gitlab-url {entry.get('url')}."
            )
            continue
        runner_id = _id(entry)
        removed.append(
            unregister(
                name=None if runner_id is not None else name,
                runner_id=runner_id,
                keep_server=keep_server,
                gitlab=gitlab,
                store=store,
                on_secret=on_secret,
            )
        )
    return UnregisterAllResult(tuple(removed), tuple(skipped))


def _id(entry: Mapping[str, Any]) -> int | None:
    value = entry.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


def _same_instance(entry: Mapping[str, Any], url: str) -> bool:
    return str(entry.get("url", "")).rstrip("/") == url.rstrip("/")
