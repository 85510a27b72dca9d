"""The fleet's vocabulary: the desired state, the observed state and the plan between them.

``fleet plan`` reads ``FLEET.toml`` into a :class:`Fleet`, observes GitLab and the hosts into an
:class:`Observed`, and diffs the two into a :class:`FleetPlan` (a pure function, no writes).
``fleet apply`` carries out a plan's :class:`Action` list. A plan holds no secret: tokens read
from the hosts stay in :class:`Observed` (``repr=False``) and never reach the plan's JSON.

Ownership: every runner the fleet creates carries :func:`marker` in its ``maintenance_note``; a
runner without the marker of this fleet is *unmanaged* and is never changed or deleted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from provisioner.gitlab.models import AccessLevel
from provisioner.registration.scope import Scope

MARKER_PREFIX = "managed-by: runnerctl fleet="
PLAN_FORMAT = 1


def marker(fleet: str, runner: str) -> str:
    """The ``maintenance_note`` of a runner this fleet owns."""
    return f"{MARKER_PREFIX}{fleet} runner={runner}"


def parse_marker(note: str | None) -> tuple[str, str] | None:
    """``(fleet, runner)`` from a ``maintenance_note`` carrying a fleet marker, else ``None``.

    The marker may be the note's first line, followed by free text a person added.
    """
    if not note:
        return None
    first = note.splitlines()[0].strip()
    if not first.startswith(MARKER_PREFIX):
        return None
    fleet, sep, rest = first[len(MARKER_PREFIX) :].partition(" runner=")
    if not sep or not fleet or not rest.strip():
        return None
    return fleet, rest.strip()


# --------------------------------------------------------------------------- desired state


@dataclass(frozen=True)
class TokenRotation:
    """When a runner's token is reset: ``before_expiry`` ahead of ``token_expires_at``, and/or
    ``every`` since the token was obtained (the ``token_obtained_at`` of the hosts' entries)."""

    before_expiry: timedelta | None = None
    every: timedelta | None = None


@dataclass(frozen=True)
class HostSpec:
    """One ``[[hosts]]`` entry: an SSH target and what Ansible applies to it."""

    name: str
    address: str
    user: str
    port: int = 22
    roles: tuple[str, ...] | None = None  # optional playbook roles; None: all of them
    vars: Mapping[str, Any] = field(default_factory=dict)
    config_path: str = "/etc/gitlab-runner/config.toml"


@dataclass(frozen=True)
class RunnerDef:
    """One ``[[runners]]`` entry: a GitLab runner and its config.toml entry on each host.

    ``server`` settings live in GitLab (tags, paused, ...); ``entry`` is the executor's part of
    the config.toml ``[[runners]]`` entry (``executor``, ``[runners.docker]``, ...), identical on
    every host of the runner.
    """

    name: str
    hosts: tuple[str, ...]
    executor: str
    scope: Scope
    tags: tuple[str, ...] = ()
    run_untagged: bool = False
    locked: bool = True
    paused: bool = False
    access_level: AccessLevel = AccessLevel.NOT_PROTECTED
    maximum_timeout: int | None = None
    token_rotation: TokenRotation | None = None
    entry: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fleet:
    """A validated ``FLEET.toml``."""

    name: str
    gitlab_url: str
    hosts: tuple[HostSpec, ...]
    runners: tuple[RunnerDef, ...]
    source: str = "FLEET.toml"

    def host(self, name: str) -> HostSpec:
        """The host called ``name`` (validation guarantees it exists)."""
        return next(h for h in self.hosts if h.name == name)

    def runner(self, name: str) -> RunnerDef:
        """The runner called ``name``."""
        return next(r for r in self.runners if r.name == name)


# --------------------------------------------------------------------------- observed state


@dataclass(frozen=True)
class ObservedManager:
    """One runner manager (one host's gitlab-runner process using the runner's token)."""

    system_id: str
    contacted_at: datetime | None = None


@dataclass(frozen=True)
class ObservedRunner:
    """A runner as GitLab reports it (one GraphQL node or REST object)."""

    id: int
    description: str
    runner_type: str
    tags: tuple[str, ...]
    paused: bool
    locked: bool
    run_untagged: bool
    access_level: str
    maximum_timeout: int | None
    maintenance_note: str | None
    contacted_at: datetime | None = None
    token_expires_at: datetime | None = None
    managers: tuple[ObservedManager, ...] = ()
    # Full paths of the groups or projects a group/project runner is attached to (when known).
    scope_paths: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The settings a fleet declares, as plan compares them (tags sorted)."""
        return {
            "description": self.description,
            "tags": sorted(self.tags),
            "paused": self.paused,
            "locked": self.locked,
            "run_untagged": self.run_untagged,
            "access_level": self.access_level,
            "maximum_timeout": self.maximum_timeout,
        }

    @property
    def owner(self) -> tuple[str, str] | None:
        """``(fleet, runner name)`` when marked, else ``None``."""
        return parse_marker(self.maintenance_note)


@dataclass(frozen=True)
class ObservedEntry:
    """One ``[[runners]]`` entry of a host's config.toml (its token kept out of repr)."""

    name: str
    id: int | None
    url: str | None
    executor: str | None
    settings: Mapping[str, Any]  # the entry without token/id/url/name/token_* keys
    token: str | None = field(default=None, repr=False, compare=False)
    token_obtained_at: datetime | None = None
    token_expires_at: datetime | None = None


@dataclass(frozen=True)
class ObservedHost:
    """What one SSH session learned about a host; ``error`` set when it could not be read."""

    name: str
    reachable: bool
    error: str | None = None
    runner_installed: bool = False
    service_active: bool = False
    system_id: str | None = None
    entries: tuple[ObservedEntry, ...] = ()


@dataclass(frozen=True)
class Observed:
    """GitLab's runners and the hosts, as read at one moment (``observed_at``)."""

    observed_at: datetime
    runners: tuple[ObservedRunner, ...]
    hosts: tuple[ObservedHost, ...]
    api_requests: int = 0
    ssh_sessions: int = 0

    def digest(self) -> str:
        """A hash of everything a plan depends on (no token is hashed in clear)."""
        payload = {
            "runners": [_runner_key(r) for r in sorted(self.runners, key=lambda r: r.id)],
            "hosts": [_host_key(h) for h in sorted(self.hosts, key=lambda h: h.name)],
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _runner_key(r: ObservedRunner) -> dict[str, Any]:
    return {
        "id": r.id,
        **r.settings(),
        "maintenance_note": r.maintenance_note,
        "token_expires_at": r.token_expires_at,
    }


def _host_key(h: ObservedHost) -> dict[str, Any]:
    return {
        "name": h.name,
        "reachable": h.reachable,
        "runner_installed": h.runner_installed,
        "service_active": h.service_active,
        "entries": [
            {
                "name": e.name,
                "id": e.id,
                "url": e.url,
                "executor": e.executor,
                "settings": e.settings,
                "token": hashlib.sha256(e.token.encode()).hexdigest()[:16] if e.token else None,
            }
            for e in sorted(h.entries, key=lambda e: e.name)
        ],
    }


# --------------------------------------------------------------------------- the plan


class ActionKind(StrEnum):
    """What apply can do, in the order apply does it."""

    PROVISION_HOST = "provision-host"  # Ansible: install/upgrade gitlab-runner, roles
    ADOPT_RUNNER = "adopt-runner"  # write this fleet's marker on an existing runner (--adopt)
    CREATE_RUNNER = "create-runner"  # POST /user/runners with the marker, then write entries
    UPDATE_RUNNER = "update-runner"  # PUT /runners/:id with the drifted settings
    ROTATE_TOKEN = "rotate-token"  # noqa: S105 (an action name) reset the token, write it to every host of the runner
    WRITE_ENTRY = "write-entry"  # add or rewrite a drifted config.toml entry on one host
    REMOVE_ENTRY = "remove-entry"  # drop an owned runner's entry from a host not listed for it
    DELETE_RUNNER = "delete-runner"  # DELETE /runners/:id (owned, not in the file)


@dataclass(frozen=True)
class Action:
    """One step of a plan. ``changes`` is JSON-able and never holds a secret."""

    kind: ActionKind
    reason: str
    runner: str | None = None  # the runner's name in FLEET.toml (or the description)
    runner_id: int | None = None
    host: str | None = None  # for host-level actions (provision, write/remove entry)
    hosts: tuple[str, ...] = ()  # for rotate/create: every host that receives the token
    changes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable id: ``kind:runner@host``."""
        where = f"@{self.host}" if self.host else ""
        return f"{self.kind.value}:{self.runner or ''}{where}"

    def to_json(self) -> dict[str, Any]:
        """The action as plain JSON types."""
        return {
            "id": self.key,
            "kind": self.kind.value,
            "reason": self.reason,
            "runner": self.runner,
            "runner_id": self.runner_id,
            "host": self.host,
            "hosts": list(self.hosts),
            "changes": dict(self.changes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        """The inverse of :meth:`to_json`."""
        return cls(
            kind=ActionKind(data["kind"]),
            reason=str(data["reason"]),
            runner=data.get("runner"),
            runner_id=data.get("runner_id"),
            host=data.get("host"),
            hosts=tuple(data.get("hosts") or ()),
            changes=dict(data.get("changes") or {}),
        )


@dataclass(frozen=True)
class Unmanaged:
    """A runner (or a host's config entry) the fleet sees but does not own: never touched."""

    description: str
    reason: str
    runner_id: int | None = None
    host: str | None = None


@dataclass(frozen=True)
class FleetPlan:
    """The actions that take the observed state to the desired one."""

    fleet: str
    created_at: datetime
    state_digest: str
    actions: tuple[Action, ...]
    unmanaged: tuple[Unmanaged, ...] = ()
    unreachable: Mapping[str, str] = field(default_factory=dict)  # host -> error
    api_requests: int = 0
    ssh_sessions: int = 0

    @property
    def changes(self) -> bool:
        """True when applying would change anything."""
        return bool(self.actions)

    def to_json(self) -> dict[str, Any]:
        """The plan file's content (``format`` 1)."""
        return {
            "format": PLAN_FORMAT,
            "fleet": self.fleet,
            "created_at": self.created_at.isoformat(),
            "state_digest": self.state_digest,
            "actions": [a.to_json() for a in self.actions],
            "unmanaged": [
                {
                    "description": u.description,
                    "reason": u.reason,
                    "runner_id": u.runner_id,
                    "host": u.host,
                }
                for u in self.unmanaged
            ],
            "unreachable": dict(self.unreachable),
            "summary": {kind.value: self.count(kind) for kind in ActionKind},
            "api_requests": self.api_requests,
            "ssh_sessions": self.ssh_sessions,
        }

    def count(self, kind: ActionKind) -> int:
        """How many actions of ``kind``."""
        return sum(1 for a in self.actions if a.kind is kind)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FleetPlan:
        """A plan read back from a plan file (validated by the caller)."""
        return cls(
            fleet=str(data["fleet"]),
            created_at=datetime.fromisoformat(str(data["created_at"])),
            state_digest=str(data["state_digest"]),
            actions=tuple(Action.from_json(a) for a in data.get("actions") or ()),
            unmanaged=tuple(
                Unmanaged(
                    description=str(u["description"]),
                    reason=str(u["reason"]),
                    runner_id=u.get("runner_id"),
                    host=u.get("host"),
                )
                for u in data.get("unmanaged") or ()
            ),
            unreachable=dict(data.get("unreachable") or {}),
            api_requests=int(data.get("api_requests") or 0),
            ssh_sessions=int(data.get("ssh_sessions") or 0),
        )
