"""``register``: make GitLab and config.toml hold exactly one runner as the request describes.

The identity of a configured runner is its id and its token, never its name alone: an entry
found by name (and URL) is only reused when GitLab still accepts its token and reports the same
runner, attached where ``--scope`` says.

Every change of config.toml happens inside one :meth:`ConfigStore.update` transaction. The plan
is made and executed inside it, under the file lock, so concurrent ``register`` runs into the
same file serialise instead of racing (and cannot both create "the" runner of one name). If
anything fails after GitLab created a runner, the plan's rollback deletes that runner again
before the error surfaces.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, GitLabError, ProvisionerError
from provisioner.fsutil import atomic_write
from provisioner.gitlab.models import Runner, RunnerCredentials, RunnerType
from provisioner.registration.entries import (
    check_valid,
    config_diff,
    index_of,
    lint_warnings,
)
from provisioner.registration.executors import (
    Executor,
    executor_settings,
    rbac_manifests,
    render_manifests,
)
from provisioner.registration.interrupts import interrupts_fail, interrupts_refused
from provisioner.registration.journal import Intent, Journal, recover
from provisioner.registration.model import (
    ConfigStorePort,
    RegisterRequest,
    RegisterResult,
    RunnerAPI,
    SecretSink,
    ignore_secret,
    update_store,
    validate_request,
)
from provisioner.registration.plan import RegistrationPlan, Undo, plan_registration
from provisioner.runner_config import ConfigDocument, ConfigStore, UpdateResult
from provisioner.secrets import MASK

log = logging.getLogger(__name__)

_LOST_ANSWER = (
    "GitLab's answer to the create call was lost; the runner it had created was found and its "
    "token reset, so no duplicate exists."
)
_LEGACY = (
    "Registration tokens are deprecated (disabled by default since GitLab 17.0, planned for "
    "removal in 20.0): create runners with an access token that has the create_runner scope "
    "instead."
)


@dataclass(frozen=True)
class Applied:
    """What executing a plan inside the transaction did."""

    plan: RegistrationPlan
    creds: RunnerCredentials | None
    tags: tuple[str, ...]
    diff: str
    lint: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


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
    sink = on_secret or ignore_secret
    if request.legacy_registration_token:
        sink(request.legacy_registration_token)
    settings = executor_settings(request.executor)
    start = gitlab.request_count
    if dry_run:
        return _dry_run(
            request, settings, gitlab=gitlab, store=store, sink=sink, start=start, now=now
        )

    created: list[tuple[RunnerCredentials, tuple[Undo, ...]]] = []
    done: list[Applied] = []
    journal = _journal(request, gitlab=gitlab, store=store)
    intents: list[Intent] = []
    recovered: list[str] = []

    def on_created(creds: RunnerCredentials, undo: tuple[Undo, ...]) -> None:
        created.append((creds, undo))

    def record(intent: Intent) -> None:
        assert journal is not None
        journal.record(intent)
        intents.append(intent)

    def undo(exc: BaseException, *, locked: bool) -> None:
        """Delete what this run created; drop its journal entries once nothing is left."""
        left = False
        while created:
            creds, steps = created.pop()
            with interrupts_refused(f"runner {creds.id} is being deleted again"):
                left |= not _rollback(gitlab, creds, steps, exc)
        if not left:  # an entry whose runner could not be deleted is retried by the next run
            _forget(journal, store, intents, locked=locked)

    def transaction(doc: ConfigDocument) -> None:
        before = doc.dumps()
        check_valid(before, store.path)
        if journal is not None:
            recovered.extend(recover(journal, doc, url=request.gitlab_url, gitlab=gitlab))
        try:
            plan = plan_registration(request, doc, settings, gitlab=gitlab, sink=sink)
            done.append(
                execute(
                    plan,
                    doc,
                    before,
                    path=store.path,
                    gitlab=gitlab,
                    sink=sink,
                    now=now,
                    created=on_created,
                    record=record if journal is not None else None,
                )
            )
        except BaseException as exc:
            undo(exc, locked=True)  # still under the lock: the journal is cleaned up with it
            raise

    try:
        with interrupts_fail():
            update = update_store(store, transaction, create=True)
    except BaseException as exc:
        undo(exc, locked=False)  # the write itself failed
        raise
    _forget(journal, store, intents, locked=False)
    (applied,) = done
    result = _finish(applied, update, gitlab=gitlab, store=store, start=start)
    if recovered:
        result = replace(result, warnings=(*recovered, *result.warnings))
    return result


def _journal(
    request: RegisterRequest, *, gitlab: RunnerAPI, store: ConfigStorePort
) -> Journal | None:
    """The intent journal, for a local config.toml and creates made with an access token."""
    if request.legacy_registration_token or not gitlab.authenticated:
        return None
    return Journal(store.path) if isinstance(store, ConfigStore) else None


def _forget(
    journal: Journal | None, store: ConfigStorePort, intents: list[Intent], *, locked: bool
) -> None:
    """Drop this run's journal entries, under the config lock (recovery reads them there)."""
    if journal is None or not intents or not isinstance(store, ConfigStore):
        return
    with contextlib.nullcontext() if locked else store.locked():
        while intents:
            journal.forget(intents.pop().marker)


