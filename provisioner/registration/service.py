"""Register, update, rotate and unregister runners: GitLab first, then config.toml.

The identity of a configured runner is its id and its token, never its name alone: an entry
found by name (and URL) is only reused when GitLab still accepts its token and reports the same
runner, attached where ``--scope`` says.

Every change of config.toml happens inside one :meth:`ConfigStore.update` transaction. The API
calls run inside it too, under the file lock, so concurrent ``register`` runs into the same
file serialise instead of racing (and cannot both create "the" runner of one name). If anything
fails after GitLab created a runner, that runner is deleted again before the error surfaces.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from provisioner.errors import ConfigError, GitLabError, ProvisionerError, UsageError
from provisioner.fsutil import atomic_write
from provisioner.gitlab.models import (
    AccessLevel,
    ListFilter,
    Runner,
    RunnerCredentials,
    RunnerSpec,
    RunnerStatus,
    RunnerType,
    VerifyResult,
)
from provisioner.registration.executors import (
    Executor,
    ExecutorConfig,
    executor_settings,
    rbac_manifests,
    render_manifests,
)
from provisioner.registration.scope import Scope
from provisioner.runner_config import (
    ConfigDocument,
    RunnerRef,
    UpdateResult,
    lint_document,
    validate_text,
)
from provisioner.runner_config.model import SECRET_KEYS, mask_environment_entry
from provisioner.secrets import MASK

log = logging.getLogger(__name__)

SecretSink = Callable[[str], None]
MAX_TAGS = 50
MIN_TIMEOUT = 600
# One `key = value` line of a config diff, with its +/-/space marker.
_ASSIGNMENT_LINE_RE = re.compile(
    r"^(?P<head>[+\- ]?\s*(?P<key>[A-Za-z0-9_\-]+)\s*=\s*)(?P<value>.*)$", re.MULTILINE
)
_TOML_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SECRET_KEYS_FOLDED = frozenset(key.lower() for key in SECRET_KEYS)


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

    def create_runner(self, spec: RunnerSpec) -> RunnerCredentials:
        """``POST /user/runners``."""
        ...

    def register_legacy(self, registration_token: str, spec: RunnerSpec) -> RunnerCredentials:
        """``POST /runners``."""
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


@dataclass
class _Decision:
    """The outcome of comparing the request with config.toml and GitLab (read-only)."""

    action: Action
    entry: dict[str, Any] | None = None
    runner_id: int | None = None
    stale_id: int | None = None
    server_changes: dict[str, Any] = field(default_factory=dict)
    config_changes: dict[str, Any] = field(default_factory=dict)
    calls: list[PlannedCall] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Validation


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


# ---------------------------------------------------------------------------------------------
# register


def register(
    request: RegisterRequest,
    *,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    dry_run: bool = False,
    on_secret: SecretSink | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RegisterResult:
    """Make GitLab and config.toml hold exactly one runner as ``request`` describes.

    Args:
        request: what to register.
        gitlab: the GitLab adapter.
        store: the config.toml store.
        dry_run: plan only: read-only API calls, no change in GitLab or on disk.
        on_secret: told about every token as soon as it is known (for output redaction).
        now: the clock (tests).

    Returns:
        What was done, the API calls, and the config diff.

    Raises:
        UsageError, ConfigError, GitLabError: and nothing is left half-changed.
    """
    validate_request(request)
    sink = on_secret or (lambda _secret: None)
    if request.legacy_registration_token:
        sink(request.legacy_registration_token)
    settings = executor_settings(request.executor)
    start = gitlab.request_count
    if dry_run:
        return _dry_run(
            request, settings, gitlab=gitlab, store=store, sink=sink, start=start, now=now
        )

    state: dict[str, Any] = {}
    created: list[RunnerCredentials] = []

    def transaction(doc: ConfigDocument) -> None:
        before = doc.dumps()
        _check_valid(before, store.path)
        decision = _decide(request, doc, gitlab=gitlab, sink=sink)
        state["decision"] = decision
        if decision.action in (Action.CREATED, Action.REPLACED):
            creds, runner = _create(request, decision, gitlab=gitlab, sink=sink)
            created.append(creds)
            decision.runner_id = creds.id
            if creds.recovered:
                decision.warnings.append(
                    "GitLab's answer to the create call was lost; the runner it had created "
                    "was found and its token reset, so no duplicate exists."
                )
            state["creds"] = creds
            state["tags"] = runner.tag_list if runner else tuple(sorted(set(request.tags)))
            _write_new_entry(doc, request, settings, decision, creds, now=now)
        else:
            if decision.server_changes:
                assert decision.runner_id is not None
                updated = gitlab.update_runner(decision.runner_id, decision.server_changes)
                _confirm_server(updated, request, "after the update")
                state["tags"] = updated.tag_list
            if decision.config_changes:
                doc.update_runner(_ref(decision.entry), decision.config_changes)
        after = doc.dumps()
        if after != before:
            # The rest of the file passed validation above; check just this runner's entry
            # (a whole-file re-parse per runner dominated the cost of large files).
            mine = doc.runner_tables()[_index_of(doc, request)]
            probe = ConfigDocument.empty()
            probe.add_runner(mine.unwrap())
            _check_valid(probe.dumps(), store.path, ours=True)
            state["lint"] = _lint_warnings(probe, request.name)
        state["diff"] = _diff(before, after, store.path)

    try:
        update = _update(store, transaction, create=True)
    except BaseException as exc:
        for creds in created:
            _rollback(gitlab, creds, exc)
        raise
    return _finish(request, state, update, gitlab=gitlab, store=store, start=start)


def _finish(
    request: RegisterRequest,
    state: Mapping[str, Any],
    update: UpdateResult,
    *,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    start: int,
) -> RegisterResult:
    decision: _Decision = state["decision"]
    warnings = list(decision.warnings)
    if decision.stale_id is not None and gitlab.authenticated:
        warnings.extend(_delete_stale(gitlab, decision.stale_id))
    elif decision.stale_id is not None:
        warnings.append(
            f"Stale runner {decision.stale_id} stays in GitLab (no access token to delete it)."
        )
    if update.kept_from_disk:
        warnings.append(
            "config.toml held a newer token written by gitlab-runner; it was kept: "
            + ", ".join(update.kept_from_disk)
        )
    rbac = _write_rbac(request)
    creds_final: RunnerCredentials | None = state.get("creds")
    token = creds_final.token if creds_final else (decision.entry or {}).get("token")
    if update.changed:
        warnings.extend(state.get("lint", []))
    return RegisterResult(
        action=decision.action,
        name=request.name,
        config_path=store.path,
        runner_id=decision.runner_id,
        config_changed=update.changed,
        server_changes=tuple(sorted(decision.server_changes)),
        config_changes=tuple(sorted(decision.config_changes)),
        calls=tuple(decision.calls),
        diff=state.get("diff", ""),
        rbac_path=rbac,
        stale_runner_id=decision.stale_id,
        tags=tuple(state.get("tags", tuple(sorted(set(request.tags))))),
        warnings=tuple(warnings),
        requests=gitlab.request_count - start,
        token=str(token) if token else None,
    )


def _dry_run(
    request: RegisterRequest,
    settings: Mapping[str, Any],
    *,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    sink: SecretSink,
    start: int,
    now: Callable[[], datetime],
) -> RegisterResult:
    if store.path.exists():
        doc = store.load()
        before = doc.dumps()
        _check_valid(before, store.path)
    else:
        doc = ConfigDocument.empty()
        before = ""
    decision = _decide(request, doc, gitlab=gitlab, sink=sink)
    if decision.action in (Action.CREATED, Action.REPLACED):
        decision.calls.extend(_create_calls(request))
        placeholder = RunnerCredentials(0, MASK, None)
        _write_new_entry(doc, request, settings, decision, placeholder, now=now)
        if decision.stale_id is not None:
            decision.calls.append(
                PlannedCall("DELETE", f"/runners/{decision.stale_id}", "remove the stale runner")
            )
    else:
        if decision.server_changes:
            decision.calls.append(
                PlannedCall(
                    "PUT",
                    f"/runners/{decision.runner_id}",
                    "update " + ", ".join(sorted(decision.server_changes)),
                )
            )
        if decision.config_changes:
            doc.update_runner(_ref(decision.entry), decision.config_changes)
    after = doc.dumps()
    return RegisterResult(
        action=decision.action,
        name=request.name,
        config_path=store.path,
        runner_id=decision.runner_id,
        dry_run=True,
        config_changed=after != before,
        server_changes=tuple(sorted(decision.server_changes)),
        config_changes=tuple(sorted(decision.config_changes)),
        calls=tuple(decision.calls),
        diff=_diff(before, after, store.path),
        rbac_path=_rbac_target(request),
        stale_runner_id=decision.stale_id,
        tags=tuple(sorted(set(request.tags))),
        warnings=tuple(decision.warnings),
        requests=gitlab.request_count - start,
    )


def _create_calls(request: RegisterRequest) -> list[PlannedCall]:
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
    return calls


# ---------------------------------------------------------------------------------------------
# Deciding


def _find_entry(doc: ConfigDocument, request: RegisterRequest) -> dict[str, Any] | None:
    url = request.gitlab_url.rstrip("/")
    hits = [
        entry
        for entry in doc.iter_runner_plain()
        if entry.get("name") == request.name and str(entry.get("url", "")).rstrip("/") == url
    ]
    if len(hits) > 1:
        raise ConfigError(
            f"{len(hits)} [[runners]] entries in the config are named {request.name!r} for {url}.",
            hint="Remove the duplicates with `runnerctl unregister --id ID`, then re-run.",
        )
    return hits[0] if hits else None


def _decide(
    request: RegisterRequest,
    doc: ConfigDocument,
    *,
    gitlab: RunnerAPI,
    sink: SecretSink,
) -> _Decision:
    entry = _find_entry(doc, request)
    if entry is None:
        return _Decision(Action.CREATED)
    token = str(entry.get("token") or "")
    entry_id = entry.get("id") if isinstance(entry.get("id"), int) else None
    if token:
        sink(token)
    decision = _Decision(Action.UNCHANGED, entry=entry, runner_id=entry_id or None)
    if not token:
        decision.action, decision.stale_id = Action.REPLACED, entry_id or None
        decision.warnings.append(f"config entry {request.name!r} has no token; replacing it.")
        return decision
    verdict = gitlab.verify(token)
    decision.calls.append(PlannedCall("POST", "/runners/verify", "check the stored token", True))
    if not verdict.valid:
        decision.action, decision.stale_id = Action.REPLACED, entry_id or None
        decision.warnings.append(
            f"GitLab no longer accepts the token of {request.name!r}"
            + (f" (runner {entry_id})" if entry_id else "")
            + "; a new runner replaces it and the stale one is removed."
        )
        return decision
    runner_id = verdict.runner_id or entry_id
    if runner_id is None:
        raise GitLabError(
            f"GitLab accepts the token of {request.name!r} but reports no runner id.",
            hint="Upgrade GitLab to 16.0 or newer, or unregister and register the runner again.",
        )
    decision.runner_id = runner_id
    if not gitlab.authenticated:
        decision.warnings.append(
            "No access token: the runner's tags and flags in GitLab were not compared."
        )
        decision.config_changes = _config_changes(entry, request, runner_id)
        if decision.config_changes:
            decision.action = Action.UPDATED
        return decision
    runner = gitlab.get_runner(runner_id)
    decision.calls.append(PlannedCall("GET", f"/runners/{runner_id}", "compare settings", True))
    if not request.scope.matches(runner):
        raise UsageError(
            f"Runner {request.name!r} in the config is GitLab runner {runner_id} "
            f"({_describe_attachment(runner)}), not attached to {request.scope}.",
            hint="Pick another --name for a runner in that scope, or move this one with "
            f"`runnerctl unregister {request.name}` first.",
        )
    decision.server_changes = _server_changes(runner, request)
    decision.config_changes = _config_changes(entry, request, runner_id)
    if decision.server_changes or decision.config_changes:
        decision.action = Action.UPDATED
    return decision


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


def _desired_entry(request: RegisterRequest, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keys register manages, other than identity and token fields."""
    entry: dict[str, Any] = {"executor": settings["executor"]}
    for key, value in settings.items():
        if key != "executor":
            entry[key] = value
    if request.limit is not None:
        entry["limit"] = request.limit
    return entry


