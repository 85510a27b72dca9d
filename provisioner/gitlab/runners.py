"""Runners: create (with lost-answer recovery), legacy register, verify, read, update, delete."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from provisioner.errors import GitLabError
from provisioner.gitlab.models import (
    AccessLevel,
    ListFilter,
    Runner,
    RunnerCredentials,
    RunnerSpec,
    RunnerStatus,
    RunnerType,
    VerifyResult,
    parse_time,
)
from provisioner.gitlab.transport import NEW_WORKFLOW_HINT

if TYPE_CHECKING:
    from provisioner.gitlab.transport import Transport

log = logging.getLogger(__name__)

MARKER_PREFIX = "runnerctl create "


class RunnerChangedError(GitLabError):
    """GitLab refused a conditional change (412): the runner changed since the given time."""


@dataclass(frozen=True)
class RunnerManager:
    """One host's gitlab-runner process using a runner (``GET /runners/:id/managers``)."""

    system_id: str
    contacted_at: datetime | None = None
    status: str = ""


class RunnersMixin:
    """The runner calls of :class:`~provisioner.gitlab.client.GitLabAPI`."""

    _t: Transport

    def create_runner(self, spec: RunnerSpec, *, marker: str | None = None) -> RunnerCredentials:
        """``POST /user/runners``: create a runner; its ``glrt-`` token comes back.

        A lost answer (5xx, dropped connection) is not blindly re-posted: the runner carrying
        this call's marker is looked up first and, if it exists, its token is reset instead.
        """
        marker = marker or f"{MARKER_PREFIX}{uuid.uuid4().hex}"

        def recover() -> RunnerCredentials | None:
            found = self.find_marked_runner(spec, marker)
            if found is None:
                return None
            log.info("runner %s was created before the answer got lost; reusing it", found)
            fresh = self.reset_token(found)
            return RunnerCredentials(found, fresh.token, fresh.token_expires_at, recovered=True)

        return self._t.create(
            "post",
            "/user/runners",
            body={**spec.body(), "maintenance_note": marker},
            what=f"creating runner {spec.description!r}",
            hints=_create_hints(spec),
            parse=lambda response: _credentials(self._t.json(response)),
            recover=recover,
        )

    def find_marked_runner(self, spec: RunnerSpec, marker: str) -> int | None:
        """The id of the runner ``spec`` describes whose maintenance note is ``marker``."""
        if spec.runner_type is RunnerType.GROUP:
            path = f"/groups/{spec.group_id}/runners"
        elif spec.runner_type is RunnerType.PROJECT:
            path = f"/projects/{spec.project_id}/runners"
        else:
            path = "/runners/all"
        candidates = [
            item
            for item in self._t.paginate(
                path,
                {"type": spec.runner_type.value},
                what="looking for a runner whose creation answer got lost",
            )
            if item.get("description") == spec.description
        ]
        for item in candidates:
            runner = self.get_runner(int(item["id"]))
            if runner.maintenance_note == marker:
                return runner.id
        return None

    def register_legacy(self, registration_token: str, spec: RunnerSpec) -> RunnerCredentials:
        """``POST /runners`` with a registration token (deprecated; 410 when disabled)."""
        # The same settings as a create, minus where the runner goes: the token decides that.
        body: dict[str, Any] = {
            key: value
            for key, value in spec.body().items()
            if key not in ("runner_type", "group_id", "project_id")
        }
        body["token"] = registration_token
        response = self._t.require(
            "post",
            "/runners",
            body=body,
            what="registering a runner with a registration token",
            hints={
                410: NEW_WORKFLOW_HINT,
                403: "GitLab refused the registration token: copy the current one from the "
                "group/project CI/CD settings, or better, use the new workflow without "
                "--legacy-registration-token-env.",
            },
            # No marker to look for: a re-sent legacy register could leave a duplicate runner.
            idempotent=False,
        )
        return _credentials(self._t.json(response))

    def token_scopes(self) -> frozenset[str] | None:
        """``GET /personal_access_tokens/self``: the access token's scopes (None: unknown).

        GitLab answers this for personal, group and project access tokens of any scope; an
        OAuth token or an older GitLab gets None, and callers then skip the check.
        """
        response = self._t.request(
            "get",
            "/personal_access_tokens/self",
            what="reading the access token's scopes",
            missing=(401, 403, 404),
        )
        data = self._t.json(response) if response is not None else None
        if not isinstance(data, dict) or not isinstance(data.get("scopes"), list):
            return None
        return frozenset(str(scope) for scope in data["scopes"])

    def verify(self, token: str) -> VerifyResult:
        """``POST /runners/verify``: does GitLab accept this runner token?"""
        response = self._t.request(
            "post",
            "/runners/verify",
            body={"token": token},
            what="verifying a runner token",
            missing=(401, 403, 404, 422),
        )
        if response is None:
            return VerifyResult(valid=False)
        data = self._t.json(response)
        if isinstance(data, dict) and data.get("id") is not None:
            return VerifyResult(True, int(data["id"]), parse_time(data.get("token_expires_at")))
        return VerifyResult(valid=True)

    def get_runner(self, runner_id: int) -> Runner:
        """``GET /runners/:id``: the full details (tags, flags, last contact)."""
        response = self._t.require(
            "get",
            f"/runners/{runner_id}",
            what=f"reading runner {runner_id}",
            hints={
                403: "Reading a runner needs the api or read_api scope (manage_runner on GitLab "
                "17.1+); a token with only create_runner can create runners but not read them "
                "back. Mint a token with the create_runner and api scopes.",
                404: f"Runner {runner_id} does not exist (any more) in GitLab.",
            },
        )
        return _runner(self._t.json(response), detailed=True)

    def find_runner(self, runner_id: int) -> Runner | None:
        """Like :meth:`get_runner`, but ``None`` when GitLab has no such runner."""
        response = self._t.request(
            "get", f"/runners/{runner_id}", what=f"reading runner {runner_id}", missing=(404,)
        )
        return None if response is None else _runner(self._t.json(response), detailed=True)

    def update_runner(self, runner_id: int, changes: Mapping[str, Any]) -> Runner:
        """``PUT /runners/:id`` with only the changed server-side settings."""
        response = self._t.require(
            "put",
            f"/runners/{runner_id}",
            body=dict(changes),
            what=f"updating runner {runner_id}",
            hints={
                403: "The token's user may not edit this runner: it needs Owner on the "
                "group, Maintainer on the project, or admin for instance runners.",
            },
        )
        return _runner(self._t.json(response), detailed=True)

    def delete_runner_by_token(self, token: str) -> bool:
        """``DELETE /runners`` authenticated by the runner's own token (no access token needed).

        Returns ``False`` when GitLab no longer knows the token (after a retry, that can mean
        the first attempt went through).
        """
        response = self._t.request(
            "delete",
            "/runners",
            body={"token": token},
            what="deleting a runner by its token",
            missing=(401, 403, 404),
        )
        return response is not None

    def delete_runner(self, runner_id: int, *, unmodified_since: datetime | None = None) -> bool:
        """``DELETE /runners/:id``; ``False`` when it was already gone.

        With ``unmodified_since``, the request carries ``If-Unmodified-Since`` and GitLab
        refuses (412) to delete a runner changed after that moment: that raises
        :class:`RunnerChangedError`.
        """
        headers = (
            {"If-Unmodified-Since": format_datetime(unmodified_since.astimezone(UTC), usegmt=True)}
            if unmodified_since is not None
            else None
        )
        response = self._t.request(
            "delete",
            f"/runners/{runner_id}",
            what=f"deleting runner {runner_id}",
            hints={
                403: "The token's user may not delete this runner (it may be shared with "
                "other projects, or need admin rights); use --keep-server to only drop "
                "the config entry."
            },
            # After a retried delete a 404 means the first attempt went through.
            missing=(404, 412) if headers else (404,),
            headers=headers,
        )
        if response is not None:
            return True
        if headers and self.find_runner(runner_id) is not None:
            # Still there: the None was GitLab's 412, not a 404.
            raise RunnerChangedError(
                f"Runner {runner_id} was changed in GitLab after "
                f"{unmodified_since:%Y-%m-%d %H:%M:%S %Z}; it was not deleted.",
                hint="Plan again to see its current state.",
            )
        return False

    def managers(self, runner_id: int) -> tuple[RunnerManager, ...]:
        """``GET /runners/:id/managers``: one entry per host (system id) using the runner."""
        items = self._t.paginate(
            f"/runners/{runner_id}/managers",
            {},
            what=f"listing the managers of runner {runner_id}",
            hints={404: f"Runner {runner_id} does not exist (any more) in GitLab."},
        )
        return tuple(
            RunnerManager(
                system_id=str(item.get("system_id") or ""),
                contacted_at=parse_time(item.get("contacted_at")),
                status=str(item.get("status") or ""),
            )
            for item in items
        )

    def reset_token(self, runner_id: int) -> RunnerCredentials:
        """``POST /runners/:id/reset_authentication_token``: a new token, the old one dies.

        Retried like a read: a reset whose answer got lost is superseded by the next one, and
        only the last token counts.
        """
        response = self._t.require(
            "post",
            f"/runners/{runner_id}/reset_authentication_token",
            what=f"resetting the token of runner {runner_id}",
            hints={404: f"Runner {runner_id} does not exist (any more) in GitLab."},
        )
        data = self._t.json(response)
        return RunnerCredentials(
            runner_id, str(data["token"]), parse_time(data.get("token_expires_at"))
        )

    def list_runners(self, flt: ListFilter) -> tuple[Runner, ...]:
        """Runners of an instance, group or project, filtered by status and tags."""
        query: dict[str, Any] = {}
        if flt.status is not None:
            if flt.status is RunnerStatus.PAUSED:
                query["paused"] = "true"
            else:
                query["status"] = flt.status.value
        if flt.tags:
            query["tag_list"] = ",".join(flt.tags)
        if flt.runner_type is RunnerType.GROUP:
            path = f"/groups/{flt.namespace_id}/runners"
        elif flt.runner_type is RunnerType.PROJECT:
            path = f"/projects/{flt.namespace_id}/runners"
        elif flt.runner_type is RunnerType.INSTANCE:
            path = "/runners/all"
        else:
            path = "/runners"
        if flt.runner_type is not None:
            # Group and project lists include inherited and instance runners; keep this level.
            query["type"] = flt.runner_type.value
        items = self._t.paginate(
            path,
            query,
            what="listing runners",
            hints={403: "Listing every instance runner needs an administrator's token."},
        )
        return tuple(_runner(item, detailed=False) for item in items)


