"""``token rotate``: reset a runner's token, write the new one, and prove the swap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from provisioner.errors import ConfigError, GitLabError, UsageError
from provisioner.gitlab.models import RunnerCredentials
from provisioner.registration.entries import find_configured, ref, token_fields
from provisioner.registration.model import (
    ConfigStorePort,
    RotateResult,
    RunnerAPI,
    SecretSink,
    ignore_secret,
    update_store,
)
from provisioner.runner_config import ConfigDocument


@dataclass(frozen=True)
class _Reset:
    """A token reset GitLab has made: the old token and the new credentials."""

    old_token: str = field(repr=False)
    creds: RunnerCredentials
    name: str = ""


def rotate_token(
    name: str | None,
    *,
    runner_id: int | None = None,
    gitlab: RunnerAPI,
    store: ConfigStorePort,
    on_secret: SecretSink | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RotateResult:
    """Reset a runner's token in GitLab, write the new one atomically, and prove the swap.

    The new token must verify and the old one must be refused afterwards. The runner is named
    by ``name`` or by ``runner_id`` (one of them).
    """
    if (name is None) == (runner_id is None):
        raise UsageError("Name the runner to rotate: NAME or --id ID (one of them).")
    sink = on_secret or ignore_secret
    # Filled as soon as GitLab has reset the token: a failed write must then say so.
    resets: list[_Reset] = []

    def transaction(doc: ConfigDocument) -> None:
        entry = find_configured(doc, name=name, runner_id=runner_id)
        label = str(entry.get("name") or "")
        reset = _reset(label, entry.get("token"), entry.get("id"), gitlab=gitlab, sink=sink)
        resets.append(reset)
        values = {"id": reset.creds.id, **token_fields(reset.creds, now, entry)}
        doc.update_runner(ref(entry), values)

    try:
        update = update_store(store, transaction)
    except ConfigError as exc:
        if resets:
            exc.hint = (exc.hint or "") + (
                " The token was already reset in GitLab, so the runner cannot authenticate "
                f"until `runnerctl token rotate {_selector(name, runner_id)}` succeeds."
            )
        raise
    (reset,) = resets
    creds = reset.creds
    warnings: list[str] = []
    if update.kept_from_disk:
        warnings.append("gitlab-runner wrote a newer token meanwhile; that one was kept.")
    new_ok = gitlab.verify(creds.token).valid
    old_refused = not gitlab.verify(reset.old_token).valid if reset.old_token else True
    if not new_ok:
        raise GitLabError(
            f"GitLab does not accept the new token of runner {creds.id}.",
            hint="Run `runnerctl token rotate` again; config.toml holds the latest token.",
        )
    if not old_refused:
        warnings.append("GitLab still accepts the old token (it may allow a grace period).")
    return RotateResult(
        name=reset.name,
        runner_id=creds.id,
        config_path=store.path,
        token_expires_at=creds.token_expires_at,
        new_token_verified=new_ok,
        old_token_refused=old_refused,
        warnings=tuple(warnings),
        token=creds.token,
    )


def _selector(name: str | None, runner_id: int | None) -> str:
    return f"--id {runner_id}" if runner_id is not None else str(name)


def _reset(
    name: str, token: object, raw_id: object, *, gitlab: RunnerAPI, sink: SecretSink
) -> _Reset:
    old = str(token or "")
    if old:
        sink(old)
    rid = raw_id if isinstance(raw_id, int) and raw_id else None
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
    return _Reset(old, creds, name)
