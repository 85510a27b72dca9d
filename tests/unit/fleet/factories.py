"""Constructed fleets and observed states for the fleet unit tests (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from provisioner.fleet.model import (
    Action,
    ActionKind,
    Fleet,
    HostSpec,
    Observed,
    ObservedEntry,
    ObservedHost,
    ObservedRunner,
    RunnerDef,
    TokenRotation,
    marker,
)
from provisioner.registration.scope import parse_scope

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
URL = "https://gitlab.example.com"


def fleet(*runners: RunnerDef, hosts: tuple[str, ...] = ("vm-a", "vm-b", "vm-c")) -> Fleet:
    return Fleet(
        name="prod",
        gitlab_url=URL,
        hosts=tuple(HostSpec(h, f"10.0.0.{i}", "ops") for i, h in enumerate(hosts, start=1)),
        runners=runners,
    )


def rdef(name: str, *hosts: str, **kw: Any) -> RunnerDef:
    kw.setdefault("executor", "docker")
    kw.setdefault("tags", ("linux",))
    kw.setdefault("entry", {"docker": {"image": "python:3.12"}, "limit": 2})
    scope = parse_scope(kw.pop("scope", "instance"))
    return RunnerDef(name=name, hosts=hosts, scope=scope, **kw)


def owned(rd: RunnerDef, rid: int, **kw: Any) -> ObservedRunner:
    """The GitLab runner apply leaves for ``rd`` (override fields with ``kw``)."""
    fields: dict[str, Any] = {
        "id": rid,
        "description": rd.name,
        "runner_type": rd.scope.runner_type.value,
        "tags": tuple(reversed(rd.tags)),  # GitLab's order is not ours
        "paused": rd.paused,
        "locked": rd.locked,
        "run_untagged": rd.run_untagged,
        "access_level": rd.access_level.value,
        "maximum_timeout": rd.maximum_timeout,
        "maintenance_note": marker("prod", rd.name) + "\nadded by hand",
        "token_expires_at": NOW + timedelta(days=30),
    }
    fields.update(kw)
    return ObservedRunner(**fields)


def entry(rd: RunnerDef, rid: int | None, token: str = "glrt-AAA", **kw: Any) -> ObservedEntry:  # noqa: S107 (a fake token)
    """The config.toml entry apply writes for ``rd`` (plus defaults gitlab-runner adds)."""
    settings: dict[str, Any] = {"shell": "bash", "executor": rd.executor}
    for key, value in rd.entry.items():
        settings[key] = {**value, "pull_policy": ["always"]} if isinstance(value, dict) else value
    fields: dict[str, Any] = {
        "name": rd.name,
        "id": rid,
        "url": URL + "/",
        "executor": rd.executor,
        "settings": settings,
        "token": token,
        "token_obtained_at": NOW - timedelta(days=1),
    }
    fields.update(kw)
    return ObservedEntry(**fields)


def host(name: str, *entries: ObservedEntry, **kw: Any) -> ObservedHost:
    fields: dict[str, Any] = {
        "name": name,
        "reachable": True,
        "runner_installed": True,
        "service_active": True,
        "system_id": f"s_{name}",
        "entries": entries,
    }
    fields.update(kw)
    return ObservedHost(**fields)


def observed(runners: tuple[ObservedRunner, ...], *hosts: ObservedHost) -> Observed:
    return Observed(observed_at=NOW, runners=runners, hosts=hosts)


def rotation(before: int | None = None, every: int | None = None) -> TokenRotation:
    return TokenRotation(
        before_expiry=timedelta(days=before) if before is not None else None,
        every=timedelta(days=every) if every is not None else None,
    )


class FakeApply:
    """Carries out a plan on an :class:`Observed` the way ``fleet apply`` does (in memory)."""

    def __init__(self, fl: Fleet, state: Observed) -> None:
        self.fleet = fl
        self.runners = {r.id: r for r in state.runners}
        self.hosts = {h.name: h for h in state.hosts}
        self.next_id = max(self.runners, default=0) + 100
        self.tokens: dict[int, str] = {}

    def state(self) -> Observed:
        return observed(tuple(self.runners.values()), *self.hosts.values())

    def run(self, actions: tuple[Action, ...]) -> Observed:
        for action in actions:
            getattr(self, action.kind.name.lower())(action)
        return self.state()

    def _token(self, rid: int) -> str:
        for h in self.hosts.values():
            for e in h.entries:
                if e.id == rid and e.token:
                    return e.token
        return self.tokens.get(rid, f"glrt-{rid}")

    def _write(self, host_name: str, rd: RunnerDef, rid: int, token: str) -> None:
        h = self.hosts[host_name]
        kept = tuple(e for e in h.entries if e.name != rd.name and e.id != rid)
        self.hosts[host_name] = replace(h, entries=(*kept, entry(rd, rid, token)))

    def provision_host(self, a: Action) -> None:
        assert a.host is not None
        self.hosts[a.host] = replace(self.hosts[a.host], runner_installed=True, service_active=True)

    def adopt_runner(self, a: Action) -> None:
        assert a.runner_id is not None
        r = self.runners[a.runner_id]
        self.runners[r.id] = replace(r, maintenance_note=a.changes["maintenance_note"]["to"])

    def create_runner(self, a: Action) -> None:
        assert a.runner is not None
        rd = self.fleet.runner(a.runner)
        rid = self.next_id
        self.next_id += 1
        self.runners[rid] = owned(rd, rid, maintenance_note=marker("prod", rd.name))
        for h in a.hosts:
            self._write(h, rd, rid, f"glrt-new{rid}")

    def update_runner(self, a: Action) -> None:
        assert a.runner_id is not None
        values = {k: v["to"] for k, v in a.changes.items()}
        if "tags" in values:
            values["tags"] = tuple(values["tags"])
        self.runners[a.runner_id] = replace(self.runners[a.runner_id], **values)

    def rotate_token(self, a: Action) -> None:
        assert a.runner is not None
        assert a.runner_id is not None
        rd = self.fleet.runner(a.runner)
        self.runners[a.runner_id] = replace(
            self.runners[a.runner_id], token_expires_at=NOW + timedelta(days=90)
        )
        for h in a.hosts:
            self._write(h, rd, a.runner_id, f"glrt-rot{a.runner_id}")

    def write_entry(self, a: Action) -> None:
        assert a.runner is not None
        assert a.host is not None
        assert a.runner_id is not None
        self._write(a.host, self.fleet.runner(a.runner), a.runner_id, self._token(a.runner_id))

    def remove_entry(self, a: Action) -> None:
        assert a.host is not None
        h = self.hosts[a.host]
        self.hosts[a.host] = replace(h, entries=tuple(e for e in h.entries if e.id != a.runner_id))

    def delete_runner(self, a: Action) -> None:
        assert a.runner_id is not None
        del self.runners[a.runner_id]


KINDS = tuple(ActionKind)