def _config_changes(
    entry: Mapping[str, Any], request: RegisterRequest, runner_id: int
) -> dict[str, Any]:
    desired = _desired_entry(request, executor_settings(request.executor))
    changes: dict[str, Any] = {}
    if entry.get("id") != runner_id:
        changes["id"] = runner_id
    for key, value in desired.items():
        current = entry.get(key)
        if key == "environment":
            merged = _merge_environment(current, value)
            if merged != current:
                changes[key] = merged
        elif isinstance(value, dict):
            section = current if isinstance(current, dict) else {}
            delta = {k: v for k, v in value.items() if section.get(k) != v}
            if delta:
                changes[key] = delta
        elif current != value:
            changes[key] = value
    if desired["executor"] != entry.get("executor"):
        # Switching executor: drop the sections of the others (user keys elsewhere stay).
        for other in ("docker", "kubernetes"):
            if other not in desired and other in entry:
                changes[other] = None
        if request.executor.executor is not Executor.SHELL:
            for key in ("shell", "builds_dir"):
                if key in entry:
                    changes[key] = None
    return changes


def _merge_environment(current: Any, wanted: list[str]) -> list[str]:
    existing = [str(v) for v in current] if isinstance(current, list) else []
    names = {w.split("=", 1)[0] for w in wanted}
    kept = [e for e in existing if e.split("=", 1)[0] not in names]
    return kept + list(wanted) if existing != kept + list(wanted) else existing


