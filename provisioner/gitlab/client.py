"""The GitLab REST adapter: the only module that imports python-gitlab.

Everything above this module sees frozen dataclasses and :class:`~provisioner.errors.GitLabError`
with a hint; nothing above it catches ``gitlab.exceptions.*`` or ``requests.*``.

Retries are ours, not python-gitlab's, because python-gitlab would blindly re-send a
``POST /user/runners`` after a 502 and create a second runner. Here:

- 429 and 5xx answers and connection failures are retried with exponential backoff that obeys
  ``Retry-After`` (integer seconds, as GitLab's Rack::Attack sends it);
- a create whose answer got lost (5xx or a dropped connection) is retried only after looking
  for the runner it may already have created, using a one-off marker in ``maintenance_note``;
  a runner found that way gets a fresh token through ``reset_authentication_token``.

Every HTTP request goes through one ``requests.Session`` whose response hook counts requests
(``GitLabAPI.request_count``), for the request-budget benchmark.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from provisioner.errors import GitLabError
from provisioner.secrets import redact

if TYPE_CHECKING:
    import gitlab
    import requests

from provisioner.gitlab.connection import ACCESS_HINT
from provisioner.gitlab.models import (
    AccessLevel,
    ConnectionSettings,
    DistFile,
    Job,
    ListFilter,
    Namespace,
    Package,
    Pipeline,
    Project,
    Runner,
    RunnerCredentials,
    RunnerSpec,
    RunnerStatus,
    RunnerType,
    Variable,
    VerifyResult,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0
MARKER_PREFIX = "runnerctl create "

NEW_WORKFLOW_HINT = (
    "This GitLab has registration tokens disabled (the default since GitLab 17.0). Use the "
    "new workflow instead: drop --legacy-registration-token-env and run `runnerctl register` "
    "with an access token that has the create_runner scope (User settings > Access tokens, "
    "or a group/project access token with the Owner/Maintainer role); runnerctl then creates "
    "the runner with POST /user/runners and gets a glrt- token."
)


# ---------------------------------------------------------------------------------------------
# The adapter


@dataclass
class _Outcome:
    """What one HTTP exchange ended in, as seen by the retry loop."""

    status: int | None
    message: str
    retry_after: float | None = None


class GitLabAPI:
    """Typed access to the runner-related part of GitLab's REST API."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import gitlab as gitlab_module
        import requests

        self.settings = settings
        self._sleep = sleep
        self._session = session if session is not None else requests.Session()
        self._session.hooks["response"].append(self._on_response)
        self._requests = 0
        self._last_headers: Mapping[str, str] = {}
        verify: bool | str = True
        if settings.insecure:
            import urllib3

            # One warning from us instead of urllib3's on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS verification of %s is off (--insecure)", settings.url)
            verify = False
        elif settings.ca_bundle is not None:
            verify = str(settings.ca_bundle)
        self._gl: gitlab.Gitlab = gitlab_module.Gitlab(
            settings.url,
            private_token=settings.token or None,
            ssl_verify=verify,
            timeout=settings.timeout,
            retry_transient_errors=False,
            session=self._session,
            user_agent=f"runnerctl (python-gitlab {gitlab_module.__version__})",
        )

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> GitLabAPI:
        """The real wiring: a fresh session, real sleeping."""
        return cls(settings)

    # -- bookkeeping -----------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        """True when an access token is configured (the legacy path can run without one)."""
        return bool(self.settings.token)

    @property
    def request_count(self) -> int:
        """How many HTTP requests this client has sent (retries included)."""
        return self._requests

    def _on_response(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._requests += 1
        self._last_headers = dict(response.headers)
        request = response.request
        path = urlsplit(request.url or "").path
        log.debug(
            "%s %s -> %s (%.0f ms)",
            request.method,
            path,
            response.status_code,
            response.elapsed.total_seconds() * 1000,
        )

    # -- low level -------------------------------------------------------------------------------

    def _send(
        self,
        verb: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> requests.Response | _Outcome:
        """One HTTP exchange; failures come back as an :class:`_Outcome`, never raised."""
        import gitlab.exceptions
        import requests

        self._last_headers = {}
        try:
            return self._gl.http_request(
                verb,
                path,
                query_data=dict(query or {}),
                post_data=dict(body) if body is not None else None,
                obey_rate_limit=False,
                retry_transient_errors=False,
                max_retries=0,
            )
        except gitlab.exceptions.GitlabHttpError as exc:
            return _Outcome(exc.response_code, _message(exc), _retry_after(self._last_headers))
        except gitlab.exceptions.GitlabAuthenticationError as exc:
            return _Outcome(exc.response_code or 401, _message(exc))
        except requests.exceptions.SSLError as exc:
            return _Outcome(None, f"TLS error: {_short(exc)}")
        except requests.exceptions.RequestException as exc:
            return _Outcome(None, _short(exc))
        except gitlab.exceptions.RedirectError as exc:
            return _Outcome(None, f"unexpected redirect: {exc}")

    def _call(
        self,
        verb: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        hints: Mapping[int, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """Send with retries on 429/5xx/connection errors; raise :class:`GitLabError` at the end."""
        if retry:
            result, attempts = self._send_retrying(verb, path, query=query, body=body)
        else:
            result, attempts = self._send(verb, path, query=query, body=body), 1
        if isinstance(result, _Outcome):
            raise self._error(result, what=what, hints=hints, attempts=attempts)
        return result

    def _send_retrying(
        self,
        verb: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[requests.Response | _Outcome, int]:
        """Send, retrying 429/5xx/connection errors; the final result and how many tries."""
        attempt = 0
        result = self._send(verb, path, query=query, body=body)
        while isinstance(result, _Outcome) and self._should_retry(result, attempt):
            self._sleep(self._backoff(result, attempt))
            attempt += 1
            result = self._send(verb, path, query=query, body=body)
        return result, attempt + 1

    def _should_retry(self, outcome: _Outcome, attempt: int) -> bool:
        if attempt >= self.settings.max_retries:
            return False
        if outcome.status is None:
            return not outcome.message.startswith("TLS error")
        return outcome.status in RETRYABLE_STATUS

    @staticmethod
    def _backoff(outcome: _Outcome, attempt: int) -> float:
        if outcome.retry_after is not None:
            return min(outcome.retry_after, MAX_RETRY_AFTER)
        return float(min(0.25 * 2**attempt, 8.0))

    def _error(
        self,
        outcome: _Outcome,
        *,
        what: str,
        hints: Mapping[int, str] | None,
        attempts: int,
    ) -> GitLabError:
        status = outcome.status
        detail = redact(outcome.message)
        if status is None:
            hint: str = (
                "Check --gitlab-url / GITLAB_URL, DNS, the proxy settings (HTTPS_PROXY, "
                "NO_PROXY) and that GitLab is up."
            )
            if detail.startswith("TLS error"):
                hint = (
                    "GitLab's certificate is not trusted: pass its CA chain with --ca-bundle "
                    "PEM (or --insecure for a throwaway test instance)."
                )
            return GitLabError(
                f"Cannot reach GitLab at {self.settings.url} while {what} ({detail}).",
                hint=hint,
            )
        specific = (hints or {}).get(status)
        hint = (
            specific if specific is not None else _default_hint(status, self.settings.auth_source)
        )
        suffix = f" after {attempts} attempts" if attempts > 1 else ""
        return GitLabError(f"GitLab answered {status} while {what}{suffix}: {detail}", hint=hint)

    def _json(self, response: requests.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise GitLabError(
                f"GitLab sent a non-JSON answer to {response.request.method} "
                f"{urlsplit(response.request.url or '').path}.",
                hint="Check that --gitlab-url points at GitLab itself, not a proxy login page.",
            ) from exc

    def _paginate(
        self, path: str, query: Mapping[str, Any], *, what: str, hints: Mapping[int, str]
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"per_page": 100, **query}
        url: str | None = path
        while url is not None:
            response = self._call("get", url, what=what, query=params, hints=hints)
            page = self._json(response)
            if not isinstance(page, list):
                raise GitLabError(f"GitLab sent no list while {what}.")
            yield from (item for item in page if isinstance(item, dict))
            nxt = response.links.get("next", {}).get("url")
            # The next URL carries every query parameter already.
            url, params = (nxt, {}) if nxt else (None, {})

    # -- namespaces ------------------------------------------------------------------------------

    def resolve_group(self, path_or_id: str) -> Namespace:
        """``GET /groups/:id``: the group's numeric id and full path."""
        data = self._json(
            self._call(
                "get",
                f"/groups/{quote(path_or_id, safe='')}",
                query={"with_projects": "false"},
                what=f"looking up group {path_or_id!r}",
                hints={
                    404: f"No group {path_or_id!r} is visible to this token: check the full "
                    "path (parent/child, case matters) or use group:ID.",
                },
            )
        )
        return Namespace(int(data["id"]), str(data.get("full_path", path_or_id)), "group")

    def resolve_project(self, path_or_id: str) -> Namespace:
        """``GET /projects/:id``: the project's numeric id and full path."""
        data = self._json(
            self._call(
                "get",
                f"/projects/{quote(path_or_id, safe='')}",
                what=f"looking up project {path_or_id!r}",
                hints={
                    404: f"No project {path_or_id!r} is visible to this token: check the full "
                    "path (group/project) or use project:ID.",
                },
            )
        )
        full = data.get("path_with_namespace", path_or_id)
        return Namespace(int(data["id"]), str(full), "project")

    # -- runners ---------------------------------------------------------------------------------

    def create_runner(self, spec: RunnerSpec) -> RunnerCredentials:
        """``POST /user/runners``: create a runner; its ``glrt-`` token comes back.

        A lost answer (5xx, dropped connection) is not blindly re-posted: the runner carrying
        this call's marker is looked up first and, if it exists, its token is reset instead.
        """
        marker = f"{MARKER_PREFIX}{uuid.uuid4().hex}"
        body = {**spec.body(), "maintenance_note": marker}
        what = f"creating runner {spec.description!r}"
        hints = _create_hints(spec)
        attempt = 0
        while True:
            result = self._send("post", "/user/runners", body=body)
            if not isinstance(result, _Outcome):
                return _credentials(self._json(result))
            if not self._should_retry(result, attempt):
                raise self._error(result, what=what, hints=hints, attempts=attempt + 1)
            self._sleep(self._backoff(result, attempt))
            attempt += 1
            if result.status == 429:
                continue  # throttled before GitLab did anything: safe to re-post
            found = self._find_marked(spec, marker)
            if found is not None:
                log.info("runner %s was created before the answer got lost; reusing it", found)
                fresh = self.reset_token(found)
                return RunnerCredentials(found, fresh.token, fresh.token_expires_at, recovered=True)

    def _find_marked(self, spec: RunnerSpec, marker: str) -> int | None:
        if spec.runner_type is RunnerType.GROUP:
            path = f"/groups/{spec.group_id}/runners"
        elif spec.runner_type is RunnerType.PROJECT:
            path = f"/projects/{spec.project_id}/runners"
        else:
            path = "/runners/all"
        candidates = [
            item
            for item in self._paginate(
                path,
                {"type": spec.runner_type.value},
                what="looking for a runner whose creation answer got lost",
                hints={},
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
        body: dict[str, Any] = {
            "token": registration_token,
            "description": spec.description,
            "tag_list": list(spec.tag_list),
            "run_untagged": spec.run_untagged,
            "locked": spec.locked,
            "paused": spec.paused,
            "access_level": spec.access_level.value,
        }
        if spec.maximum_timeout is not None:
            body["maximum_timeout"] = spec.maximum_timeout
        response = self._call(
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
            retry=False,  # a retried legacy register could leave a duplicate runner
        )
        return _credentials(self._json(response))

    def verify(self, token: str) -> VerifyResult:
        """``POST /runners/verify``: does GitLab accept this runner token?"""
        result, attempts = self._send_retrying("post", "/runners/verify", body={"token": token})
        if isinstance(result, _Outcome):
            if result.status in (401, 403, 404, 422):
                return VerifyResult(valid=False)
            raise self._error(result, what="verifying a runner token", hints={}, attempts=attempts)
        data = self._json(result)
        if isinstance(data, dict) and data.get("id") is not None:
            return VerifyResult(True, int(data["id"]), _parse_time(data.get("token_expires_at")))
        return VerifyResult(valid=True)

    def get_runner(self, runner_id: int) -> Runner:
        """``GET /runners/:id``: the full details (tags, flags, last contact)."""
        data = self._json(
            self._call(
                "get",
                f"/runners/{runner_id}",
                what=f"reading runner {runner_id}",
                hints={404: f"Runner {runner_id} does not exist (any more) in GitLab."},
            )
        )
        return _runner(data, detailed=True)

    def find_runner(self, runner_id: int) -> Runner | None:
        """Like :meth:`get_runner`, but ``None`` when GitLab has no such runner."""
        result, attempts = self._send_retrying("get", f"/runners/{runner_id}")
        if isinstance(result, _Outcome):
            if result.status == 404:
                return None
            raise self._error(
                result, what=f"reading runner {runner_id}", hints={}, attempts=attempts
            )
        return _runner(self._json(result), detailed=True)

    def update_runner(self, runner_id: int, changes: Mapping[str, Any]) -> Runner:
        """``PUT /runners/:id`` with only the changed server-side settings."""
        data = self._json(
            self._call(
                "put",
                f"/runners/{runner_id}",
                body=dict(changes),
                what=f"updating runner {runner_id}",
                hints={
                    403: "The token's user may not edit this runner: it needs Owner on the "
                    "group, Maintainer on the project, or admin for instance runners.",
                },
            )
        )
        return _runner(data, detailed=True)

    def delete_runner_by_token(self, token: str) -> bool:
        """``DELETE /runners`` authenticated by the runner's own token (no access token needed).

        Returns ``False`` when GitLab no longer knows the token.
        """
        result = self._send("delete", "/runners", body={"token": token})
        if isinstance(result, _Outcome):
            if result.status in (401, 403, 404):
                return False
            raise self._error(result, what="deleting a runner by its token", hints={}, attempts=1)
        return True

    def delete_runner(self, runner_id: int) -> bool:
        """``DELETE /runners/:id``; ``False`` when it was already gone."""
        result, attempts = self._send_retrying("delete", f"/runners/{runner_id}")
        if isinstance(result, _Outcome):
            # After a retried delete a 404 means the first attempt went through.
            if result.status == 404:
                return False
            raise self._error(
                result,
                what=f"deleting runner {runner_id}",
                hints={
                    403: "The token's user may not delete this runner (it may be shared with "
                    "other projects, or need admin rights); use --keep-server to only drop "
                    "the config entry."
                },
                attempts=attempts,
            )
        return True

    def reset_token(self, runner_id: int) -> RunnerCredentials:
        """``POST /runners/:id/reset_authentication_token``: a new token, the old one dies."""
        response = self._call(
            "post",
            f"/runners/{runner_id}/reset_authentication_token",
            what=f"resetting the token of runner {runner_id}",
            hints={404: f"Runner {runner_id} does not exist (any more) in GitLab."},
        )
        data = self._json(response)
        return RunnerCredentials(
            runner_id, str(data["token"]), _parse_time(data.get("token_expires_at"))
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
        items = self._paginate(
            path,
            query,
            what="listing runners",
            hints={403: "Listing every instance runner needs an administrator's token."},
        )
        return tuple(_runner(item, detailed=False) for item in items)

    # -- projects, variables, commits (smoke) ----------------------------------------------------

    def current_username(self) -> str:
        """``GET /user``: the token owner's username (their personal namespace)."""
        data = self._json(self._call("get", "/user", what="reading the current user"))
        return str(data["username"])

    def find_project(self, path: str) -> Project | None:
        """``GET /projects/:id``; ``None`` when it does not exist or is invisible."""
        result = self._send("get", f"/projects/{quote(path, safe='')}")
        if isinstance(result, _Outcome):
            if result.status == 404:
                return None
            raise self._error(result, what=f"looking up project {path!r}", hints={}, attempts=1)
        return _project(self._json(result))

    def create_project(self, path: str, *, namespace_id: int | None = None) -> Project:
        """``POST /projects`` (private, ``main`` as default branch)."""
        name = path.rsplit("/", 1)[-1]
        body: dict[str, Any] = {
            "name": name,
            "path": name,
            "visibility": "private",
            "default_branch": "main",
        }
        if namespace_id is not None:
            body["namespace_id"] = namespace_id
        response = self._call(
            "post",
            "/projects",
            body=body,
            what=f"creating project {path!r}",
            hints={403: "The token's user may not create projects in that namespace."},
            retry=False,
        )
        return _project(self._json(response))

    def read_file(self, project_id: int, file_path: str, ref: str) -> str | None:
        """``GET /projects/:id/repository/files/:path/raw``; ``None`` when it does not exist."""
        result = self._send(
            "get",
            f"/projects/{project_id}/repository/files/{quote(file_path, safe='')}/raw",
            query={"ref": ref},
        )
        if isinstance(result, _Outcome):
            if result.status == 404:
                return None
            raise self._error(result, what=f"reading {file_path}", hints={}, attempts=1)
        return result.text

    def commit_files(
        self,
        project_id: int,
        *,
        branch: str,
        message: str,
        files: Mapping[str, str],
        existing: frozenset[str] = frozenset(),
    ) -> str:
        """``POST /projects/:id/repository/commits``: create or update ``files``; the new sha."""
        actions = [
            {
                "action": "update" if path in existing else "create",
                "file_path": path,
                "content": content,
            }
            for path, content in sorted(files.items())
        ]
        response = self._call(
            "post",
            f"/projects/{project_id}/repository/commits",
            body={"branch": branch, "commit_message": message, "actions": actions},
            what=f"committing {len(actions)} files to project {project_id}",
            hints={403: "The token's user needs the Developer role to push to the project."},
            retry=False,
        )
        return str(self._json(response)["id"])

    def list_tree(self, project_id: int, ref: str) -> frozenset[str]:
        """Every file path of the repository at ``ref`` (empty for an empty repository)."""
        result = self._send(
            "get",
            f"/projects/{project_id}/repository/tree",
            query={"ref": ref, "recursive": "true", "per_page": 100},
        )
        if isinstance(result, _Outcome):
            if result.status == 404:
                return frozenset()
            raise self._error(result, what="listing the repository", hints={}, attempts=1)
        items = list(
            self._paginate(
                f"/projects/{project_id}/repository/tree",
                {"ref": ref, "recursive": "true"},
                what="listing the repository",
                hints={},
            )
        )
        return frozenset(str(i["path"]) for i in items if i.get("type") == "blob")

    def get_variable(self, project_id: int, key: str) -> Variable | None:
        """``GET /projects/:id/variables/:key``; ``None`` when it is not set."""
        result = self._send("get", f"/projects/{project_id}/variables/{key}")
        if isinstance(result, _Outcome):
            if result.status == 404:
                return None
            raise self._error(
                result,
                what=f"reading CI/CD variable {key}",
                hints={403: "Reading CI/CD variables needs the Maintainer role."},
                attempts=1,
            )
        return _variable(self._json(result))

    def set_variable(self, project_id: int, variable: Variable) -> None:
        """Create (or replace) a project CI/CD variable."""
        body = {
            "key": variable.key,
            "value": variable.value,
            "variable_type": variable.variable_type,
            "masked": variable.masked,
            "protected": variable.protected,
        }
        what = f"setting CI/CD variable {variable.key}"
        hints = {403: "Setting CI/CD variables needs the Maintainer role."}
        if self.get_variable(project_id, variable.key) is None:
            self._call(
                "post", f"/projects/{project_id}/variables", body=body, what=what, hints=hints
            )
        else:
            self._call(
                "put",
                f"/projects/{project_id}/variables/{variable.key}",
                body=body,
                what=what,
                hints=hints,
            )

    # -- pipelines and jobs ----------------------------------------------------------------------

    def create_pipeline(
        self, project_id: int, ref: str, variables: Mapping[str, str] | None = None
    ) -> Pipeline:
        """``POST /projects/:id/pipeline`` with pipeline variables."""
        body: dict[str, Any] = {"ref": ref}
        if variables:
            body["variables"] = [
                {"key": k, "value": v, "variable_type": "env_var"} for k, v in variables.items()
            ]
        response = self._call(
            "post",
            f"/projects/{project_id}/pipeline",
            body=body,
            what=f"creating a pipeline on {ref}",
            hints={400: "GitLab refused the pipeline: check .gitlab-ci.yml and the ref."},
            retry=False,
        )
        return _pipeline(self._json(response))

    def get_pipeline(self, project_id: int, pipeline_id: int) -> Pipeline:
        """``GET /projects/:id/pipelines/:pipeline_id``."""
        response = self._call(
            "get",
            f"/projects/{project_id}/pipelines/{pipeline_id}",
            what=f"reading pipeline {pipeline_id}",
        )
        return _pipeline(self._json(response))

    def cancel_pipeline(self, project_id: int, pipeline_id: int) -> None:
        """``POST /projects/:id/pipelines/:pipeline_id/cancel``."""
        self._call(
            "post",
            f"/projects/{project_id}/pipelines/{pipeline_id}/cancel",
            what=f"cancelling pipeline {pipeline_id}",
        )

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> tuple[Job, ...]:
        """Every job of a pipeline (retried ones excluded), in id order."""
        items = self._paginate(
            f"/projects/{project_id}/pipelines/{pipeline_id}/jobs",
            {},
            what=f"listing the jobs of pipeline {pipeline_id}",
            hints={},
        )
        return tuple(sorted((_job(item) for item in items), key=lambda j: j.id))

    def job_trace(self, project_id: int, job_id: int) -> str:
        """``GET /projects/:id/jobs/:job_id/trace``: the job log (redacted of tokens)."""
        response = self._call(
            "get", f"/projects/{project_id}/jobs/{job_id}/trace", what=f"reading job {job_id} log"
        )
        return redact(response.content.decode("utf-8", "replace"))

    # -- package registries ----------------------------------------------------------------------

    def list_packages(
        self, project_id: int, *, package_name: str | None = None, package_type: str | None = None
    ) -> tuple[Package, ...]:
        """``GET /projects/:id/packages`` filtered by name and type."""
        query: dict[str, Any] = {}
        if package_name:
            query["package_name"] = package_name
        if package_type:
            query["package_type"] = package_type
        items = self._paginate(
            f"/projects/{project_id}/packages", query, what="listing packages", hints={}
        )
        return tuple(_package(item) for item in items)

    def delete_package(self, project_id: int, package_id: int) -> bool:
        """``DELETE /projects/:id/packages/:package_id``; ``False`` when it was gone."""
        result = self._send("delete", f"/projects/{project_id}/packages/{package_id}")
        if isinstance(result, _Outcome):
            if result.status == 404:
                return False
            raise self._error(result, what=f"deleting package {package_id}", hints={}, attempts=1)
        return True

    def download_generic(
        self, project_id: int, package_name: str, version: str, file_name: str
    ) -> bytes | None:
        """``GET …/packages/generic/:name/:version/:file``; ``None`` when it is not there."""
        path = (
            f"/projects/{project_id}/packages/generic/"
            f"{quote(package_name, safe='')}/{quote(version, safe='')}/{quote(file_name)}"
        )
        result = self._send("get", path)
        if isinstance(result, _Outcome):
            if result.status == 404:
                return None
            raise self._error(result, what=f"downloading {file_name}", hints={}, attempts=1)
        return bytes(result.content)

    def pypi_files(self, project_id: int, package_name: str) -> tuple[DistFile, ...]:
        """The links of the project's PyPI simple index for ``package_name`` (empty on 404).

        The PyPI endpoints take HTTP Basic only (any user name, the token as password).
        """
        url = f"{self.settings.api_url}/projects/{project_id}/packages/pypi/simple/{package_name}/"
        response = self._basic_get(url, what=f"reading the PyPI index of {package_name}")
        if response is None:
            return ()
        return tuple(
            DistFile(unescape(name), unescape(href), digest)
            for href, digest, name in _SIMPLE_LINK.findall(response.text)
        )

    def download_url(self, url: str) -> bytes:
        """Download a registry file by absolute URL (a simple-index link), with Basic auth."""
        if urlsplit(url).netloc != urlsplit(self.settings.url).netloc:
            raise GitLabError(
                f"The registry link {url} points away from {self.settings.url}.",
                hint="Set GitLab's external URL to the address runnerctl uses.",
            )
        response = self._basic_get(url, what="downloading a package file")
        if response is None:
            raise GitLabError(f"GitLab has no file at {url}.")
        return bytes(response.content)

    def _basic_get(self, url: str, *, what: str) -> requests.Response | None:
        import requests

        verify: bool | str = not self.settings.insecure
        if self.settings.ca_bundle is not None:
            verify = str(self.settings.ca_bundle)
        attempt = 0
        while True:
            try:
                response = self._session.get(
                    url,
                    auth=("runnerctl", self.settings.token),
                    verify=verify,
                    timeout=self.settings.timeout,
                )
                outcome = _Outcome(response.status_code, response.text[:200])
                outcome.retry_after = _retry_after(response.headers)
            except requests.exceptions.RequestException as exc:
                response, outcome = None, _Outcome(None, _short(exc))
            if response is not None and response.ok:
                return response
            if response is not None and response.status_code == 404:
                return None
            if not self._should_retry(outcome, attempt):
                raise self._error(outcome, what=what, hints={}, attempts=attempt + 1)
            self._sleep(self._backoff(outcome, attempt))
            attempt += 1


# ---------------------------------------------------------------------------------------------
# Helpers


def _message(exc: Exception) -> str:
    message = getattr(exc, "error_message", "") or str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return redact(str(message))[:300]


def _short(exc: Exception) -> str:
    text = str(exc)
    # urllib3 messages are long and repeat the pool; the reason is what helps.
    if "Caused by" in text:
        text = text.split("Caused by", 1)[1].strip(" ()'\"")
    return redact(text)[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _default_hint(status: int, auth_source: str) -> str:
    if status == 401:
        return (
            f"The token from {auth_source} is invalid, expired or revoked. Create a new "
            f"access token with the create_runner (or api) scope. {ACCESS_HINT}"
        )
    if status == 403:
        return (
            "The token lacks the create_runner (or api) scope, or its user is not an Owner of "
            "the group / a Maintainer of the project (instance runners need an administrator)."
        )
    if status == 404:
        return "Check the group or project path and that the token's user can see it."
    if status == 410:
        return NEW_WORKFLOW_HINT
    if status == 429:
        return "GitLab is rate limiting this token; wait a minute and retry."
    if status >= 500:
        return "GitLab had a server error; retry later or check its health (/-/readiness)."
    return "Check the options against GitLab's runner API documentation."


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


def _parse_time(value: object) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _credentials(data: Any) -> RunnerCredentials:
    if not isinstance(data, dict) or "id" not in data or not data.get("token"):
        raise GitLabError(
            "GitLab's answer to the runner creation lacks the id or token.",
            hint="Check that the server is GitLab 16.0 or newer.",
        )
    return RunnerCredentials(
        int(data["id"]), str(data["token"]), _parse_time(data.get("token_expires_at"))
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
        contacted_at=_parse_time(data.get("contacted_at")),
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


_SIMPLE_LINK = re.compile(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})"[^>]*>([^<]+)</a>')


def _project(data: Any) -> Project:
    return Project(
        id=int(data["id"]),
        path_with_namespace=str(data.get("path_with_namespace", "")),
        web_url=str(data.get("web_url", "")),
        default_branch=data.get("default_branch"),
    )


def _variable(data: Any) -> Variable:
    return Variable(
        key=str(data["key"]),
        value=str(data.get("value") or ""),
        variable_type=str(data.get("variable_type") or "env_var"),
        masked=bool(data.get("masked")),
        protected=bool(data.get("protected")),
    )


def _pipeline(data: Any) -> Pipeline:
    duration = data.get("duration")
    return Pipeline(
        id=int(data["id"]),
        iid=int(data.get("iid") or 0),
        status=str(data.get("status", "")),
        web_url=str(data.get("web_url", "")),
        duration=float(duration) if duration is not None else None,
    )


def _job(data: Any) -> Job:
    duration = data.get("duration")
    return Job(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        stage=str(data.get("stage", "")),
        status=str(data.get("status", "")),
        duration=float(duration) if duration is not None else None,
        started_at=_parse_time(data.get("started_at")),
        finished_at=_parse_time(data.get("finished_at")),
        failure_reason=data.get("failure_reason"),
        web_url=str(data.get("web_url", "")),
        tag_list=tuple(str(t) for t in data.get("tag_list") or ()),
    )


def _package(data: Any) -> Package:
    return Package(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        version=str(data.get("version", "")),
        package_type=str(data.get("package_type", "")),
        created_at=_parse_time(data.get("created_at")),
    )
