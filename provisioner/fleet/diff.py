"""The diff between a :class:`Fleet` and what was :class:`Observed`: a :class:`FleetPlan`.

A pure function (no I/O, ``now`` is a parameter). The comparisons are chosen so that what
``fleet apply`` writes is exactly what the next observation reads back: tags compare as sets, a
setting the file leaves unset (``maximum_timeout``) is not compared, and a config.toml entry is
compared only on the keys FLEET.toml declares (gitlab-runner and runnerctl add defaults of their
own, which are not drift). Tokens are compared by equality and never copied into the plan.

Ownership: only runners carrying this fleet's marker (or adopted with ``--adopt``) get actions.
Every other runner that collides with the fleet (same description as a fleet runner, or a
shared tag) is listed as unmanaged and left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from provisioner.errors import UsageError
from provisioner.fleet.model import (
    Action,
    ActionKind,
    Fleet,
    FleetPlan,
    Observed,
    ObservedEntry,
    ObservedHost,
    ObservedRunner,
    RunnerDef,
    Unmanaged,
    marker,
)
from provisioner.gitlab.models import RunnerType

_ORDER = {kind: i for i, kind in enumerate(ActionKind)}


def plan(
    fleet: Fleet, observed: Observed, *, adopt: Collection[str] = (), now: datetime
) -> FleetPlan:
    """The actions that take ``observed`` to ``fleet``, in the order apply carries them out.

    Raises:
        UsageError: ``adopt`` names a runner that FLEET.toml does not define.
    """
    unknown = sorted(set(adopt) - {r.name for r in fleet.runners})
    if unknown:
        raise UsageError(
            f"--adopt {unknown[0]}: FLEET.toml defines no runner of that name.",
            hint="--adopt takes the name of a [[runners]] entry whose GitLab runner exists "
            "without the fleet's marker.",
        )
    differ = _Differ(fleet, observed, now)
    differ.run(adopt)
    actions = sorted(differ.actions, key=lambda a: (_ORDER[a.kind], a.runner or "", a.host or ""))
    return FleetPlan(
        fleet=fleet.name,
        created_at=now,
        state_digest=observed.digest(),
        actions=tuple(actions),
        unmanaged=tuple(differ.unmanaged),
        unreachable={h.name: h.error or "unreachable" for h in differ.unreachable_hosts},
        api_requests=observed.api_requests,
        ssh_sessions=observed.ssh_sessions,
    )


@dataclass(frozen=True)
class _Owned:
    """The runner GitLab holds for one fleet runner (after adoption and deduplication)."""

    runner: ObservedRunner
    adopted: bool = False


class _Differ:
    def __init__(self, fleet: Fleet, observed: Observed, now: datetime) -> None:
        self.fleet = fleet
        self.now = now
        self.hosts = {h.name: h for h in observed.hosts}
        self.runners = observed.runners
        self.actions: list[Action] = []
        self.unmanaged: list[Unmanaged] = []
        self.unreachable_hosts = [
            h for h in observed.hosts if not h.reachable and h.name in _names(fleet.hosts)
        ]

    def add(self, kind: ActionKind, reason: str, **fields: Any) -> None:
        self.actions.append(Action(kind=kind, reason=reason, **fields))

    def reachable(self, host: str) -> ObservedHost | None:
        found = self.hosts.get(host)
        return found if found is not None and found.reachable else None

    # ---- the whole diff

    def run(self, adopt: Collection[str]) -> None:
        for spec in self.fleet.hosts:
            self.provision(spec.name)
        owned, others = self.ownership(adopt)
        for runner_def in self.fleet.runners:
            self.runner(runner_def, owned.get(runner_def.name))
        owned_ids = {o.runner.id for o in owned.values()}
        for r in sorted(others, key=lambda r: r.id):
            if r.owner is not None and r.owner[0] == self.fleet.name:
                self.delete(r, "not in FLEET.toml")
            else:
                self.note_unmanaged(r)
        self.unmanaged_entries(owned_ids)

    def provision(self, host: str) -> None:
        seen = self.reachable(host)
        if seen is None:
            return
        if not seen.runner_installed:
            self.add(ActionKind.PROVISION_HOST, "gitlab-runner is not installed", host=host)
        elif not seen.service_active:
            self.add(
                ActionKind.PROVISION_HOST, "the gitlab-runner service is not active", host=host
            )

    def ownership(self, adopt: Collection[str]) -> tuple[dict[str, _Owned], list[ObservedRunner]]:
        """Owned runner per fleet runner name (newest id wins), and every other runner."""
        owned: dict[str, _Owned] = {}
        others: list[ObservedRunner] = []
        names = _names(self.fleet.runners)
        for r in sorted(self.runners, key=lambda r: r.id, reverse=True):
            owner = r.owner
            if owner is not None and owner[0] == self.fleet.name and owner[1] in names:
                if owner[1] not in owned:
                    owned[owner[1]] = _Owned(r)
                    continue
                self.delete(r, f"a newer runner #{owned[owner[1]].runner.id} has the same name")
                continue
            if owner is None and r.description in adopt and r.description not in owned:
                note = marker(self.fleet.name, r.description)
                self.add(
                    ActionKind.ADOPT_RUNNER,
                    "--adopt: mark the existing runner as owned by this fleet",
                    runner=r.description,
                    runner_id=r.id,
                    changes={"maintenance_note": {"from": r.maintenance_note, "to": note}},
                )
                owned[r.description] = _Owned(replace(r, maintenance_note=note), adopted=True)
                continue
            others.append(r)
        return owned, others

    # ---- one fleet runner

    def runner(self, runner_def: RunnerDef, owned: _Owned | None) -> None:
        if owned is None:
            self.create(runner_def, "no runner of this fleet in GitLab")
            return
        r = owned.runner
        if r.runner_type != runner_def.scope.runner_type.value or not _paths_match(runner_def, r):
            self.create(runner_def, f"its scope changed to {runner_def.scope}")
            self.delete(r, f"replaced: its scope is now {runner_def.scope}")
            return
        changes = settings_changes(runner_def, r)
        if changes:
            self.add(
                ActionKind.UPDATE_RUNNER,
                "settings differ in GitLab",
                runner=runner_def.name,
                runner_id=r.id,
                changes=changes,
            )
        self.tokens_and_entries(runner_def, r)

    def create(self, runner_def: RunnerDef, reason: str) -> None:
        self.add(
            ActionKind.CREATE_RUNNER,
            reason,
            runner=runner_def.name,
            hosts=runner_def.hosts,
            changes={
                "scope": str(runner_def.scope),
                "executor": runner_def.executor,
                "tags": sorted(runner_def.tags),
            },
        )

    def delete(self, r: ObservedRunner, reason: str) -> None:
        if reason:
            self.add(ActionKind.DELETE_RUNNER, reason, runner=r.description, runner_id=r.id)
        for host in self.fleet.hosts:
            seen = self.reachable(host.name)
            if seen is not None and any(e.id == r.id for e in seen.entries):
                self.add(
                    ActionKind.REMOVE_ENTRY,
                    f"runner #{r.id} is deleted",
                    runner=r.description,
                    runner_id=r.id,
                    host=host.name,
                )

    def tokens_and_entries(self, runner_def: RunnerDef, r: ObservedRunner) -> None:
        holders: dict[str, ObservedEntry] = {}
        all_seen = True
        for host in runner_def.hosts:
            seen = self.reachable(host)
            if seen is None:
                all_seen = False
                continue
            entry = next((e for e in seen.entries if e.id == r.id), None)
            if entry is not None:
                holders[host] = entry
        reason = self.rotation_reason(runner_def, r, holders, all_seen)
        if reason is not None:
            self.add(
                ActionKind.ROTATE_TOKEN,
                reason,
                runner=runner_def.name,
                runner_id=r.id,
                hosts=runner_def.hosts,
            )
        else:
            for host in runner_def.hosts:
                if self.reachable(host) is None:
                    continue
                entry = holders.get(host)
                if entry is None:
                    self.add(
                        ActionKind.WRITE_ENTRY,
                        "entry missing (the token is copied from a sibling host)",
                        runner=runner_def.name,
                        runner_id=r.id,
                        host=host,
                    )
                    continue
                drift = entry_changes(runner_def, entry, self.fleet.gitlab_url)
                if drift:
                    self.add(
                        ActionKind.WRITE_ENTRY,
                        "entry drifted",
                        runner=runner_def.name,
                        runner_id=r.id,
                        host=host,
                        changes=drift,
                    )
        for spec in self.fleet.hosts:
            seen = self.reachable(spec.name)
            if spec.name in runner_def.hosts or seen is None:
                continue
            if any(e.id == r.id for e in seen.entries):
                self.add(
                    ActionKind.REMOVE_ENTRY,
                    f"the host is not listed for runner {runner_def.name!r}",
                    runner=runner_def.name,
                    runner_id=r.id,
                    host=spec.name,
                )

    def rotation_reason(
        self,
        runner_def: RunnerDef,
        r: ObservedRunner,
        holders: Mapping[str, ObservedEntry],
        all_seen: bool,
    ) -> str | None:
        if not holders:
            # A host we could not read may hold it: rotating now would cut that host off.
            return "no host holds its token" if all_seen else None
        if len({e.token for e in holders.values()}) > 1:
            return "hosts disagree on its token"
        rotation = runner_def.token_rotation
        if rotation is None:
            return None
        if rotation.before_expiry is not None:
            expires = r.token_expires_at or _earliest(e.token_expires_at for e in holders.values())
            if expires is not None and expires - self.now < rotation.before_expiry:
                ahead = _days(rotation.before_expiry.total_seconds())
                return f"the token expires at {expires.isoformat()} (rotate {ahead} before)"
        if rotation.every is not None:
            obtained = _earliest(e.token_obtained_at for e in holders.values())
            if obtained is not None and self.now - obtained > rotation.every:
                every = _days(rotation.every.total_seconds())
                return f"the token was obtained at {obtained.isoformat()} (rotate every {every})"
        return None

    # ---- what the fleet sees but does not own

    def note_unmanaged(self, r: ObservedRunner) -> None:
        other = f" (owned by fleet {r.owner[0]!r})" if r.owner else ""
        for runner_def in self.fleet.runners:
            if r.description == runner_def.name:
                reason = f"same description as fleet runner {runner_def.name!r}{other}"
                break
            shared = sorted(set(r.tags) & set(runner_def.tags))
            if shared:
                tags = ", ".join(shared)
                reason = f"shares tag(s) {tags} with fleet runner {runner_def.name!r}{other}"
                break
        else:
            return
        self.unmanaged.append(Unmanaged(r.description, reason, runner_id=r.id))

    def unmanaged_entries(self, owned_ids: Collection[int]) -> None:
        names = _names(self.fleet.runners)
        deleted = {a.runner_id for a in self.actions if a.kind is ActionKind.DELETE_RUNNER}
        for spec in self.fleet.hosts:
            seen = self.reachable(spec.name)
            for entry in seen.entries if seen is not None else ():
                if entry.name in names and entry.id not in owned_ids and entry.id not in deleted:
                    self.unmanaged.append(
                        Unmanaged(
                            entry.name,
                            "config.toml entry named like a fleet runner, but "
                            + (f"runner #{entry.id}" if entry.id else "without a runner id")
                            + " is not owned by this fleet",
                            runner_id=entry.id,
                            host=spec.name,
                        )
                    )


# --------------------------------------------------------------------------- comparisons


def settings_changes(runner_def: RunnerDef, r: ObservedRunner) -> dict[str, dict[str, Any]]:
    """The GitLab settings of ``r`` that differ from ``runner_def``: ``{field: {from, to}}``."""
    wanted: dict[str, Any] = {
        "description": runner_def.name,
        "tags": sorted(runner_def.tags),
        "paused": runner_def.paused,
        "locked": runner_def.locked,
        "run_untagged": runner_def.run_untagged,
        "access_level": runner_def.access_level.value,
    }
    if runner_def.maximum_timeout is not None:
        wanted["maximum_timeout"] = runner_def.maximum_timeout
    current = r.settings()
    return {k: {"from": current[k], "to": v} for k, v in wanted.items() if current[k] != v}


def entry_changes(runner_def: RunnerDef, entry: ObservedEntry, url: str) -> dict[str, Any]:
    """The keys of a config.toml entry that differ from what FLEET.toml declares.

    Only declared keys are compared (tables key by key), so defaults written by gitlab-runner
    or by runnerctl are not drift. Token values are never part of the result.
    """
    changes: dict[str, Any] = {}
    if entry.executor != runner_def.executor:
        changes["executor"] = {"from": entry.executor, "to": runner_def.executor}
    if (entry.url or "").rstrip("/") != url.rstrip("/"):
        changes["url"] = {"from": entry.url, "to": url}
    _subset_changes(runner_def.entry, entry.settings, "", changes)
    return changes


def _subset_changes(
    wanted: Mapping[str, Any], seen: Mapping[str, Any], prefix: str, out: dict[str, Any]
) -> None:
    for key, value in wanted.items():
        current = seen.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            _subset_changes(value, current, f"{prefix}{key}.", out)
        elif current != value:
            out[f"{prefix}{key}"] = {"from": current, "to": value}


def _paths_match(runner_def: RunnerDef, r: ObservedRunner) -> bool:
    """True unless both sides name a group/project path and they differ."""
    ref = runner_def.scope.ref
    if runner_def.scope.runner_type is RunnerType.INSTANCE or ref is None or ref.isdigit():
        return True
    if not r.scope_paths:
        return True
    return ref.casefold() in {p.casefold() for p in r.scope_paths}


def _earliest(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _days(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _names(items: Iterable[Any]) -> set[str]:
    return {item.name for item in items}
