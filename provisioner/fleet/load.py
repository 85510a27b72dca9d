"""Read ``FLEET.toml`` into a :class:`~provisioner.fleet.model.Fleet`, or say where it is wrong.

Every problem is reported as ``FLEET.toml:LINE:COL: message`` (the positions come from the same
scanner ``config validate`` uses), and a bad file is a usage error (exit 2): the user named it.

Two layers check a file:

* the structure (keys, types, enums, patterns) is the pydantic model below; the JSON Schema that
  ships with the package (``fleet.schema.json``, for editors and CI linters) is generated from it,
  and a unit test keeps the two identical;
* the semantic rules a schema cannot say: unknown or duplicate hosts and runners, the same
  address given to two hosts, scopes (:func:`provisioner.registration.scope.parse_scope`), a
  ``vars_file`` that cannot be read.

``[fleet.defaults]`` holds defaults for every ``[[runners]]`` (any runner key but ``name`` and
``host(s)``); a runner's own key wins, tables included (no deep merge).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioner.errors import ProvisionerError, UsageError
from provisioner.fleet.model import Fleet, HostSpec, RunnerDef, TokenRotation
from provisioner.gitlab.models import AccessLevel
from provisioner.hosts.provision import load_vars
from provisioner.mappings import deep_merge
from provisioner.registration.scope import parse_scope
from provisioner.runner_config.document import (
    ConfigSyntaxError,
    Location,
    Path_,
    locate_keys,
    nearest_location,
    parse_text,
)
from provisioner.runner_config.validate import display_path

SCHEMA_FILE = "fleet.schema.json"
DURATION_PATTERN = r"^[0-9]+[smhd]$"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
EXECUTORS = ("shell", "docker", "kubernetes")
DEFAULT_CONFIG_PATH = "/etc/gitlab-runner/config.toml"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# GitLab refuses a maximum_timeout below ten minutes.
MIN_TIMEOUT = 600


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d`` -> a timedelta (the pattern is checked before)."""
    match = re.fullmatch(r"([0-9]+)([smhd])", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


# --------------------------------------------------------------------------- the structure


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RotationModel(_Strict):
    """``token_rotation``: ``before_expiry`` and/or ``every`` (durations such as ``7d``)."""

    before_expiry: str | None = Field(default=None, pattern=DURATION_PATTERN)
    every: str | None = Field(default=None, pattern=DURATION_PATTERN)


class RunnerSettingsModel(_Strict):
    """The keys a ``[[runners]]`` entry and ``[fleet.defaults]`` share."""

    executor: Literal["shell", "docker", "kubernetes"] | None = None
    scope: str | None = Field(default=None, description="instance, group:PATH or project:PATH")
    tags: list[str] | None = None
    run_untagged: bool | None = None
    locked: bool | None = None
    paused: bool | None = None
    access_level: Literal["not_protected", "ref_protected"] | None = None
    maximum_timeout: int | None = Field(default=None, ge=MIN_TIMEOUT)
    token_rotation: RotationModel | None = None
    config: dict[str, Any] | None = Field(
        default=None, description="Extra keys of the config.toml [[runners]] entry"
    )
    docker: dict[str, Any] | None = None
    kubernetes: dict[str, Any] | None = None


class RunnerModel(RunnerSettingsModel):
    """One ``[[runners]]``: one GitLab runner, one config.toml entry on each of its hosts."""

    name: str = Field(min_length=1, max_length=255)
    host: str | None = None
    hosts: list[str] | None = Field(default=None, min_length=1)


class HostModel(_Strict):
    """One ``[[hosts]]``: an SSH target and what the playbook applies to it."""

    name: str = Field(pattern=HOST_NAME_PATTERN)
    address: str = Field(min_length=1, description="host or host:port")
    user: str | None = None
    roles: list[Literal["docker", "python", "cosign"]] | None = Field(
        default=None,
        description="the optional playbook roles for this host (all when not given); "
        "common, gitlab_runner and runner_config always run",
    )
    vars: dict[str, Any] = Field(default_factory=dict)
    config_path: str = Field(default=DEFAULT_CONFIG_PATH, pattern=r"^/")


class FleetSectionModel(_Strict):
    """``[fleet]``: the name (ownership marker), GitLab, and defaults."""

    name: str = Field(pattern=NAME_PATTERN)
    gitlab_url: str = Field(pattern=r"^https?://[^\s/]+")
    ssh_user: str | None = None
    vars_file: str | None = None
    defaults: RunnerSettingsModel = Field(default_factory=RunnerSettingsModel)


class EnvModel(_Strict):
    """``[env.NAME]``: merged over the file with ``--env NAME`` (hosts and runners by name)."""

    fleet: dict[str, Any] | None = None
    hosts: dict[str, dict[str, Any]] | None = None
    runners: dict[str, dict[str, Any]] | None = None


class FleetFileModel(_Strict):
    """A whole ``FLEET.toml``."""

    model_config = ConfigDict(extra="forbid", strict=True, title="runnerctl FLEET.toml")

    fleet: FleetSectionModel
    hosts: list[HostModel] = Field(default_factory=list)
    runners: list[RunnerModel] = Field(default_factory=list)
    env: dict[str, EnvModel] = Field(default_factory=dict)


def schema() -> dict[str, Any]:
    """FLEET.toml's JSON Schema, generated from the model (what ``fleet.schema.json`` holds)."""
    generated = FleetFileModel.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}


