"""``fleet apply``: carry out a plan's actions, host by host failure isolation, and recap.

The order is :class:`~provisioner.fleet.model.ActionKind`'s, in four phases:

1. **provision**: one Ansible run over every host that needs it (forks = ``parallel``);
2. **GitLab**: adopt, create, update, and the token resets of the rotations;
3. **hosts**: one config.toml transaction per host (in parallel) with all of that host's entry
   changes: the entries of created runners, the new tokens of rotated ones, the repaired or
   missing entries (a missing one gets the token a sibling host holds), the removals; then every
   manager of a rotated runner must contact GitLab again after the reset;
4. **delete**: owned runners not in the file, with ``If-Unmodified-Since`` (a runner changed
   since the plan is skipped), and only once no host holds its entry any more.

A host that fails (Ansible, SSH, its config file) fails only the actions on that host; the
others go on. A token is reset only when every host of the runner can receive the new one, so
no host is left holding a dead token. A re-run plans and finishes what is left.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

from provisioner.errors import ProvisionerError
from provisioner.events import NULL_REPORTER, Event, Reporter
from provisioner.fleet import entries
from provisioner.fleet.model import (
    Action,
    ActionKind,
    Fleet,
    FleetPlan,
    HostSpec,
    Observed,
    ObservedEntry,
    RunnerDef,
    marker,
)
from provisioner.gitlab.models import Namespace, RunnerCredentials, RunnerSpec, RunnerType
from provisioner.gitlab.runners import RunnerChangedError, RunnerManager
from provisioner.registration.model import ConfigStorePort
from provisioner.runner_config import ConfigDocument

RECONNECT_TIMEOUT = 120.0

#: ``update-runner`` change names that are not the API's field names.
_API_FIELDS = {"tags": "tag_list"}


class ActionStatus(StrEnum):
    """How one action came out."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ActionResult:
    """One action of the plan and its outcome (``detail`` says why it failed or was skipped)."""

    action: Action
    status: ActionStatus
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON types (no secret: actions and details hold none)."""
        return {**self.action.to_json(), "status": self.status.value, "detail": self.detail}


@dataclass(frozen=True)
class ApplyResult:
    """Every action's outcome, in plan order, and the hosts the plan could not reach."""

    fleet: str
    results: tuple[ActionResult, ...]
    unreachable: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def converged(self) -> bool:
        """True when every action went through and every host was reached."""
        return not self.unreachable and all(r.status is ActionStatus.OK for r in self.results)

    def count(self, status: ActionStatus) -> int:
        """How many actions ended with ``status``."""
        return sum(1 for r in self.results if r.status is status)

    def to_json(self) -> dict[str, Any]:
        """The recap as one JSON document."""
        return {
            "fleet": self.fleet,
            "converged": self.converged,
            "actions": [r.to_json() for r in self.results],
            "unreachable": dict(self.unreachable),
            "summary": {status.value: self.count(status) for status in ActionStatus},
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class ActionFinished(Event):
    """Progress: one action is done."""

    result: ActionResult


class FleetGitLab(Protocol):
    """The GitLab calls apply makes (:class:`~provisioner.gitlab.client.GitLabAPI` fits)."""

    def resolve_group(self, path_or_id: str) -> Namespace:
        """A group's id."""
        ...

    def resolve_project(self, path_or_id: str) -> Namespace:
        """A project's id."""
        ...

    def create_runner(self, spec: RunnerSpec, *, marker: str | None = None) -> RunnerCredentials:
        """Create a runner carrying ``marker`` as its maintenance note."""
        ...

    def update_runner(self, runner_id: int, changes: Mapping[str, Any]) -> Any:
        """Change server-side settings."""
        ...

    def reset_token(self, runner_id: int) -> RunnerCredentials:
        """A new token; the old one stops working."""
        ...

    def delete_runner(self, runner_id: int, *, unmodified_since: datetime | None = None) -> bool:
        """Delete (412 raises RunnerChangedError); False when already gone."""
        ...

    def managers(self, runner_id: int) -> tuple[RunnerManager, ...]:
        """The runner's managers and when each last contacted GitLab."""
        ...


class FleetHosts(Protocol):
    """The hosts' side: Ansible and each host's config.toml."""

    def provision(self, hosts: Sequence[HostSpec], *, forks: int) -> Mapping[str, str | None]:
        """Provision ``hosts`` in one run; per host ``None`` when it converged, else the error."""
        ...

    def store(self, host: HostSpec) -> contextlib.AbstractContextManager[ConfigStorePort]:
        """The host's config.toml store, open for the duration of the ``with``."""
        ...


@dataclass(frozen=True)
class ApplySettings:
    """How apply paces itself."""

    parallel: int = 4
    reconnect_timeout: float = RECONNECT_TIMEOUT
    poll_interval: float = 2.0
    #: ``If-Unmodified-Since`` of the deletes: when the state the plan rests on was read.
    unmodified_since: datetime | None = None


def apply(
    fleet: Fleet,
    plan: FleetPlan,
    observed: Observed,
    *,
    gitlab: FleetGitLab,
    hosts: FleetHosts,
    settings: ApplySettings | None = None,
    report: Reporter[ActionFinished] = NULL_REPORTER,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ApplyResult:
    """Carry out ``plan`` (made from ``observed``) and return every action's outcome."""
    run = _Run(
        fleet=fleet,
        plan=plan,
        observed=observed,
        gitlab=gitlab,
        hosts=hosts,
        settings=settings or ApplySettings(),
        report=report,
        now=now,
    )
    start = clock()
    run.provision()
    run.gitlab_phase()
    run.hosts_phase()
    run.wait_for_managers(clock=clock, sleep=sleep)
    run.delete_phase()
    return ApplyResult(
        fleet=fleet.name,
        results=tuple(run.outcome(a) for a in plan.actions),
        unreachable=dict(plan.unreachable),
        seconds=clock() - start,
    )


EntryChange = Callable[[ConfigDocument], None]
_Ident = tuple[ActionKind, str | None, int | None, str | None]


def _ident(action: Action) -> _Ident:
    """What tells two actions apart (two duplicates of one runner share a key, not an id)."""
    return (action.kind, action.runner, action.runner_id, action.host)


class _Run:
    """The state of one apply: outcomes so far, failed hosts, tokens obtained."""

    def __init__(
        self,
        *,
        fleet: Fleet,
        plan: FleetPlan,
        observed: Observed,
        gitlab: FleetGitLab,
        hosts: FleetHosts,
        settings: ApplySettings,
        report: Reporter[ActionFinished],
        now: Callable[[], datetime],
    ) -> None:
        self.fleet, self.plan, self.observed = fleet, plan, observed
        self.gitlab, self.hosts, self.settings = gitlab, hosts, settings
        self.report, self.now = report, now
        self.done: dict[_Ident, ActionResult] = {}
        self.errors: dict[_Ident, list[str]] = {}  # failures of an action's host parts
        # Hosts the plan could not reach count as failed: nothing is sent their way.
        self.failed_hosts: dict[str, str] = dict(plan.unreachable)
        self.tokens: dict[str, RunnerCredentials] = {}  # runner name -> new credentials
        # Each rotated runner's managers' last contact before the reset, in GitLab's own clock.
        self.contact_before: dict[_Ident, dict[str, datetime | None]] = {}
        self.pending: dict[str, list[tuple[Action, EntryChange]]] = {}

    # -- bookkeeping

    def of(self, kind: ActionKind) -> list[Action]:
        return [a for a in self.plan.actions if a.kind is kind]

    def finish(self, action: Action, status: ActionStatus, detail: str = "") -> None:
        if _ident(action) in self.done:
            return
        result = ActionResult(action, status, detail)
        self.done[_ident(action)] = result
        self.report(ActionFinished(result))

    def outcome(self, action: Action) -> ActionResult:
        return self.done.get(_ident(action)) or ActionResult(
            action, ActionStatus.SKIPPED, "not reached"
        )

    def guarded(self, action: Action, step: Callable[[], str]) -> None:
        """Run ``step``; its return is the ok detail, a runnerctl error fails the action."""
        try:
            detail = step()
        except RunnerChangedError:
            self.finish(action, ActionStatus.SKIPPED, "changed since the plan")
        except ProvisionerError as exc:
            self.finish(action, ActionStatus.FAILED, exc.message)
        else:
            self.finish(action, ActionStatus.OK, detail)

    def host_down(self, names: Sequence[str]) -> str | None:
        down = [f"host {h} failed: {self.failed_hosts[h]}" for h in names if h in self.failed_hosts]
        return "; ".join(down) or None

    def runner_hosts(self, action: Action) -> tuple[str, ...]:
        if action.hosts:
            return action.hosts
        return self.fleet.runner(str(action.runner)).hosts

    # -- phase 1: Ansible

    def provision(self) -> None:
        actions = self.of(ActionKind.PROVISION_HOST)
        if not actions:
            return
        specs = [self.fleet.host(str(a.host)) for a in actions]
        try:
            outcome = self.hosts.provision(specs, forks=max(1, self.settings.parallel))
        except ProvisionerError as exc:
            outcome = {spec.name: exc.message for spec in specs}
        for action in actions:
            host = str(action.host)
            error = outcome.get(host, "no recap from Ansible")
            if error is None:
                self.finish(action, ActionStatus.OK)
            else:
                self.failed_hosts[host] = error
                self.finish(action, ActionStatus.FAILED, error)

    # -- phase 2: GitLab

    def gitlab_phase(self) -> None:
        for action in self.of(ActionKind.ADOPT_RUNNER):
            self.guarded(action, partial(self.adopt, action))
        for action in self.of(ActionKind.CREATE_RUNNER):
            self.start_create(action)
        for action in self.of(ActionKind.UPDATE_RUNNER):
            self.guarded(action, partial(self.update, action))
        for action in self.of(ActionKind.ROTATE_TOKEN):
            self.start_rotate(action)

    def adopt(self, action: Action) -> str:
        assert action.runner_id is not None
        old = next(
            (r.maintenance_note for r in self.observed.runners if r.id == action.runner_id), None
        )
        note = marker(self.fleet.name, str(action.runner))
        self.gitlab.update_runner(
            action.runner_id, {"maintenance_note": f"{note}\n{old}" if old else note}
        )
        return f"runner {action.runner_id} marked"

    def update(self, action: Action) -> str:
        assert action.runner_id is not None
        body = {
            _API_FIELDS.get(name, name): _api_value(
                change.get("to") if isinstance(change, Mapping) else change
            )
            for name, change in action.changes.items()
        }
        self.gitlab.update_runner(action.runner_id, body)
        return ", ".join(sorted(action.changes))

    def start_create(self, action: Action) -> None:
        runner = self.fleet.runner(str(action.runner))
        targets = self.runner_hosts(action)
        usable = [h for h in targets if h not in self.failed_hosts]
        if not usable:
            self.finish(action, ActionStatus.SKIPPED, self.host_down(targets) or "no host")
            return
        try:
            spec = _spec(runner, self.gitlab)
            creds = self.gitlab.create_runner(spec, marker=marker(self.fleet.name, runner.name))
        except ProvisionerError as exc:
            self.finish(action, ActionStatus.FAILED, exc.message)
            return
        self.tokens[runner.name] = creds
        self.fail_parts(action, targets)
        for host in usable:
            self.queue(host, action, self.token_writer(runner, creds))

    def start_rotate(self, action: Action) -> None:
        assert action.runner_id is not None
        targets = self.runner_hosts(action)
        down = self.host_down(targets)
        if down:
            # A reset now would leave that host with a dead token: wait for a run that reaches it.
            self.finish(action, ActionStatus.SKIPPED, down)
            return
        runner = self.fleet.runner(str(action.runner))
        try:
            before = {m.system_id: m.contacted_at for m in self.gitlab.managers(action.runner_id)}
            creds = self.gitlab.reset_token(action.runner_id)
        except ProvisionerError as exc:
            self.finish(action, ActionStatus.FAILED, exc.message)
            return
        self.tokens[runner.name] = creds
        self.contact_before[_ident(action)] = before
        for host in targets:
            self.queue(host, action, self.token_writer(runner, creds))

    def fail_parts(self, action: Action, targets: Sequence[str]) -> None:
        down = self.host_down(targets)
        if down:
            self.errors.setdefault(_ident(action), []).append(down)

    def queue(self, host: str, action: Action, change: EntryChange) -> None:
        self.pending.setdefault(host, []).append((action, change))

    def token_writer(self, runner: RunnerDef, creds: RunnerCredentials) -> EntryChange:
        def change(doc: ConfigDocument) -> None:
            entries.write_entry(doc, self.fleet, runner, creds, now=self.now)

        return change

    # -- phase 3: the hosts

    def hosts_phase(self) -> None:
        for action in self.of(ActionKind.WRITE_ENTRY):
            self.plan_write(action)
        for action in self.of(ActionKind.REMOVE_ENTRY):
            host = str(action.host)
            if host in self.failed_hosts:
                self.finish(action, ActionStatus.FAILED, str(self.host_down([host])))
                continue
            rid = action.runner_id
            assert rid is not None
            self.queue(host, action, partial(_drop, runner_id=rid))
        with ThreadPoolExecutor(max_workers=max(1, self.settings.parallel)) as pool:
            outcomes = list(pool.map(self.write_host, sorted(self.pending)))
        for host, error in outcomes:
            for action, _change in self.pending[host]:
                if error is not None:
                    self.errors.setdefault(_ident(action), []).append(f"{host}: {error}")
        for action in (
            *self.of(ActionKind.CREATE_RUNNER),
            *self.of(ActionKind.WRITE_ENTRY),
            *self.of(ActionKind.REMOVE_ENTRY),
        ):
            self.close(action)

    def close(self, action: Action, detail: str = "") -> None:
        failures = self.errors.get(_ident(action))
        if failures:
            self.finish(action, ActionStatus.FAILED, "; ".join(failures))
        else:
            self.finish(action, ActionStatus.OK, detail)

    def plan_write(self, action: Action) -> None:
        host = str(action.host)
        if host in self.failed_hosts:
            self.finish(action, ActionStatus.FAILED, str(self.host_down([host])))
            return
        runner = self.fleet.runner(str(action.runner))
        fresh = self.tokens.get(runner.name)
        if fresh is not None:  # created or rotated in this run: its writer has the token
            self.queue(host, action, self.token_writer(runner, fresh))
            return
        rid = action.runner_id
        assert rid is not None
        sibling = self.sibling_entry(runner, rid)
        here = next((h for h in self.observed.hosts if h.name == host), None)
        has_entry = here is not None and any(e.id == rid for e in here.entries)
        if not has_entry and sibling is None:
            # Nothing to copy: fail this action alone, not the host's whole transaction.
            self.finish(action, ActionStatus.FAILED, str(_NoToken(rid)))
            return
        fleet = self.fleet

        def change(doc: ConfigDocument) -> None:
            if entries.repair_entry(doc, fleet, runner, rid):
                return
            if sibling is None:
                raise _NoToken(rid)
            creds = RunnerCredentials(rid, str(sibling.token), sibling.token_expires_at)
            obtained = sibling.token_obtained_at
            entries.write_entry(doc, fleet, runner, creds, now=lambda: obtained or self.now())

        self.queue(host, action, change)

    def sibling_entry(self, runner: RunnerDef, rid: int) -> ObservedEntry | None:
        for host in self.observed.hosts:
            if host.name in runner.hosts:
                for entry in host.entries:
                    if entry.id == rid and entry.token:
                        return entry
        return None

    def write_host(self, host: str) -> tuple[str, str | None]:
        """One transaction with all of ``host``'s entry changes; the error, if any."""
        changes = [change for _action, change in self.pending[host]]

        def transaction(doc: ConfigDocument) -> None:
            for change in changes:
                change(doc)

        try:
            with self.hosts.store(self.fleet.host(host)) as store:
                store.update(transaction, create=True)
        except _NoToken as exc:
            return host, str(exc)
        except ProvisionerError as exc:
            return host, exc.message
        except OSError as exc:
            return host, f"cannot write its config: {exc.strerror or exc}"
        return host, None

    def wait_for_managers(
        self, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        """Each rotated runner's managers must contact GitLab after the reset (timeout)."""
        waiting: dict[_Ident, Action] = {}
        for action in self.of(ActionKind.ROTATE_TOKEN):
            if _ident(action) in self.done:
                continue
            if self.errors.get(_ident(action)):
                self.close(action)
            else:
                waiting[_ident(action)] = action
        deadline = clock() + self.settings.reconnect_timeout
        while waiting:
            for key, action in list(waiting.items()):
                try:
                    missing = self.silent_hosts(action)
                except ProvisionerError as exc:
                    self.finish(action, ActionStatus.FAILED, exc.message)
                    del waiting[key]
                    continue
                if not missing:
                    self.finish(action, ActionStatus.OK, "every manager reconnected")
                    del waiting[key]
                elif clock() >= deadline:
                    self.finish(
                        action,
                        ActionStatus.FAILED,
                        f"no contact from {', '.join(missing)} within "
                        f"{self.settings.reconnect_timeout:.0f} s of the token reset",
                    )
                    del waiting[key]
            if waiting:
                sleep(self.settings.poll_interval)

    def silent_hosts(self, action: Action) -> list[str]:
        """The hosts of a rotated runner whose manager has not contacted GitLab since the reset."""
        assert action.runner_id is not None
        # A contact newer than the manager's last one before the reset can only have used the
        # new token (GitLab refuses the old one): both times are GitLab's, whatever our clock.
        before = self.contact_before[_ident(action)]
        fresh = [m for m in self.gitlab.managers(action.runner_id) if _newer(m, before)]
        fresh_ids = {m.system_id for m in fresh}
        targets = self.runner_hosts(action)
        system_ids = {h.name: h.system_id for h in self.observed.hosts}
        known = [h for h in targets if system_ids.get(h)]
        missing = [h for h in known if system_ids[h] not in fresh_ids]
        unknown = [h for h in targets if not system_ids.get(h)]
        # A host whose system id was not read (new host) counts by number of fresh managers.
        others = len(fresh_ids - {system_ids[h] for h in known})
        return missing + unknown[others:]

    # -- phase 4: deletes

    def delete_phase(self) -> None:
        for action in self.of(ActionKind.DELETE_RUNNER):
            held = [
                r
                for r in self.done.values()
                if r.action.kind is ActionKind.REMOVE_ENTRY
                and r.action.runner_id == action.runner_id
                and r.status is not ActionStatus.OK
            ]
            if held:
                hosts = ", ".join(str(r.action.host) for r in held)
                self.finish(action, ActionStatus.SKIPPED, f"its entry is still on {hosts}")
                continue
            self.guarded(action, partial(self.delete, action))

    def delete(self, action: Action) -> str:
        assert action.runner_id is not None
        since = self.settings.unmodified_since or self.plan.created_at
        gone = self.gitlab.delete_runner(action.runner_id, unmodified_since=since)
        return "" if gone else "already deleted"


class _NoToken(ProvisionerError):
    def __init__(self, runner_id: int) -> None:
        super().__init__(
            f"no host holds the token of runner {runner_id} to copy",
            hint="Plan again: the runner's token will be rotated.",
        )


def _drop(doc: ConfigDocument, runner_id: int) -> None:
    entries.remove_entry(doc, runner_id)


def _api_value(value: Any) -> Any:
    if isinstance(value, list | tuple | set | frozenset):
        return sorted(str(v) for v in value)
    return value.value if isinstance(value, StrEnum) else value


def _spec(runner: RunnerDef, gitlab: FleetGitLab) -> RunnerSpec:
    scope = runner.scope
    namespace: int | None = None
    if scope.runner_type is RunnerType.GROUP:
        namespace = scope.numeric_id or gitlab.resolve_group(str(scope.ref)).id
    elif scope.runner_type is RunnerType.PROJECT:
        namespace = scope.numeric_id or gitlab.resolve_project(str(scope.ref)).id
    return RunnerSpec(
        runner_type=scope.runner_type,
        description=runner.name,
        group_id=namespace if scope.runner_type is RunnerType.GROUP else None,
        project_id=namespace if scope.runner_type is RunnerType.PROJECT else None,
        tag_list=tuple(sorted(set(runner.tags))),
        run_untagged=runner.run_untagged,
        locked=runner.locked,
        paused=runner.paused,
        access_level=runner.access_level,
        maximum_timeout=runner.maximum_timeout,
    )


def _newer(manager: RunnerManager, before: Mapping[str, datetime | None]) -> bool:
    """True when ``manager`` contacted GitLab after its last contact in ``before``."""
    last = before.get(manager.system_id)
    return manager.contacted_at is not None and (last is None or manager.contacted_at > last)
