"""Registration's ports (what it needs from GitLab and the config store) and its values.

The operations live in :mod:`~provisioner.registration.apply` (``register``),
:mod:`~provisioner.registration.unregister` and :mod:`~provisioner.registration.rotate`; the
read-only decision of ``register`` in :mod:`~provisioner.registration.plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from provisioner.errors import ConfigError, UsageError
from provisioner.gitlab.models import (
    AccessLevel,
    ListFilter,
    Runner,
    RunnerCredentials,
    RunnerSpec,
    RunnerType,
    VerifyResult,
)
from provisioner.registration.executors import ExecutorConfig
from provisioner.registration.scope import Scope
from provisioner.runner_config import ConfigDocument, UpdateResult

#: Told about every secret as soon as it is known (for output redaction).
SecretSink = Callable[[str], None]
MAX_TAGS = 50
MIN_TIMEOUT = 600


def ignore_secret(_secret: str) -> None:
    """The sink used when the caller passes none."""


# ---------------------------------------------------------------------------------------------
# Ports


class RunnerAPI(Protocol):
    """What registration needs from GitLab (:class:`~provisioner.gitlab.client.GitLabAPI`)."""

    @property
    def request_count(self) -> int:
        """Requests sent so far."""
        ...

    @property
    def authenticated(self) -> bool:
        """True when an access token is configured."""
        ...

    def resolve_group(self, path_or_id: str) -> Any:
        """``GET /groups/:id``."""
        ...

    def resolve_project(self, path_or_id: str) -> Any:
        """``GET /projects/:id``."""
        ...

    def create_runner(self, spec: RunnerSpec, *, marker: str | None = None) -> RunnerCredentials:
        """``POST /user/runners`` (``marker`` goes into the maintenance note)."""
        ...

    def find_marked_runner(self, spec: RunnerSpec, marker: str) -> int | None:
        """The runner of ``spec`` whose maintenance note is ``marker``."""
        ...

    def register_legacy(self, registration_token: str, spec: RunnerSpec) -> RunnerCredentials:
        """``POST /runners``."""
        ...

    def token_scopes(self) -> frozenset[str] | None:
        """The access token's scopes, or None when GitLab does not say."""
        ...

    def verify(self, token: str) -> VerifyResult:
        """``POST /runners/verify``."""
        ...

    def get_runner(self, runner_id: int) -> Runner:
        """``GET /runners/:id``."""
        ...

    def find_runner(self, runner_id: int) -> Runner | None:
        """``GET /runners/:id`` or ``None``."""
        ...

    def update_runner(self, runner_id: int, changes: Mapping[str, Any]) -> Runner:
        """``PUT /runners/:id``."""
        ...

    def delete_runner(self, runner_id: int) -> bool:
        """``DELETE /runners/:id``."""
        ...

    def delete_runner_by_token(self, token: str) -> bool:
        """``DELETE /runners`` with the runner token."""
        ...

    def reset_token(self, runner_id: int) -> RunnerCredentials:
        """``POST /runners/:id/reset_authentication_token``."""
        ...

    def list_runners(self, flt: ListFilter) -> tuple[Runner, ...]:
        """``GET /runners…``."""
        ...


class ConfigStorePort(Protocol):
    """What registration needs from :class:`~provisioner.runner_config.ConfigStore`."""

    path: Path

    def load(self) -> ConfigDocument:
        """The current document."""
        ...

    def update(
        self, fn: Callable[[ConfigDocument], ConfigDocument | None], *, create: bool = False
    ) -> UpdateResult:
        """A locked read-modify-write transaction."""
        ...


# ---------------------------------------------------------------------------------------------
# Values