def _ref(entry: Mapping[str, Any] | None) -> RunnerRef:
    assert entry is not None
    if isinstance(entry.get("id"), int) and entry.get("id"):
        return RunnerRef(id=int(entry["id"]))
    if entry.get("token"):
        return RunnerRef(token=str(entry["token"]))
    return RunnerRef(name=str(entry.get("name")))


# ---------------------------------------------------------------------------------------------
# Applying


def _create(
    request: RegisterRequest, decision: _Decision, *, gitlab: RunnerAPI, sink: SecretSink
) -> tuple[RunnerCredentials, Runner | None]:
    scope = request.scope
    namespace_id = scope.numeric_id
    if scope.runner_type is not RunnerType.INSTANCE and namespace_id is None:
        assert scope.ref is not None
        if scope.runner_type is RunnerType.GROUP:
            namespace_id = gitlab.resolve_group(scope.ref).id
        else:
            namespace_id = gitlab.resolve_project(scope.ref).id
    spec = request.spec(namespace_id=namespace_id)
    if request.legacy_registration_token:
        creds = gitlab.register_legacy(request.legacy_registration_token, spec)
        decision.warnings.append(
            "Registration tokens are deprecated (disabled by default since GitLab 17.0, "
            "planned for removal in 20.0): create runners with an access token that has the "
            "create_runner scope instead."
        )
    else:
        creds = gitlab.create_runner(spec)
    sink(creds.token)
    decision.calls.extend(_create_calls(request))
    verdict = gitlab.verify(creds.token)
    if not verdict.valid:
        raise GitLabError(
            f"GitLab does not accept the token it just issued for runner {creds.id}.",
            hint="Check GitLab's logs; the runner was deleted again, nothing was written.",
        )
    if not gitlab.authenticated:
        return creds, None
    runner = gitlab.get_runner(creds.id)
    _confirm_server(runner, request, "after creating it")
    return creds, runner


