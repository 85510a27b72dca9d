"""Typed values the GitLab adapters return: frozen dataclasses and enums, never bare dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

API_PREFIX = "/api/v4"


def parse_time(value: object) -> datetime | None:
    """GitLab's ISO 8601 time (``Z`` or an offset) as an aware datetime; ``None`` if absent."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


class _ParsedEnum(StrEnum):
    """A GitLab value set that may grow: unknown values parse to ``UNKNOWN``, never an error."""

    @classmethod
    def parse(cls, value: object) -> Self:
        """The member for ``value`` (REST lowercase or GraphQL uppercase); ``UNKNOWN`` else."""
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls("unknown")


class CiStatus(_ParsedEnum):
    """The ``status`` of a pipeline or a job: GitLab gives both one set (``Ci::HasStatus``).

    REST sends it lowercase, GraphQL's ``PipelineStatusEnum`` uppercase; both parse.
    """

    CREATED = "created"
    WAITING_FOR_RESOURCE = "waiting_for_resource"
    PREPARING = "preparing"
    WAITING_FOR_CALLBACK = "waiting_for_callback"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELING = "canceling"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """True once the pipeline (or job) can no longer change by itself."""
        return self in _FINISHED


PipelineStatus = CiStatus
JobStatus = CiStatus

_FINISHED = frozenset(
    {PipelineStatus.SUCCESS, PipelineStatus.FAILED, PipelineStatus.CANCELED, PipelineStatus.SKIPPED}
)


class FailureReason(_ParsedEnum):
    """A failed job's ``failure_reason``: what the runner reported, or what GitLab decided.

    The runner's own values come from gitlab-runner's ``common/network.go``; the rest are
    GitLab's ``CommitStatus`` failure reasons (``app/models/concerns/enums/ci/commit_status.rb``).
    """

    # Reported by the runner.
    SCRIPT_FAILURE = "script_failure"
    RUNNER_SYSTEM_FAILURE = "runner_system_failure"
    JOB_EXECUTION_TIMEOUT = "job_execution_timeout"
    IMAGE_PULL_FAILURE = "image_pull_failure"
    RUNNER_CONFIGURATION_ERROR = "runner_configuration_error"
    RUNNER_EXTERNAL_DEPENDENCY_FAILURE = "runner_external_dependency_failure"
    RUNNER_INTERRUPTED = "runner_interrupted"
    JOB_CANCELED = "job_canceled"
    UNKNOWN_FAILURE = "unknown_failure"
    # Decided by GitLab.
    API_FAILURE = "api_failure"
    STUCK_OR_TIMEOUT_FAILURE = "stuck_or_timeout_failure"
    MISSING_DEPENDENCY_FAILURE = "missing_dependency_failure"
    RUNNER_UNSUPPORTED = "runner_unsupported"
    STALE_SCHEDULE = "stale_schedule"
    ARCHIVED_FAILURE = "archived_failure"
    UNMET_PREREQUISITES = "unmet_prerequisites"
    SCHEDULER_FAILURE = "scheduler_failure"
    DATA_INTEGRITY_FAILURE = "data_integrity_failure"
    FORWARD_DEPLOYMENT_FAILURE = "forward_deployment_failure"
    USER_BLOCKED = "user_blocked"
    PROJECT_DELETED = "project_deleted"
    CI_QUOTA_EXCEEDED = "ci_quota_exceeded"
    PIPELINE_LOOP_DETECTED = "pipeline_loop_detected"
    NO_MATCHING_RUNNER = "no_matching_runner"
    TRACE_SIZE_EXCEEDED = "trace_size_exceeded"
    BUILDS_DISABLED = "builds_disabled"
    ENVIRONMENT_CREATION_FAILURE = "environment_creation_failure"
    DEPLOYMENT_REJECTED = "deployment_rejected"
    FAILED_OUTDATED_DEPLOYMENT_JOB = "failed_outdated_deployment_job"
    PROTECTED_ENVIRONMENT_FAILURE = "protected_environment_failure"
    INSUFFICIENT_BRIDGE_PERMISSIONS = "insufficient_bridge_permissions"
    DOWNSTREAM_BRIDGE_PROJECT_NOT_FOUND = "downstream_bridge_project_not_found"
    INVALID_BRIDGE_TRIGGER = "invalid_bridge_trigger"
    UPSTREAM_BRIDGE_PROJECT_NOT_FOUND = "upstream_bridge_project_not_found"
    INSUFFICIENT_UPSTREAM_PERMISSIONS = "insufficient_upstream_permissions"
    BRIDGE_PIPELINE_IS_CHILD_PIPELINE = "bridge_pipeline_is_child_pipeline"
    DOWNSTREAM_PIPELINE_CREATION_FAILED = "downstream_pipeline_creation_failed"
    SECRETS_PROVIDER_NOT_FOUND = "secrets_provider_not_found"
    REACHED_MAX_DESCENDANT_PIPELINES_DEPTH = "reached_max_descendant_pipelines_depth"
    IP_RESTRICTION_FAILURE = "ip_restriction_failure"
    REACHED_MAX_PIPELINE_HIERARCHY_SIZE = "reached_max_pipeline_hierarchy_size"
    # A value this version does not know yet.
    UNKNOWN = "unknown"


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
    retry_deadline: float = 300.0

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
    status: PipelineStatus
    web_url: str
    duration: float | None = None

    def __post_init__(self) -> None:
        # Fakes and older callers pass GitLab's string; keep the field an enum regardless.
        object.__setattr__(self, "status", PipelineStatus.parse(self.status))


@dataclass(frozen=True)
class Job:
    """One job of a pipeline, as ``GET /projects/:id/pipelines/:pid/jobs`` lists it."""

    id: int
    name: str
    stage: str
    status: JobStatus
    duration: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: FailureReason | None = None
    web_url: str = ""
    tag_list: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus.parse(self.status))
        if self.failure_reason is not None:
            object.__setattr__(self, "failure_reason", FailureReason.parse(self.failure_reason))


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