class Action(StrEnum):
    """What ``register`` did (or, with ``--dry-run``, would do)."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    REPLACED = "replaced"


@dataclass(frozen=True)
class PlannedCall:
    """One API call: method, path and why. ``done`` is true for read-only calls already made."""

    method: str
    path: str
    purpose: str
    done: bool = False

    def __str__(self) -> str:
        return f"{self.method} {self.path}  ({self.purpose})"


@dataclass(frozen=True)
class RegisterRequest:
    """Everything ``runnerctl register`` was asked for."""

    name: str
    scope: Scope
    gitlab_url: str
    executor: ExecutorConfig
    tags: tuple[str, ...] = ()
    run_untagged: bool = False
    locked: bool = False
    paused: bool = False
    maximum_timeout: int | None = None
    access_level: AccessLevel = AccessLevel.NOT_PROTECTED
    limit: int | None = None
    legacy_registration_token: str | None = field(default=None, repr=False)
    rbac_path: Path | None = None

    def spec(self, *, namespace_id: int | None = None) -> RunnerSpec:
        """The server-side settings as the API takes them."""
        return RunnerSpec(
            runner_type=self.scope.runner_type,
            description=self.name,
            group_id=namespace_id if self.scope.runner_type is RunnerType.GROUP else None,
            project_id=namespace_id if self.scope.runner_type is RunnerType.PROJECT else None,
            tag_list=tuple(sorted(set(self.tags))),
            run_untagged=self.run_untagged,
            locked=self.locked,
            paused=self.paused,
            access_level=self.access_level,
            maximum_timeout=self.maximum_timeout,
        )


@dataclass(frozen=True)
class RegisterResult:
    """What ``register`` did."""

    action: Action
    name: str
    config_path: Path
    runner_id: int | None
    dry_run: bool = False
    config_changed: bool = False
    server_changes: tuple[str, ...] = ()
    config_changes: tuple[str, ...] = ()
    calls: tuple[PlannedCall, ...] = ()
    diff: str = ""
    rbac_path: Path | None = None
    stale_runner_id: int | None = None
    tags: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    requests: int = 0
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class UnregisterResult:
    """What ``unregister`` did."""

    name: str
    runner_id: int | None
    config_path: Path
    deleted_in_gitlab: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RotateResult:
    """What ``token rotate`` did."""

    name: str
    runner_id: int
    config_path: Path
    token_expires_at: datetime | None
    new_token_verified: bool
    old_token_refused: bool
    warnings: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------
# Validation and the store transaction


def validate_request(request: RegisterRequest) -> None:
    """Refuse requests GitLab or gitlab-runner would refuse, before anything changes.

    Raises:
        UsageError: naming the option and the fix.
    """
    if not request.name.strip() or len(request.name) > 1024:
        raise UsageError(
            "The runner name must be 1 to 1024 characters.",
            hint="Pass --name build-host-01 (it becomes the runner's description in GitLab).",
        )
    if len(set(request.tags)) > MAX_TAGS:
        raise UsageError(f"GitLab allows at most {MAX_TAGS} tags per runner.")
    bad = [t for t in request.tags if not t.strip() or "," in t]
    if bad:
        raise UsageError(
            f"Invalid tag {bad[0]!r}.",
            hint="Give one non-empty tag per --tag, without commas.",
        )
    if not request.tags and not request.run_untagged:
        raise UsageError(
            "A runner without tags must be allowed to run untagged jobs.",
            hint="Add --tag T (repeatable) or --run-untagged.",
        )
    if request.maximum_timeout is not None and request.maximum_timeout < MIN_TIMEOUT:
        raise UsageError(
            f"--maximum-timeout {request.maximum_timeout} is below GitLab's minimum of "
            f"{MIN_TIMEOUT} seconds.",
            hint="Use 600 or more, or leave it out to use the project's timeout.",
        )
    if request.limit is not None and request.limit < 0:
        raise UsageError("--limit must be 0 (no limit) or more.")


def update_store(
    store: ConfigStorePort, fn: Callable[[ConfigDocument], None], *, create: bool = False
) -> UpdateResult:
    """``store.update``, with an I/O failure (disk full, file size limit) as a ConfigError."""
    try:
        return store.update(fn, create=create)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write {store.path}: {exc.strerror or exc}.",
            hint="Free disk space or fix the permissions of the config directory; the file "
            "was left as it was.",
        ) from None