def _confirm_server(runner: Runner, request: RegisterRequest, when: str) -> None:
    wanted = tuple(sorted(set(request.tags)))
    if tuple(sorted(runner.tag_list)) != wanted:
        raise GitLabError(
            f"Runner {runner.id} has tags {list(runner.tag_list)} {when}, expected {list(wanted)}.",
            hint="GitLab did not store the tags; check its version (16.0+) and the token's "
            "rights on the runner.",
        )


def _obtained_at(now: datetime, entry: Mapping[str, Any] | None) -> datetime:
    """Second precision like gitlab-runner, and strictly newer than what the file holds.

    The store keeps the disk's token unless ours was obtained strictly later; two writes within
    one second (register, then rotate) would otherwise lose the newer token.
    """
    moment = now.astimezone(UTC).replace(microsecond=0)
    previous = (entry or {}).get("token_obtained_at")
    if isinstance(previous, datetime):
        previous = previous if previous.tzinfo else previous.replace(tzinfo=UTC)
        if previous >= moment:
            moment = previous.astimezone(UTC) + timedelta(seconds=1)
    return moment


def _token_fields(
    creds: RunnerCredentials, now: Callable[[], datetime], entry: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "token": creds.token,
        "token_obtained_at": _obtained_at(now(), entry),
        # gitlab-runner writes 0001-01-01T00:00:00Z for "never"; an absent key means the same.
        "token_expires_at": creds.token_expires_at,
    }