@cache
def shipped_schema() -> dict[str, Any]:
    """The JSON Schema shipped as package data."""
    text = resources.files("provisioner.fleet").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class FleetIssue:
    """One problem of a FLEET.toml: where it is and what is wrong."""

    path: str
    message: str
    location: Location | None = None

    def render(self, source: str) -> str:
        """``source:line:col: message`` (the position left out when unknown)."""
        where = f"{source}:{self.location}" if self.location else source
        return f"{where}: {self.message}"


class FleetFileError(UsageError):
    """FLEET.toml is unreadable or invalid (exit 2: a bad input file named by the user)."""


@dataclass(frozen=True)
class FleetReport:
    """The verdict on one FLEET.toml: its issues, and the fleet when there are none."""

    source: str
    issues: tuple[FleetIssue, ...]
    fleet: Fleet | None = None

    @property
    def valid(self) -> bool:
        """True when the file has no problem."""
        return not self.issues

    def raise_if_invalid(self) -> Fleet:
        """The fleet, or a :class:`FleetFileError` listing every problem."""
        if self.fleet is not None and self.valid:
            return self.fleet
        count = len(self.issues)
        lines = "\n".join(i.render(self.source) for i in self.issues)
        raise FleetFileError(
            f"{self.source} is not a valid fleet file ({count} error{'s' if count != 1 else ''}):"
            f"\n{lines}",
            hint=f"Fix the file; `runnerctl fleet validate {self.source}` lists every problem.",
        )


