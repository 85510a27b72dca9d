"""The plan of one ``register``: built once, read-only, then rendered or executed.

:func:`plan_registration` compares the request with config.toml and GitLab using read-only calls
only, and returns a frozen :class:`RegistrationPlan`: the action, the API calls to make, the
config entry to write, and how to undo a runner created before a later step fails.
``--dry-run`` renders the plan (:func:`~provisioner.registration.apply.register` with
``dry_run``); apply executes it inside the config store's transaction. Fleet composes plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from provisioner.errors import GitLabError, UsageError
from provisioner.gitlab.models import Runner, RunnerCredentials, RunnerType
from provisioner.registration.entries import (
    config_changes,
    desired_entry,
    find_entry,
    ref,
    token_fields,
)
from provisioner.registration.model import (
    Action,
    PlannedCall,
    RegisterRequest,
    RunnerAPI,
    SecretSink,
)
from provisioner.runner_config import ConfigDocument

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class Undo(StrEnum):
    """How a runner created by this plan is removed again when a later step fails."""

    DELETE_BY_ID = "delete-by-id"  # DELETE /runners/:id with the access token
    # DELETE /runners with the runner's own token (legacy registration, no access token)
    DELETE_BY_TOKEN = "delete-by-token"  # noqa: S105 (a step name, not a password)


@dataclass(frozen=True)
class RegistrationPlan:
    """What ``register`` will do, decided from read-only calls.

    Attributes:
        request: what was asked for.
        action: created, unchanged, updated or replaced.
        entry: the runner's current ``[[runners]]`` entry, when there is one.
        runner_id: the runner's id in GitLab (None until a new one is created).
        stale_id: a runner GitLab no longer accepts, to delete after the replacement.
        server_changes: ``PUT /runners/:id`` fields, for an existing runner.
        config_changes: keys of the existing entry to change.
        settings: the executor section of the entry (``executor_settings``).
        checked: the read-only calls already made to decide.
        rollback: how to remove a created runner if writing the config fails.
        warnings: what the user should know before anything changes.
    """

    request: RegisterRequest
    action: Action
    settings: Mapping[str, Any]
    entry: Mapping[str, Any] | None = None
    runner_id: int | None = None
    stale_id: int | None = None
    server_changes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    config_changes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    checked: tuple[PlannedCall, ...] = ()
    rollback: tuple[Undo, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def creates(self) -> bool:
        """True when a new runner is created in GitLab (a first registration or a replacement)."""
        return self.action in (Action.CREATED, Action.REPLACED)

    @property
    def calls(self) -> tuple[PlannedCall, ...]:
        """Every API call: the read-only ones already made, then the ones to make."""
        if self.creates:
            stale = (
                (PlannedCall("DELETE", f"/runners/{self.stale_id}", "remove the stale runner"),)
                if self.stale_id is not None
                else ()
            )
            return (*self.checked, *create_calls(self.request), *stale)
        if self.server_changes:
            update = PlannedCall(
                "PUT",
                f"/runners/{self.runner_id}",
                "update " + ", ".join(sorted(self.server_changes)),
            )
            return (*self.checked, update)
        return self.checked

    def write_entry(
        self,
        doc: ConfigDocument,
        *,
        creds: RunnerCredentials | None,
        now: Callable[[], datetime],
    ) -> None:
        """Write this plan's ``[[runners]]`` entry into ``doc``.

        Args:
            doc: the document to change.
            creds: the new runner's id and token when the plan creates one (a placeholder
                renders the dry run); None otherwise.
            now: the clock for ``token_obtained_at``.
        """
        if not self.creates:
            if self.config_changes:
                doc.update_runner(ref(self.entry), dict(self.config_changes))
            return
        assert creds is not None
        request = self.request
        if self.entry is None:
            entry: dict[str, Any] = {
                "name": request.name,
                "url": request.gitlab_url.rstrip("/"),
                "id": creds.id,
                **token_fields(creds, now, None),
                **desired_entry(request, self.settings),
            }
            doc.add_runner({k: v for k, v in entry.items() if v is not None})
            return
        values: dict[str, Any] = {"id": creds.id, **token_fields(creds, now, self.entry)}
        values.update(config_changes(self.entry, request, creds.id))
        values["id"] = creds.id
        doc.update_runner(ref(self.entry), values)


def create_calls(request: RegisterRequest) -> tuple[PlannedCall, ...]:
    """The calls that create a runner for ``request`` and check it."""
    calls: list[PlannedCall] = []
    scope = request.scope
    if scope.runner_type is not RunnerType.INSTANCE and scope.numeric_id is None:
        kind = "groups" if scope.runner_type is RunnerType.GROUP else "projects"
        calls.append(PlannedCall("GET", f"/{kind}/{scope.ref}", f"resolve {scope} to its id"))
    if request.legacy_registration_token:
        calls.append(PlannedCall("POST", "/runners", "register with a registration token"))
    else:
        calls.append(PlannedCall("POST", "/user/runners", f"create the runner ({scope})"))
    calls.append(PlannedCall("POST", "/runners/verify", "check the new token"))
    calls.append(PlannedCall("GET", "/runners/<new id>", "read back tags and flags"))
    return tuple(calls)


def plan_registration(
    request: RegisterRequest,
    doc: ConfigDocument,
    settings: Mapping[str, Any],
    *,
    gitlab: RunnerAPI,
    sink: SecretSink,
) -> RegistrationPlan:
    """Compare ``request`` with ``doc`` and GitLab (read-only calls) and decide.

    Raises:
        ConfigError: the file holds the runner twice.
        UsageError: the configured runner is attached elsewhere than ``request.scope``.
        GitLabError: GitLab accepts the token but names no runner.
    """
    settings = MappingProxyType(dict(settings))
    undo = (Undo.DELETE_BY_ID if gitlab.authenticated else Undo.DELETE_BY_TOKEN,)
    found = find_entry(doc, request)
    if found is None:
        return RegistrationPlan(request, Action.CREATED, settings, rollback=undo)
    entry: Mapping[str, Any] = MappingProxyType(found)
    token = str(entry.get("token") or "")
    raw_id = entry.get("id")
    entry_id = raw_id if isinstance(raw_id, int) and raw_id else None
    if not token:
        return RegistrationPlan(
            request,
            Action.REPLACED,
            settings,
            entry=entry,
            runner_id=entry_id,
            stale_id=entry_id,
            rollback=undo,
            warnings=(f"config entry {request.name!r} has no token; replacing it.",),
        )
    sink(token)
    verdict = gitlab.verify(token)
    checked: tuple[PlannedCall, ...] = (
        PlannedCall("POST", "/runners/verify", "check the stored token", True),
    )
    if not verdict.valid:
        return RegistrationPlan(
            request,
            Action.REPLACED,
            settings,
            entry=entry,
            runner_id=entry_id,
            stale_id=entry_id,
            checked=checked,
            rollback=undo,
            warnings=(
                f"GitLab no longer accepts the token of {request.name!r}"
                + (f" (runner {entry_id})" if entry_id else "")
                + "; a new runner replaces it and the stale one is removed.",
            ),
        )
    runner_id = verdict.runner_id or entry_id
    if runner_id is None:
        raise GitLabError(
            f"GitLab accepts the token of {request.name!r} but reports no runner id.",
            hint="Upgrade GitLab to 16.0 or newer, or unregister and register the runner again.",
        )
    local = MappingProxyType(config_changes(entry, request, runner_id))
    if not gitlab.authenticated:
        return RegistrationPlan(
            request,
            Action.UPDATED if local else Action.UNCHANGED,
            settings,
            entry=entry,
            runner_id=runner_id,
            config_changes=local,
            checked=checked,
            warnings=("No access token: the runner's tags and flags in GitLab were not compared.",),
        )
    runner = gitlab.get_runner(runner_id)
    checked = (*checked, PlannedCall("GET", f"/runners/{runner_id}", "compare settings", True))
    if not request.scope.matches(runner):
        raise UsageError(
            f"Runner {request.name!r} in the config is GitLab runner {runner_id} "
            f"({_describe_attachment(runner)}), not attached to {request.scope}.",
            hint="Pick another --name for a runner in that scope, or move this one with "
            f"`runnerctl unregister {request.name}` first.",
        )
    remote = MappingProxyType(_server_changes(runner, request))
    return RegistrationPlan(
        request,
        Action.UPDATED if remote or local else Action.UNCHANGED,
        settings,
        entry=entry,
        runner_id=runner_id,
        server_changes=remote,
        config_changes=local,
        checked=checked,
    )


def _describe_attachment(runner: Runner) -> str:
    if runner.runner_type is RunnerType.GROUP:
        return "group " + ", ".join(runner.group_paths or tuple(map(str, runner.group_ids)))
    if runner.runner_type is RunnerType.PROJECT:
        return "project " + ", ".join(runner.project_paths or tuple(map(str, runner.project_ids)))
    return "an instance runner"


def _server_changes(runner: Runner, request: RegisterRequest) -> dict[str, Any]:
    wanted = request.spec()
    changes: dict[str, Any] = {}
    if tuple(sorted(runner.tag_list)) != wanted.tag_list:
        changes["tag_list"] = list(wanted.tag_list)
    for key in ("run_untagged", "locked", "paused"):
        current = getattr(runner, key)
        if current is not None and current != getattr(wanted, key):
            changes[key] = getattr(wanted, key)
    if runner.access_level is not None and runner.access_level is not wanted.access_level:
        changes["access_level"] = wanted.access_level.value
    if wanted.maximum_timeout is not None and runner.maximum_timeout != wanted.maximum_timeout:
        changes["maximum_timeout"] = wanted.maximum_timeout
    if runner.description != wanted.description:
        changes["description"] = wanted.description
    return changes