def _write_new_entry(
    doc: ConfigDocument,
    request: RegisterRequest,
    settings: Mapping[str, Any],
    decision: _Decision,
    creds: RunnerCredentials,
    *,
    now: Callable[[], datetime],
) -> None:
    desired = _desired_entry(request, settings)
    if decision.entry is None:
        entry: dict[str, Any] = {
            "name": request.name,
            "url": request.gitlab_url.rstrip("/"),
            "id": creds.id,
            **_token_fields(creds, now, None),
            **desired,
        }
        doc.add_runner({k: v for k, v in entry.items() if v is not None})
        return
    values: dict[str, Any] = {"id": creds.id, **_token_fields(creds, now, decision.entry)}
    values.update(_config_changes(decision.entry, request, creds.id))
    values["id"] = creds.id
    doc.update_runner(_ref(decision.entry), values)


def _update(
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


def _check_valid(text: str, path: Path, *, ours: bool = False) -> None:
    report = validate_text(text, source=str(path))
    if report.valid:
        return
    first = report.errors[0].render(str(path))
    if ours:
        raise ConfigError(
            f"The new runner entry would make the config invalid: {first}",
            hint="Nothing was written and the new runner was removed from GitLab again; "
            "check the executor options.",
        )
    raise ConfigError(
        f"The config file is invalid: {first}"
        + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""),
        hint=f"Fix it first (`runnerctl config validate --config {path}`); nothing was "
        "changed in GitLab or on disk.",
    )


def _rollback(gitlab: RunnerAPI, creds: RunnerCredentials, cause: BaseException) -> None:
    runner_id = creds.id
    try:
        if gitlab.authenticated:
            gitlab.delete_runner(runner_id)
        else:  # legacy registration without an access token: the runner token suffices
            gitlab.delete_runner_by_token(creds.token)
        log.warning("runner %s was deleted again because the config write failed", runner_id)
    except ProvisionerError as exc:
        log.error("could not delete runner %s after a failure: %s", runner_id, exc.message)
        if isinstance(cause, ProvisionerError):
            cause.hint = (cause.hint or "") + (
                f" Runner {runner_id} was created in GitLab but could not be deleted again: "
                "delete it in GitLab (Settings > CI/CD > Runners)."
            )


def _delete_stale(gitlab: RunnerAPI, runner_id: int) -> list[str]:
    try:
        if gitlab.delete_runner(runner_id):
            return [f"Stale runner {runner_id} was deleted in GitLab."]
        return []
    except ProvisionerError as exc:
        return [f"Stale runner {runner_id} could not be deleted: {exc.message}"]


def _rbac_target(request: RegisterRequest) -> Path | None:
    if request.executor.executor is not Executor.KUBERNETES:
        return None
    return request.rbac_path


def _write_rbac(request: RegisterRequest) -> Path | None:
    target = _rbac_target(request)
    if target is None:
        return None
    text = render_manifests(rbac_manifests(request.executor.kubernetes, runner_name=request.name))
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return target
    _atomic_write(target, text, mode=0o644)
    return target


def _atomic_write(path: Path, text: str, *, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text, mode=mode)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the RBAC manifests to {path}: {exc.strerror}.",
            hint="The runner is registered; pass a writable --k8s-rbac-file and re-run "
            "(the re-run changes nothing else).",
        ) from None


