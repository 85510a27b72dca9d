"""The intent journal of ``register``: what a killed run created is found and removed.

A run killed with SIGKILL between ``POST /user/runners`` and the rename of config.toml leaves
a runner in GitLab whose token nobody has. So before it creates, ``register`` records its
intent: the create call carries a one-off marker in the runner's ``maintenance_note``, and the
same marker goes into a journal beside config.toml (``config.toml.journal``, mode 0600, one
JSON object a line, fsynced with its directory). The entry is removed once the runner is in
config.toml or deleted again.

The next ``register`` into the same file looks up every journalled marker first: a runner that
config.toml holds is adopted (the kill came after the rename); any other is deleted; then the
entry is dropped. The journal is only read and written under config.toml's lock, so an entry
found there always belongs to a run that is no longer running.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.errors import ProvisionerError
from provisioner.fsutil import atomic_write, fsync_dir
from provisioner.gitlab.models import RunnerSpec, RunnerType
from provisioner.gitlab.runners import MARKER_PREFIX
from provisioner.registration.model import RunnerAPI
from provisioner.runner_config import ConfigDocument, RunnerRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """One create that was about to be sent."""

    marker: str
    url: str
    runner_type: str
    description: str
    group_id: int | None = None
    project_id: int | None = None

    @classmethod
    def new(cls, url: str, spec: RunnerSpec) -> Intent:
        """A fresh intent (and marker) for creating ``spec`` on ``url``."""
        return cls(
            f"{MARKER_PREFIX}{uuid.uuid4().hex}",
            url.rstrip("/"),
            spec.runner_type.value,
            spec.description,
            spec.group_id,
            spec.project_id,
        )

    def spec(self) -> RunnerSpec:
        """Enough of the runner's spec to look it up where it was created."""
        return RunnerSpec(
            RunnerType(self.runner_type),
            self.description,
            group_id=self.group_id,
            project_id=self.project_id,
        )


class Journal:
    """``config.toml.journal``: the intents of runs that may have been killed."""

    def __init__(self, config_path: Path) -> None:
        self.path = config_path.with_name(config_path.name + ".journal")

    def intents(self) -> Iterator[Intent]:
        """The recorded intents (unreadable lines are skipped: a kill mid-append)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                yield Intent(**json.loads(line))
            except (ValueError, TypeError):
                continue

    def record(self, intent: Intent) -> None:
        """Append ``intent`` and make it durable before the create is sent."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(asdict(intent)) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)

    def forget(self, marker: str) -> None:
        """Drop the entry of ``marker`` (the file goes when it is empty)."""
        rest = [i for i in self.intents() if i.marker != marker]
        if rest:
            lines = "".join(json.dumps(asdict(i)) + "\n" for i in rest)
            atomic_write(self.path, lines, mode=0o600)
        else:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return
            fsync_dir(self.path.parent)


def recover(journal: Journal, doc: ConfigDocument, *, url: str, gitlab: RunnerAPI) -> list[str]:
    """Adopt or delete what killed runs against ``url`` created; returns what to tell the user."""
    told: list[str] = []
    if not gitlab.authenticated:
        return told
    url = url.rstrip("/")
    for intent in list(journal.intents()):
        if intent.url != url:
            continue  # another GitLab instance: only a run against it can look
        try:
            runner_id = gitlab.find_marked_runner(intent.spec(), intent.marker)
            if runner_id is not None and doc.find_runner(RunnerRef(id=runner_id, url=url)) is None:
                gitlab.delete_runner(runner_id)
            else:
                runner_id = None
        except ProvisionerError as exc:
            # Kept for a run whose token may look (listing instance runners needs an admin).
            log.warning("could not look for the runner of an earlier killed run: %s", exc.message)
            continue
        if runner_id is not None:
            told.append(
                f"Runner {runner_id} ({intent.description!r}), created by an earlier run that was "
                "killed before it wrote config.toml, was deleted in GitLab."
            )
        journal.forget(intent.marker)
    return told