def check_file(path: Path, *, env: str | None = None) -> FleetReport:
    """Read and check a FLEET.toml file (with the ``[env.NAME]`` overlay of ``env``).

    Raises:
        FleetFileError: the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetFileError(
            f"Cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
            hint="Give the path of a FLEET.toml file (see docs/fleet.md for the format).",
        ) from None
    return check_text(text, source=str(path), base_dir=path.parent, env=env)


def load_fleet(path: Path, *, env: str | None = None) -> Fleet:
    """The fleet of a FLEET.toml file (raises :class:`FleetFileError` when it is invalid)."""
    return check_file(path, env=env).raise_if_invalid()


def check_text(
    text: str,
    *,
    source: str = "FLEET.toml",
    base_dir: Path | None = None,
    env: str | None = None,
) -> FleetReport:
    """Check FLEET.toml text; the report holds the :class:`Fleet` when it is valid."""
    try:
        data = parse_text(text, source=source).unwrap()
    except ConfigSyntaxError as exc:
        issue = FleetIssue("", f"TOML syntax error: {exc.detail}", exc.location)
        return FleetReport(source, (issue,))
    checker = _Checker(data, locate_keys(text), base_dir)
    fleet = checker.run(source, env)
    return FleetReport(source, tuple(checker.issues), fleet if not checker.issues else None)


class _Checker:
    def __init__(
        self, data: dict[str, Any], where: Mapping[Path_, Location], base_dir: Path | None
    ) -> None:
        self.data = data
        self.where = where
        self.base_dir = base_dir
        self.issues: list[FleetIssue] = []
        # Where an overlaid value was written: its path after the merge -> its path in [env.X].
        self.origins: dict[Path_, Path_] = {}

    def error(self, path: Path_, message: str) -> None:
        path = self._origin(path)
        self.issues.append(
            FleetIssue(display_path(path), message, nearest_location(self.where, path))
        )

    # ---- structure

    def run(self, source: str, env: str | None) -> Fleet | None:
        if env is not None:
            self._overlay(env)
            if self.issues:
                return None
        merged = self._merge_defaults()
        try:
            model = FleetFileModel.model_validate(merged)
        except ValidationError as exc:
            for err in exc.errors():
                self._structural(tuple(err["loc"]), err["type"], err["msg"])
            return None
        return self._semantic(model, source)

    def _merge_defaults(self) -> dict[str, Any]:
        """The data with ``[fleet.defaults]`` copied into each runner that lacks the key."""
        fleet = self.data.get("fleet")
        defaults = fleet.get("defaults") if isinstance(fleet, dict) else None
        runners = self.data.get("runners")
        if not isinstance(defaults, dict) or not isinstance(runners, list):
            return self.data
        merged_runners = [{**defaults, **r} if isinstance(r, dict) else r for r in runners]
        return {**self.data, "runners": merged_runners}

    def _overlay(self, env: str) -> None:
        """Merge ``[env.<env>]`` over the data (tables deeply, hosts and runners by name)."""
        envs = self.data.get("env")
        overlay = envs.get(env) if isinstance(envs, dict) else None
        if not isinstance(overlay, dict):
            known = ", ".join(sorted(envs)) if isinstance(envs, dict) and envs else "none"
            self.error(("env",), f"--env {env}: no [env.{env}] table in the file (known: {known})")
            return
        base: Path_ = ("env", env)
        data = dict(self.data)
        if isinstance(overlay.get("fleet"), dict) and isinstance(data.get("fleet"), dict):
            data["fleet"] = deep_merge(data["fleet"], overlay["fleet"])
            self.origins.update({("fleet", k): (*base, "fleet", k) for k in overlay["fleet"]})
        for section in ("hosts", "runners"):
            changes = overlay.get(section)
            items = list(data.get(section) or [])
            for name, values in (changes or {}).items() if isinstance(changes, dict) else ():
                where: Path_ = (*base, section, name)
                index = next(
                    (
                        i
                        for i, item in enumerate(items)
                        if isinstance(item, dict) and item.get("name") == name
                    ),
                    None,
                )
                if index is None or not isinstance(values, dict):
                    self.error(
                        where, f"{display_path(where)}: no {section[:-1]} {name!r} in the file"
                    )
                    continue
                items[index] = deep_merge(items[index], values)
                self.origins.update({(section, index, k): (*where, k) for k in values})
            data[section] = items
        self.data = data

    def _origin(self, path: Path_) -> Path_:
        """Where an overlaid value was written (``[env.X]``), else ``path`` itself."""
        for size in range(len(path), 0, -1):
            origin = self.origins.get(path[:size])
            if origin is not None:
                return (*origin, *path[size:])
        return path

    def _source_path(self, loc: Path_) -> Path_:
        """Where a value came from: the runner itself, or ``[fleet.defaults]``."""
        if len(loc) >= 3 and loc[0] == "runners" and isinstance(loc[1], int):
            runners = self.data.get("runners")
            own = runners[loc[1]] if isinstance(runners, list) else None
            if isinstance(own, dict) and loc[2] not in own:
                return ("fleet", "defaults", *loc[2:])
        return loc

    def _structural(self, loc: Path_, kind: str, msg: str) -> None:
        path = self._origin(self._source_path(loc))
        if kind == "extra_forbidden":
            parent, key = path[:-1], path[-1]
            message = f"unknown key {key!r}" + (f" in {display_path(parent)}" if parent else "")
        elif kind == "missing":
            message = f"{display_path(path)}: required key missing"
        else:
            message = f"{display_path(path)}: {msg}"
        self.error(path, message)

    # ---- semantics

    def _semantic(self, model: FleetFileModel, source: str) -> Fleet | None:
        fleet_vars = self._vars_file(model.fleet.vars_file)
        hosts = self._hosts(model, fleet_vars)
        runners = self._runners(model, {h.name for h in model.hosts})
        if self.issues:
            return None
        return Fleet(
            name=model.fleet.name,
            gitlab_url=model.fleet.gitlab_url.rstrip("/"),
            hosts=tuple(hosts),
            runners=tuple(runners),
            source=source,
        )

    def _vars_file(self, name: str | None) -> dict[str, Any]:
        if name is None:
            return {}
        path = Path(name) if self.base_dir is None else self.base_dir / name
        try:
            return load_vars(path)  # the same reading and checks as `host provision --vars`
        except UsageError as exc:
            self.error(("fleet", "vars_file"), f"fleet.vars_file: {exc.message}")
            return {}

    def _hosts(self, model: FleetFileModel, fleet_vars: Mapping[str, Any]) -> list[HostSpec]:
        hosts: list[HostSpec] = []
        seen: dict[str, Path_] = {}
        addresses: dict[tuple[str, int], str] = {}
        for i, h in enumerate(model.hosts):
            path: Path_ = ("hosts", i)
            if not self._first("host", h.name, path, seen):
                continue
            address, port = self._address(h.address, (*path, "address"))
            user = h.user or model.fleet.ssh_user
            if user is None:
                self.error(
                    path, f"host {h.name!r} has no user: set hosts[{i}].user or fleet.ssh_user"
                )
                continue
            other = addresses.setdefault((address.lower(), port), h.name)
            if other != h.name:
                self.error(
                    (*path, "address"),
                    f"host {h.name!r} has the address of host {other!r} ({h.address})",
                )
            hosts.append(
                HostSpec(
                    name=h.name,
                    address=address,
                    user=user,
                    port=port,
                    roles=tuple(h.roles) if h.roles is not None else None,
                    vars={**fleet_vars, **h.vars},
                    config_path=h.config_path,
                )
            )
        return hosts

    def _first(self, kind: str, name: str, path: Path_, seen: dict[str, Path_]) -> bool:
        """True the first time ``name`` is seen; else report the duplicate."""
        if name in seen:
            first = display_path(seen[name])
            self.error((*path, "name"), f"{kind} {name!r} is defined twice (first: {first})")
            return False
        seen[name] = path
        return True

    def _address(self, text: str, path: Path_) -> tuple[str, int]:
        host, sep, port = text.rpartition(":")
        if not sep or text.startswith("["):
            return text.strip("[]"), 22
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            self.error(path, f"{display_path(path)}: {text!r} is not host or host:port")
            return text, 22
        return host.strip("[]"), int(port)

    def _runners(self, model: FleetFileModel, host_names: set[str]) -> list[RunnerDef]:
        runners: list[RunnerDef] = []
        seen: dict[str, Path_] = {}
        for i, r in enumerate(model.runners):
            path: Path_ = ("runners", i)
            if not self._first("runner", r.name, path, seen):
                continue
            hosts = self._runner_hosts(r, path, host_names)
            if r.executor is None:
                self.error(path, f"runner {r.name!r}: executor missing ({', '.join(EXECUTORS)})")
                continue
            scope_text = r.scope or "instance"
            try:
                scope = parse_scope(scope_text)
            except ProvisionerError as exc:
                self.error(self._source_path((*path, "scope")), f"runner {r.name!r}: {exc.message}")
                continue
            other = next(
                (t for t in ("docker", "kubernetes") if t != r.executor and getattr(r, t)), None
            )
            if other is not None:
                self.error(
                    self._source_path((*path, other)),
                    f"runner {r.name!r}: a [runners.{other}] table with executor {r.executor!r}",
                )
            if hosts is None:
                continue
            if r.executor == "docker":
                self._docker_hosts(r.name, hosts, path, model)
            runners.append(self._runner_def(r, hosts, scope))
        return runners

    def _docker_hosts(
        self, name: str, hosts: tuple[str, ...], path: Path_, model: FleetFileModel
    ) -> None:
        """A docker-executor runner needs the docker role on each of its hosts."""
        for host in model.hosts:
            if host.name in hosts and host.roles is not None and "docker" not in host.roles:
                self.error(
                    path,
                    f"runner {name!r}: the docker executor on host {host.name!r}, "
                    "whose roles leave out docker",
                )

    def _runner_hosts(self, r: RunnerModel, path: Path_, known: set[str]) -> tuple[str, ...] | None:
        if (r.host is None) == (r.hosts is None):
            self.error(path, f"runner {r.name!r}: give either host or hosts")
            return None
        names = [r.host] if r.host is not None else list(r.hosts or ())
        key = "host" if r.host is not None else "hosts"
        ok = True
        for j, name in enumerate(names):
            where: Path_ = (*path, key) if key == "host" else (*path, key, j)
            if name not in known:
                self.error(where, f"runner {r.name!r}: unknown host {name!r}")
                ok = False
            elif names.index(name) != j:
                self.error(where, f"runner {r.name!r}: host {name!r} listed twice")
                ok = False
        return tuple(names) if ok else None

    def _runner_def(self, r: RunnerModel, hosts: tuple[str, ...], scope: Any) -> RunnerDef:
        assert r.executor is not None
        entry: dict[str, Any] = dict(r.config or {})
        table = getattr(r, r.executor, None) if r.executor != "shell" else None
        if table:
            entry[r.executor] = dict(table)
        rotation = None
        if r.token_rotation is not None and (
            r.token_rotation.before_expiry or r.token_rotation.every
        ):
            rotation = TokenRotation(
                before_expiry=parse_duration(r.token_rotation.before_expiry)
                if r.token_rotation.before_expiry
                else None,
                every=parse_duration(r.token_rotation.every) if r.token_rotation.every else None,
            )
        return RunnerDef(
            name=r.name,
            hosts=hosts,
            executor=r.executor,
            scope=scope,
            tags=tuple(dict.fromkeys(r.tags or ())),
            run_untagged=bool(r.run_untagged) if r.run_untagged is not None else False,
            locked=True if r.locked is None else r.locked,
            paused=bool(r.paused),
            access_level=AccessLevel(r.access_level or AccessLevel.NOT_PROTECTED.value),
            maximum_timeout=r.maximum_timeout,
            token_rotation=rotation,
            entry=entry,
        )