def execute(
    plan: RegistrationPlan,
    doc: ConfigDocument,
    before: str,
    *,
    path: Path,
    gitlab: RunnerAPI,
    sink: SecretSink,
    now: Callable[[], datetime],
    created: Callable[[RunnerCredentials, tuple[Undo, ...]], None],
    record: Callable[[Intent], None] | None = None,
) -> Applied:
    """Make the plan's API calls and write its entry into ``doc`` (the store writes the file).

    ``created`` is told about a new runner and the plan's rollback steps as soon as it exists,
    so the caller can remove it again whatever fails afterwards.
    """
    request = plan.request
    creds: RunnerCredentials | None = None
    warnings: list[str] = []
    tags = tuple(sorted(set(request.tags)))
    if plan.creates:
        # Told as soon as the runner exists, before it is read back: a failure of any later
        # step (a token that may create but not read, a 5xx) deletes it again.
        creds, runner = _create(
            request,
            gitlab=gitlab,
            sink=sink,
            created=lambda c: created(c, plan.rollback),
            record=record,
        )
        if request.legacy_registration_token:
            warnings.append(_LEGACY)
        if creds.recovered:
            warnings.append(_LOST_ANSWER)
        if runner is not None:
            tags = runner.tag_list
    elif plan.server_changes:
        assert plan.runner_id is not None
        updated = gitlab.update_runner(plan.runner_id, dict(plan.server_changes))
        _confirm_server(updated, request, "after the update")
        tags = updated.tag_list
    plan.write_entry(doc, creds=creds, now=now)
    after = doc.dumps()
    lint: tuple[str, ...] = ()
    if after != before:
        # The rest of the file passed validation above; check just this runner's entry
        # (a whole-file re-parse per runner dominated the cost of large files).
        mine = doc.runner_tables()[index_of(doc, request)]
        probe = ConfigDocument.empty()
        probe.add_runner(mine.unwrap())
        check_valid(probe.dumps(), path, ours=True)
        lint = tuple(lint_warnings(probe, request.name))
    return Applied(
        plan,
        creds,
        tags,
        config_diff(before, after, path),
        lint,
        tuple(warnings),
    )