def _index_of(doc: ConfigDocument, request: RegisterRequest) -> int:
    url = request.gitlab_url.rstrip("/")
    for index, entry in enumerate(doc.iter_runner_plain()):
        if entry.get("name") == request.name and str(entry.get("url", "")).rstrip("/") == url:
            return index
    raise AssertionError("the runner entry just written is missing")  # pragma: no cover


def _lint_warnings(doc: ConfigDocument, name: str) -> list[str]:
    return [
        f"{f.rule} ({f.severity.value}): {f.message}. Fix: {f.fix}"
        for f in lint_document(doc)
        if f.runner == name and f.rule != "RC006"
    ]


def _diff(before: str, after: str, path: Path) -> str:
    if before == after:
        return ""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (before)",
        tofile=f"{path} (after)",
    )
    return mask_tokens("".join(lines))


def mask_tokens(text: str) -> str:
    """Mask secrets in config diff lines: every value of a secret key (``token``, cache
    credentials...; any token shape, legacy ones too) and secret ``environment`` entries,
    with the same rules as ``runnerctl config show``."""

    def mask_line(match: re.Match[str]) -> str:
        key, value = match.group("key").lower(), match.group("value")
        if key in _SECRET_KEYS_FOLDED:
            return f'{match.group("head")}"{MASK}"'
        if key == "environment":
            entries = _TOML_STRING_RE.sub(
                lambda s: f'"{mask_environment_entry(s.group(1))}"', value
            )
            return match.group("head") + entries
        return match.group(0)

    return _ASSIGNMENT_LINE_RE.sub(mask_line, text)


# ---------------------------------------------------------------------------------------------
# unregister, rotate, list


def _find_configured(
    doc: ConfigDocument, *, name: str | None, runner_id: int | None
) -> dict[str, Any]:
    entries = list(doc.iter_runner_plain())
    if runner_id is not None:
        hits = [e for e in entries if e.get("id") == runner_id]
        what = f"id {runner_id}"
    else:
        hits = [e for e in entries if e.get("name") == name]
        what = f"name {name!r}"
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(f"{e.get('name')!r} (id {e.get('id')})" for e in entries) or "none"
    if not hits:
        raise ConfigError(
            f"No runner with {what} in {doc.source}.",
            hint=f"Configured runners: {known}.",
            exit_code=2,
        )
    raise ConfigError(
        f"{len(hits)} runners with {what} in {doc.source}.",
        hint="Name the runner by --id instead.",
    )


def unregister(
    *,
    name: str | None,
    runner_id: int | None,
    keep_server: bool,
    gitlab: RunnerAPI | None,
    store: ConfigStorePort,
    on_secret: SecretSink | None = None,
) -> UnregisterResult:
    """Delete the runner in GitLab (unless ``keep_server``) and remove its entry, under the lock."""
    if (name is None) == (runner_id is None):
        raise UsageError("Name the runner to remove: NAME or --id ID (one of them).")
    sink = on_secret or (lambda _s: None)
    state: dict[str, Any] = {"deleted": False, "warnings": []}

    def transaction(doc: ConfigDocument) -> None:
        entry = _find_configured(doc, name=name, runner_id=runner_id)
        token = str(entry.get("token") or "")
        if token:
            sink(token)
        rid = entry.get("id") if isinstance(entry.get("id"), int) and entry.get("id") else None
        if not keep_server:
            assert gitlab is not None
            if rid is None and token:
                rid = gitlab.verify(token).runner_id
            if rid is None:
                state["warnings"].append(
                    "The entry has no runner id and GitLab does not know its token; only the "
                    "config entry was removed."
                )
            elif gitlab.delete_runner(rid):
                state["deleted"] = True
            else:
                state["warnings"].append(f"Runner {rid} was already gone from GitLab.")
        state["entry"], state["id"] = entry, rid
        if len(doc.runner_tables()) == 1:
            # Removing the last element through remove_runner leaves ``runners = []`` at the
            # top of the file, which the document then refuses to load; drop the key instead.
            del doc.document["runners"]
        else:
            doc.remove_runner(_ref(entry))

    update = _update(store, transaction)
    if not update.changed:  # pragma: no cover - remove_runner always changes the text
        raise ConfigError(f"{store.path} was not changed.")
    entry = state["entry"]
    return UnregisterResult(
        name=str(entry.get("name", "")),
        runner_id=state["id"],
        config_path=store.path,
        deleted_in_gitlab=state["deleted"],
        warnings=tuple(state["warnings"]),
    )


