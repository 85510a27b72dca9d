"""Typed values the GitLab adapters return: frozen dataclasses and enums, never bare dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


API_PREFIX = "/api/v4"

# ---------------------------------------------------------------------------------------------
# Values


class RunnerType(StrEnum):
    """Where a runner is attached (GitLab's ``runner_type``)."""

    INSTANCE = "instance_type"
    GROUP = "group_type"
    PROJECT = "project_type"


class RunnerStatus(StrEnum):
    """GitLab's REST ``status`` of a runner."""

    ONLINE = "online"
    OFFLINE = "offline"
    STALE = "stale"
    NEVER_CONTACTED = "never_contacted"
    PAUSED = "paused"
    ACTIVE = "active"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> RunnerStatus:
        """The status for ``value``; :attr:`UNKNOWN` for anything GitLab adds later."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


class AccessLevel(StrEnum):
    """Which refs a runner may run jobs for."""

    NOT_PROTECTED = "not_protected"
    REF_PROTECTED = "ref_protected"


@dataclass(frozen=True)
class ConnectionSettings:
    """Where GitLab is and how to authenticate. The token never shows in ``repr``."""

    url: str
    token: str = field(repr=False)
    auth_source: str = "GITLAB_TOKEN"
    ca_bundle: Path | None = None
    insecure: bool = False
    timeout: float = 30.0
    max_retries: int = 4

    @property
    def api_url(self) -> str:
        """The REST v4 base URL."""
        return self.url.rstrip("/") + API_PREFIX


@dataclass(frozen=True)
class Namespace:
    """A group or a project, resolved from its path or id."""

    id: int
    full_path: str
    kind: str  # "group" or "project"


@dataclass(frozen=True)
class RunnerSpec:
    """The server-side settings of a runner, as ``POST /user/runners`` takes them."""

    runner_type: RunnerType
    description: str
    group_id: int | None = None
    project_id: int | None = None
    tag_list: tuple[str, ...] = ()
    run_untagged: bool = False
    locked: bool = False
    paused: bool = False
    access_level: AccessLevel = AccessLevel.NOT_PROTECTED
    maximum_timeout: int | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body of the create call (without the marker)."""
        data: dict[str, Any] = {
            "runner_type": self.runner_type.value,
            "description": self.description,
            "tag_list": list(self.tag_list),
            "run_untagged": self.run_untagged,
            "locked": self.locked,
            "paused": self.paused,
            "access_level": self.access_level.value,
        }
        if self.group_id is not None:
            data["group_id"] = self.group_id
        if self.project_id is not None:
            data["project_id"] = self.project_id
        if self.maximum_timeout is not None:
            data["maximum_timeout"] = self.maximum_timeout
        return data


@dataclass(frozen=True)
class RunnerCredentials:
    """A runner id and its authentication token, as create, register and reset return them."""

    id: int
    token: str = field(repr=False)
    token_expires_at: datetime | None = None
    recovered: bool = False  # True when found after a lost create answer (token was reset)


@dataclass(frozen=True)
class Runner:
    """A runner as ``GET /runners/:id`` (or a list entry) describes it."""

    id: int
    description: str
    runner_type: RunnerType
    status: RunnerStatus
    paused: bool
    online: bool | None = None
    tag_list: tuple[str, ...] = ()
    run_untagged: bool | None = None
    locked: bool | None = None
    access_level: AccessLevel | None = None
    maximum_timeout: int | None = None
    contacted_at: datetime | None = None
    maintenance_note: str | None = None
    group_ids: tuple[int, ...] = ()
    project_ids: tuple[int, ...] = ()
    group_paths: tuple[str, ...] = ()
    project_paths: tuple[str, ...] = ()
    detailed: bool = False


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``POST /runners/verify``: ``valid`` and the id GitLab reports."""

    valid: bool
    runner_id: int | None = None
    token_expires_at: datetime | None = None


@dataclass(frozen=True)
class ListFilter:
    """Filters of ``runners list``: scope (where to look), status and tags."""

    runner_type: RunnerType | None = None
    namespace_id: int | None = None
    status: RunnerStatus | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    """A project as the smoke pipeline needs it."""

    id: int
    path_with_namespace: str
    web_url: str
    default_branch: str | None


@dataclass(frozen=True)
class Variable:
    """A project CI/CD variable; the value never shows in ``repr``."""

    key: str
    value: str = field(repr=False)
    variable_type: str = "env_var"
    masked: bool = False
    protected: bool = False


@dataclass(frozen=True)
class Pipeline:
    """A pipeline's id, status and where to see it."""

    id: int
    iid: int
    status: str
    web_url: str
    duration: float | None = None


@dataclass(frozen=True)
class Job:
    """One job of a pipeline, as ``GET /projects/:id/pipelines/:pid/jobs`` lists it."""

    id: int
    name: str
    stage: str
    status: str
    duration: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: str | None = None
    web_url: str = ""
    tag_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class Package:
    """A package of the project's package registry."""

    id: int
    name: str
    version: str
    package_type: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class DistFile:
    """A file link of the PyPI simple index: name, absolute URL and the sha256 GitLab stored."""

    filename: str
    url: str
    sha256: str
