"""In-memory GitLab and hosts for the apply unit tests (each host's config.toml is a real file)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.errors import GitLabError, HostError
from provisioner.fleet.model import (
    Fleet,
    HostSpec,
    Observed,
    ObservedEntry,
    ObservedHost,
    ObservedRunner,
    RunnerDef,
)
from provisioner.gitlab.models import Namespace, RunnerCredentials, RunnerSpec, RunnerType
from provisioner.gitlab.runners import RunnerChangedError, RunnerManager
from provisioner.registration.scope import Scope
from provisioner.runner_config import ConfigStore

URL = "http://gitlab.test"
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    """A wall clock and a monotonic clock that only move when told to (or on sleep)."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


@dataclass
class FakeRunner:
    id: int
    token: str = field(repr=False)
    spec: RunnerSpec | None
    note: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    changed_since_plan: bool = False


@dataclass
class FakeGitLab:
    clock: Clock
    runners: dict[int, FakeRunner] = field(default_factory=dict)
    managers_seen: dict[int, dict[str, datetime]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail_create: bool = False
    next_id: int = 500

    def add(self, runner_id: int, *, note: str | None = None) -> str:
        token = f"glrt-{secrets.token_hex(10)}"
        self.runners[runner_id] = FakeRunner(runner_id, token, None, note)
        return token

    def resolve_group(self, path_or_id: str) -> Namespace:
        self.calls.append(("resolve_group", path_or_id))
        return Namespace(7, path_or_id, "group")

    def resolve_project(self, path_or_id: str) -> Namespace:
        self.calls.append(("resolve_project", path_or_id))
        return Namespace(42, path_or_id, "project")

    def create_runner(self, spec: RunnerSpec, *, marker: str | None = None) -> RunnerCredentials:
        self.calls.append(("create", spec.description))
        if self.fail_create:
            raise GitLabError("GitLab answered 403 while creating runner")
        self.next_id += 1
        token = f"glrt-{secrets.token_hex(10)}"
        self.runners[self.next_id] = FakeRunner(self.next_id, token, spec, marker)
        return RunnerCredentials(self.next_id, token, T0 + timedelta(days=30))

    def update_runner(self, runner_id: int, changes: Mapping[str, Any]) -> Any:
        self.calls.append(("update", runner_id, dict(changes)))
        runner = self.runners[runner_id]
        if "maintenance_note" in changes:
            runner.note = changes["maintenance_note"]
        runner.settings.update(changes)
        return None

    def reset_token(self, runner_id: int) -> RunnerCredentials:
        self.calls.append(("reset", runner_id))
        token = f"glrt-{secrets.token_hex(10)}"
        self.runners[runner_id].token = token
        return RunnerCredentials(runner_id, token, T0 + timedelta(days=30))

    def delete_runner(self, runner_id: int, *, unmodified_since: datetime | None = None) -> bool:
        self.calls.append(("delete", runner_id, unmodified_since))
        runner = self.runners.get(runner_id)
        if runner is None:
            return False
        if runner.changed_since_plan and unmodified_since is not None:
            raise RunnerChangedError(f"Runner {runner_id} was changed")
        del self.runners[runner_id]
        return True

    def managers(self, runner_id: int) -> tuple[RunnerManager, ...]:
        self.calls.append(("managers", runner_id))
        seen = self.managers_seen.get(runner_id, {})
        return tuple(RunnerManager(sid, when) for sid, when in sorted(seen.items()))

    def contact(self, system_id: str, token: str) -> None:
        """A host's gitlab-runner talks to GitLab with ``token``."""
        for runner in self.runners.values():
            if runner.token == token:
                self.managers_seen.setdefault(runner.id, {})[system_id] = self.clock.now()


@dataclass
class FakeHosts:
    """Each host's config.toml under ``root/<host>/config.toml``; writes make its runner call."""

    root: Path
    gitlab: FakeGitLab
    provision_errors: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # host -> SSH error
    silent: set[str] = field(default_factory=set)  # hosts whose gitlab-runner never reconnects
    provisioned: list[list[str]] = field(default_factory=list)
    transactions: dict[str, int] = field(default_factory=dict)

    def path(self, host: str) -> Path:
        return self.root / host / "config.toml"

    def provision(self, hosts: Sequence[HostSpec], *, forks: int) -> Mapping[str, str | None]:
        self.provisioned.append([h.name for h in hosts])
        return {h.name: self.provision_errors.get(h.name) for h in hosts}

    @contextlib.contextmanager
    def store(self, host: HostSpec) -> Iterator[ConfigStore]:
        if host.name in self.broken:
            raise HostError(f"cannot connect to {host.address}: {self.broken[host.name]}")
        self.path(host.name).parent.mkdir(parents=True, exist_ok=True)
        self.transactions[host.name] = self.transactions.get(host.name, 0) + 1
        yield ConfigStore(self.path(host.name))
        if host.name not in self.silent:
            # gitlab-runner reloads (SIGHUP) and checks for jobs with every token it holds.
            self.gitlab.clock.sleep(1)
            for entry in ConfigStore(self.path(host.name)).load().iter_runner_plain():
                self.gitlab.contact(f"s_{host.name}", str(entry.get("token")))

    def entries(self, host: str) -> list[dict[str, Any]]:
        if not self.path(host).exists():
            return []
        return list(ConfigStore(self.path(host)).load().iter_runner_plain())

    def observe(self, fleet: Fleet, clock: Clock) -> Observed:
        """What observe would read (apply needs the hosts' entries and the runners' notes)."""
        hosts = []
        for spec in fleet.hosts:
            found = tuple(
                ObservedEntry(
                    name=str(e["name"]),
                    id=e.get("id"),
                    url=e.get("url"),
                    executor=e.get("executor"),
                    settings={},
                    token=e.get("token"),
                    token_obtained_at=e.get("token_obtained_at"),
                )
                for e in self.entries(spec.name)
            )
            hosts.append(
                ObservedHost(
                    spec.name,
                    reachable=True,
                    runner_installed=True,
                    service_active=True,
                    system_id=f"s_{spec.name}",
                    entries=found,
                )
            )
        runners = tuple(
            ObservedRunner(
                id=r.id,
                description="",
                runner_type="instance_type",
                tags=(),
                paused=False,
                locked=True,
                run_untagged=False,
                access_level="not_protected",
                maximum_timeout=None,
                maintenance_note=r.note,
            )
            for r in self.gitlab.runners.values()
        )
        return Observed(clock.now(), runners, tuple(hosts))


def fleet_of(*runners: RunnerDef, hosts: Sequence[str] = ("vm-a", "vm-b", "vm-c")) -> Fleet:
    return Fleet(
        name="prod",
        gitlab_url=URL,
        hosts=tuple(HostSpec(h, f"10.0.0.{i}", "ops") for i, h in enumerate(hosts, 1)),
        runners=runners,
    )


def runner_def(name: str, *hosts: str, executor: str = "shell", **kw: Any) -> RunnerDef:
    return RunnerDef(
        name=name,
        hosts=hosts,
        executor=executor,
        scope=kw.pop("scope", Scope(RunnerType.INSTANCE)),
        **kw,
    )