def rotate_token(
    name: str,
    *,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    on_secret: SecretSink | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RotateResult:
    """Reset a runner's token in GitLab, write the new one atomically, and prove the swap.

    The new token must verify and the old one must be refused afterwards.
    """
    sink = on_secret or (lambda _s: None)
    state: dict[str, Any] = {}

    def transaction(doc: ConfigDocument) -> None:
        entry = _find_configured(doc, name=name, runner_id=None)
        old = str(entry.get("token") or "")
        if old:
            sink(old)
        rid = entry.get("id") if isinstance(entry.get("id"), int) and entry.get("id") else None
        if rid is None and old:
            rid = gitlab.verify(old).runner_id
        if rid is None:
            raise ConfigError(
                f"Runner {name!r} has no id in the config and GitLab does not accept its token.",
                hint=f"Register it again: `runnerctl unregister {name} --keep-server`, then "
                "`runnerctl register ...`.",
            )
        creds = gitlab.reset_token(rid)
        sink(creds.token)
        state.update(old=old, creds=creds)
        values = {"id": rid, **_token_fields(creds, now, entry)}
        doc.update_runner(_ref(entry), values)

    try:
        update = _update(store, transaction)
    except ConfigError as exc:
        if "creds" in state:
            exc.hint = (exc.hint or "") + (
                " The token was already reset in GitLab, so the runner cannot authenticate "
                f"until `runnerctl token rotate {name}` succeeds."
            )
        raise
    creds: RunnerCredentials = state["creds"]
    warnings: list[str] = []
    if update.kept_from_disk:
        warnings.append("gitlab-runner wrote a newer token meanwhile; that one was kept.")
    new_ok = gitlab.verify(creds.token).valid
    old_refused = not gitlab.verify(state["old"]).valid if state["old"] else True
    if not new_ok:
        raise GitLabError(
            f"GitLab does not accept the new token of runner {creds.id}.",
            hint="Run `runnerctl token rotate` again; config.toml holds the latest token.",
        )
    if not old_refused:
        warnings.append("GitLab still accepts the old token (it may allow a grace period).")
    return RotateResult(
        name=name,
        runner_id=creds.id,
        config_path=store.path,
        token_expires_at=creds.token_expires_at,
        new_token_verified=new_ok,
        old_token_refused=old_refused,
        warnings=tuple(warnings),
        token=creds.token,
    )


def list_runners(
    *,
    scope: Scope | None,
    status: RunnerStatus | None,
    tags: tuple[str, ...],
    gitlab: RunnerAPI,
    details: bool = True,
) -> tuple[Runner, ...]:
    """Runners GitLab knows in ``scope`` (all the token's own runners without one).

    List entries lack ``contacted_at``; with ``details`` each runner is read once more for it.
    """
    namespace_id: int | None = None
    runner_type: RunnerType | None = None
    if scope is not None:
        runner_type = scope.runner_type
        namespace_id = scope.numeric_id
        if scope.runner_type is not RunnerType.INSTANCE and namespace_id is None:
            assert scope.ref is not None
            resolve = (
                gitlab.resolve_group
                if scope.runner_type is RunnerType.GROUP
                else gitlab.resolve_project
            )
            namespace_id = resolve(scope.ref).id
    found = gitlab.list_runners(ListFilter(runner_type, namespace_id, status, tags))
    if not details:
        return found
    return tuple(_with_details(gitlab, found))


def _with_details(gitlab: RunnerAPI, runners: tuple[Runner, ...]) -> Iterator[Runner]:
    for runner in runners:
        full = gitlab.find_runner(runner.id)
        yield full if full is not None else replace(runner)