def _finish(
    applied: Applied,
    update: UpdateResult,
    *,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    start: int,
) -> RegisterResult:
    plan = applied.plan
    runner_id = applied.creds.id if applied.creds else plan.runner_id
    warnings = [*plan.warnings, *applied.warnings]
    if plan.stale_id is not None and gitlab.authenticated:
        warnings.extend(_delete_stale(gitlab, plan.stale_id))
    elif plan.stale_id is not None:
        warnings.append(
            f"Stale runner {plan.stale_id} stays in GitLab (no access token to delete it)."
        )
    if update.kept_from_disk:
        warnings.append(
            "config.toml held a newer token written by gitlab-runner; it was kept: "
            + ", ".join(update.kept_from_disk)
        )
    rbac = _write_rbac(plan.request)
    token = applied.creds.token if applied.creds else (plan.entry or {}).get("token")
    if update.changed:
        warnings.extend(applied.lint)
    return RegisterResult(
        action=plan.action,
        name=plan.request.name,
        config_path=store.path,
        runner_id=runner_id,
        config_changed=update.changed,
        server_changes=tuple(sorted(plan.server_changes)),
        config_changes=tuple(sorted(plan.config_changes)),
        calls=plan.calls,
        diff=applied.diff,
        rbac_path=rbac,
        stale_runner_id=plan.stale_id,
        tags=applied.tags,
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
        check_valid(before, store.path)
    else:
        doc = ConfigDocument.empty()
        before = ""
    plan = plan_registration(request, doc, settings, gitlab=gitlab, sink=sink)
    if gitlab.authenticated and not request.legacy_registration_token:
        _check_scopes(plan, gitlab.token_scopes())
    plan.write_entry(doc, creds=RunnerCredentials(0, MASK, None), now=now)
    after = doc.dumps()
    return RegisterResult(
        action=plan.action,
        name=request.name,
        config_path=store.path,
        runner_id=plan.runner_id,
        dry_run=True,
        config_changed=after != before,
        server_changes=tuple(sorted(plan.server_changes)),
        config_changes=tuple(sorted(plan.config_changes)),
        calls=plan.calls,
        diff=config_diff(before, after, store.path),
        rbac_path=_rbac_target(request),
        stale_runner_id=plan.stale_id,
        tags=tuple(sorted(set(request.tags))),
        warnings=plan.warnings,
        requests=gitlab.request_count - start,
    )


# ---------------------------------------------------------------------------------------------
# GitLab side

# manage_runner (GitLab 17.1+) covers the runner endpoints like api does.
_RUNNER_WRITE = frozenset({"api", "manage_runner"})
_RUNNER_READ = _RUNNER_WRITE | {"read_api"}


def _check_scopes(plan: RegistrationPlan, scopes: frozenset[str] | None) -> None:
    """Refuse a dry run whose real run the token's scopes would fail (None: not known)."""
    if scopes is None:
        return
    needs: list[tuple[str, frozenset[str]]] = []
    if plan.creates:
        needs.append(("create the runner (POST /user/runners)", _RUNNER_WRITE | {"create_runner"}))
        needs.append(("read it back (GET /runners/:id)", _RUNNER_READ))
    if plan.server_changes:
        needs.append(("update it (PUT /runners/:id)", _RUNNER_WRITE))
    if plan.stale_id is not None:
        needs.append(("delete the stale runner (DELETE /runners/:id)", _RUNNER_WRITE))
    missing = [(what, allowed) for what, allowed in needs if not scopes & allowed]
    if not missing:
        return
    have = ", ".join(sorted(scopes)) or "none"
    what, allowed = missing[0]
    raise GitLabError(
        f"The access token's scopes ({have}) do not allow register to {what}; the real run "
        "would fail.",
        hint=f"Use a token with the {' or '.join(sorted(allowed))} scope"
        + (" as well as create_runner" if "create_runner" in scopes else "")
        + ". The README lists the scopes each command needs.",
    )


def _create(
    request: RegisterRequest,
    *,
    gitlab: RunnerAPI,
    sink: SecretSink,
    created: Callable[[RunnerCredentials], None],
    record: Callable[[Intent], None] | None = None,
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
    elif record is not None:
        # Durable before the create is sent: a run killed after it is cleaned up by the next.
        intent = Intent.new(request.gitlab_url, spec)
        record(intent)
        creds = gitlab.create_runner(spec, marker=intent.marker)
    else:
        creds = gitlab.create_runner(spec)
    sink(creds.token)
    created(creds)
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


def _rollback(
    gitlab: RunnerAPI,
    creds: RunnerCredentials,
    undo: tuple[Undo, ...],
    cause: BaseException,
) -> bool:
    """Run the plan's rollback steps for the runner it created, and say so (True: deleted).

    When the access token may not delete by id (a token with only the ``create_runner``
    scope), the runner's own token still can: ``DELETE /runners`` needs no other right.
    """
    runner_id = creds.id
    reason = (
        "the command was interrupted"
        if isinstance(cause, KeyboardInterrupt)
        else "a later step failed"
    )
    try:
        for step in undo:
            if step is Undo.DELETE_BY_ID:
                try:
                    gitlab.delete_runner(runner_id)
                except GitLabError:
                    gitlab.delete_runner_by_token(creds.token)
            else:  # legacy registration without an access token: the runner token suffices
                gitlab.delete_runner_by_token(creds.token)
    except ProvisionerError as exc:
        log.error("could not delete runner %s after a failure: %s", runner_id, exc.message)
        if isinstance(cause, ProvisionerError):
            cause.hint = (cause.hint or "") + (
                f" Runner {runner_id} was created in GitLab but could not be deleted again: "
                "delete it in GitLab (Settings > CI/CD > Runners)."
            )
        return False
    log.warning("Runner %s was deleted again in GitLab because %s.", runner_id, reason)
    if isinstance(cause, ProvisionerError):
        cause.hint = (cause.hint or "").rstrip() + (
            f" Runner {runner_id}, created before the failure, was deleted again; nothing was "
            "left in GitLab or written to the config."
        ).lstrip()
    return True


def _delete_stale(gitlab: RunnerAPI, runner_id: int) -> list[str]:
    try:
        if gitlab.delete_runner(runner_id):
            return [f"Stale runner {runner_id} was deleted in GitLab."]
        return []
    except ProvisionerError as exc:
        return [f"Stale runner {runner_id} could not be deleted: {exc.message}"]


# ---------------------------------------------------------------------------------------------
# Kubernetes RBAC manifests


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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, text, mode=0o644)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the RBAC manifests to {target}: {exc.strerror}.",
            hint="The runner is registered; pass a writable --k8s-rbac-file and re-run "
            "(the re-run changes nothing else).",
        ) from None
    return target
