"""Where a runner is attached: ``instance``, ``group:PATH`` or ``project:PATH``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provisioner.errors import UsageError
from provisioner.gitlab.models import Runner, RunnerType

SCOPE_CHOICES = "instance, group:PATH or group:ID, project:PATH or project:ID"
_PATH_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


@dataclass(frozen=True)
class Scope:
    """A parsed ``--scope``; ``ref`` is a full path or a numeric id (``None`` for instance)."""

    runner_type: RunnerType
    ref: str | None = None

    @property
    def numeric_id(self) -> int | None:
        """The id when the scope was given as ``group:42``; ``None`` for a path."""
        return int(self.ref) if self.ref is not None and self.ref.isdigit() else None

    def __str__(self) -> str:
        if self.runner_type is RunnerType.INSTANCE:
            return "instance"
        kind = "group" if self.runner_type is RunnerType.GROUP else "project"
        return f"{kind}:{self.ref}"

    def matches(self, runner: Runner) -> bool:
        """True when a runner GitLab describes is attached where this scope says.

        Paths are compared against the ``web_url`` of the runner's groups and projects, so no
        extra request is needed to resolve them.
        """
        if runner.runner_type is not self.runner_type:
            return False
        if self.runner_type is RunnerType.INSTANCE or not runner.detailed:
            return True
        ids = runner.group_ids if self.runner_type is RunnerType.GROUP else runner.project_ids
        paths = runner.group_paths if self.runner_type is RunnerType.GROUP else runner.project_paths
        if self.numeric_id is not None:
            return self.numeric_id in ids
        assert self.ref is not None
        return self.ref.casefold() in {p.casefold() for p in paths}


def parse_scope(text: str) -> Scope:
    """Parse ``--scope``.

    Raises:
        UsageError: for anything but ``instance``, ``group:PATH|ID`` or ``project:PATH|ID``.
    """
    value = text.strip()
    if value == "instance":
        return Scope(RunnerType.INSTANCE)
    kind, sep, ref = value.partition(":")
    types = {"group": RunnerType.GROUP, "project": RunnerType.PROJECT}
    ref = ref.strip("/")
    if sep and kind in types and _PATH_RE.fullmatch(ref):
        if kind == "project" and "/" not in ref and not ref.isdigit():
            raise UsageError(
                f"Project scope {text!r} needs the full path (namespace/project) or an id.",
                hint="Example: --scope project:platform/ci/app or --scope project:42.",
            )
        return Scope(types[kind], ref)
    raise UsageError(
        f"Unknown scope {text!r}.",
        hint=f"Valid scopes: {SCOPE_CHOICES}; e.g. --scope group:platform/ci or "
        "--scope project:platform/ci/app.",
    )