# ---------------------------------------------------------------------------------------------
# Parsing


def _create_hints(spec: RunnerSpec) -> dict[int, str]:
    where = {
        RunnerType.INSTANCE: "an administrator's token for instance runners",
        RunnerType.GROUP: "the Owner role on the group",
        RunnerType.PROJECT: "the Maintainer role on the project",
    }[spec.runner_type]
    return {
        403: "The token lacks the create_runner (or api) scope, or its user lacks "
        f"{where}. Mint a token with create_runner scope as such a user.",
        404: "The group or project was not found for this token's user.",
    }


def _credentials(data: Any) -> RunnerCredentials:
    if not isinstance(data, dict) or "id" not in data or not data.get("token"):
        raise GitLabError(
            "GitLab's answer to the runner creation lacks the id or token.",
            hint="Check that the server is GitLab 16.0 or newer.",
        )
    return RunnerCredentials(
        int(data["id"]), str(data["token"]), parse_time(data.get("token_expires_at"))
    )


def _runner(data: Any, *, detailed: bool) -> Runner:
    if not isinstance(data, dict) or "id" not in data:
        raise GitLabError("GitLab sent a runner without an id.")
    tags = data.get("tag_list")
    if isinstance(tags, str):
        tags = [t for t in tags.split(",") if t]
    level = data.get("access_level")
    groups = [g for g in data.get("groups") or () if isinstance(g, dict)]
    projects = [p for p in data.get("projects") or () if isinstance(p, dict)]
    paused = bool(data.get("paused", not data.get("active", True)))
    try:
        runner_type = RunnerType(str(data.get("runner_type")))
    except ValueError:
        runner_type = RunnerType.INSTANCE if data.get("is_shared") else RunnerType.PROJECT
    return Runner(
        id=int(data["id"]),
        description=str(data.get("description") or ""),
        runner_type=runner_type,
        status=RunnerStatus.parse(data.get("status")),
        paused=paused,
        online=data.get("online"),
        tag_list=tuple(sorted(str(t) for t in tags or ())),
        run_untagged=data.get("run_untagged"),
        locked=data.get("locked"),
        access_level=AccessLevel(level) if level in ("not_protected", "ref_protected") else None,
        maximum_timeout=data.get("maximum_timeout"),
        contacted_at=parse_time(data.get("contacted_at")),
        maintenance_note=data.get("maintenance_note"),
        group_ids=tuple(int(g["id"]) for g in groups if "id" in g),
        project_ids=tuple(int(p["id"]) for p in projects if "id" in p),
        # GitLab's runner details carry group web_urls (…/groups/<full path>), not paths.
        group_paths=tuple(
            str(g.get("web_url", "")).split("/groups/", 1)[-1]
            for g in groups
            if "/groups/" in str(g.get("web_url", ""))
        ),
        project_paths=tuple(
            str(p["path_with_namespace"]) for p in projects if p.get("path_with_namespace")
        ),
        detailed=detailed,
    )
