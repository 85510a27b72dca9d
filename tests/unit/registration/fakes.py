"""An in-memory GitLab for unit tests, mounted as a requests transport adapter.

python-gitlab and our adapter run unchanged on top of it; no socket is opened. It keeps just
enough state for runners (create, verify, get, put, delete, reset, list) and can be told to
fail the next requests with a status (and ``Retry-After``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

BASE = "http://gitlab.test"
PAT = "glpat-unit0000000000000000"

GROUPS = {"platform/ci": 7, "platform": 6}
PROJECTS = {"platform/ci/app": 42}


@dataclass
class FakeRunner:
    id: int
    token: str
    runner_type: str
    description: str
    tag_list: list[str]
    run_untagged: bool
    locked: bool
    paused: bool
    access_level: str
    maximum_timeout: int | None
    maintenance_note: str | None
    group_id: int | None = None
    project_id: int | None = None


@dataclass
class Fault:
    status: int
    method: str | None = None
    path: str | None = None
    retry_after: str | None = None
    after_effect: bool = False  # apply the request, then answer with the fault status


@dataclass
class FakeGitLab(BaseAdapter):
    runners: dict[int, FakeRunner] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 100
    legacy_enabled: bool = False
    registration_token: str = "GR1348941legacyregtoken00"
    raise_connection_error: bool = False
    scopes: list[str] = field(default_factory=lambda: ["api"])

    def __post_init__(self) -> None:
        super().__init__()

    # -- requests adapter ----------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        path = parts.path.removeprefix("/api/v4")
        method = str(request.method)
        self.log.append((method, path))
        if self.raise_connection_error:
            raise requests.ConnectionError("Connection refused")
        body: dict[str, Any] = {}
        if request.body:
            raw = request.body if isinstance(request.body, str) else request.body.decode()
            body = json.loads(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        fault = self._take_fault(method, path)
        if fault is not None and not fault.after_effect:
            return self._response(
                request,
                fault.status,
                {"message": f"{fault.status} fault"},
                retry_after=fault.retry_after,
            )
        status, payload = self._route(method, path, body, query, request.headers)
        if fault is not None:
            return self._response(
                request,
                fault.status,
                {"message": f"{fault.status} fault"},
                retry_after=fault.retry_after,
            )
        return self._response(request, status, payload)

    def close(self) -> None:
        pass

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if (fault.method in (None, method)) and (fault.path in (None, path)):
                self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _response(
        request: requests.PreparedRequest, status: int, payload: Any, retry_after: str | None = None
    ) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.request = request
        response.url = request.url or ""
        response.headers["Content-Type"] = "application/json"
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        response._content = b"" if payload is None else json.dumps(payload).encode()
        return response

    # -- routes ----------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, body: dict[str, Any], query: dict[str, str], headers: Any
    ) -> tuple[int, Any]:
        runner_route = path.startswith("/runners/verify") or (
            method in ("POST", "DELETE") and path == "/runners"
        )
        if not runner_route and headers.get("PRIVATE-TOKEN") != PAT:
            return 401, {"message": "401 Unauthorized"}
        parts = path.strip("/").split("/")
        handlers: dict[tuple[str, str], Callable[[], tuple[int, Any]]] = {
            ("POST", "/user/runners"): lambda: self._create(body),
            ("POST", "/runners"): lambda: self._legacy(body),
            ("POST", "/runners/verify"): lambda: self._verify(body),
            ("DELETE", "/runners"): lambda: self._delete_by_token(body),
            ("GET", "/personal_access_tokens/self"): lambda: (
                200,
                {"id": 1, "scopes": self.scopes},
            ),
        }
        if (method, path) in handlers:
            return handlers[(method, path)]()
        if parts[0] == "groups" and len(parts) == 2:
            gid = GROUPS.get(parts[1].replace("%2F", "/"))
            return (
                (200, {"id": gid, "full_path": parts[1]})
                if gid
                else (404, {"message": "404 Group Not Found"})
            )
        if parts[0] == "projects" and len(parts) == 2:
            pid = PROJECTS.get(parts[1].replace("%2F", "/"))
            return (
                (200, {"id": pid, "path_with_namespace": parts[1]})
                if pid
                else (404, {"message": "404 Project Not Found"})
            )
        if parts[0] in ("groups", "projects") and parts[-1] == "runners":
            return 200, [self._summary(r) for r in self.runners.values()]
        if path in ("/runners/all", "/runners"):
            return 200, [self._summary(r) for r in self.runners.values()]
        if parts[0] == "runners" and len(parts) >= 2 and parts[1].isdigit():
            runner = self.runners.get(int(parts[1]))
            if runner is None:
                return 404, {"message": "404 Not found"}
            if len(parts) == 3 and parts[2] == "reset_authentication_token" and method == "POST":
                runner.token = _token()
                return 201, {"token": runner.token, "token_expires_at": None}
            if method == "GET":
                return 200, self._details(runner)
            if method == "PUT":
                for key, value in body.items():
                    setattr(runner, key, value)
                return 200, self._details(runner)
            if method == "DELETE":
                del self.runners[runner.id]
                return 204, None
        return 404, {"message": "404 Not found"}

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("runner_type") == "group_type" and body.get("group_id") not in GROUPS.values():
            return 403, {"message": "403 Forbidden"}
        runner = self._store(body, token=_token())
        return 201, {"id": runner.id, "token": runner.token, "token_expires_at": None}

    def _legacy(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self.legacy_enabled:
            return 410, {"message": "410 Gone"}
        if body.get("token") != self.registration_token:
            return 403, {"message": "403 Forbidden"}
        runner = self._store(
            {**body, "runner_type": "instance_type"}, token="t1_" + secrets.token_hex(10)
        )
        return 201, {"id": runner.id, "token": runner.token, "token_expires_at": None}

    def _store(self, body: dict[str, Any], *, token: str) -> FakeRunner:
        self.next_id += 1
        runner = FakeRunner(
            id=self.next_id,
            token=token,
            runner_type=body["runner_type"],
            description=body.get("description", ""),
            tag_list=list(body.get("tag_list", [])),
            run_untagged=bool(body.get("run_untagged", False)),
            locked=bool(body.get("locked", False)),
            paused=bool(body.get("paused", False)),
            access_level=body.get("access_level", "not_protected"),
            maximum_timeout=body.get("maximum_timeout"),
            maintenance_note=body.get("maintenance_note"),
            group_id=body.get("group_id"),
            project_id=body.get("project_id"),
        )
        self.runners[runner.id] = runner
        return runner

    def _delete_by_token(self, body: dict[str, Any]) -> tuple[int, Any]:
        for runner in list(self.runners.values()):
            if runner.token == body.get("token"):
                del self.runners[runner.id]
                return 204, None
        return 403, {"message": "403 Forbidden"}

    def _verify(self, body: dict[str, Any]) -> tuple[int, Any]:
        for runner in self.runners.values():
            if runner.token == body.get("token"):
                return 200, {"id": runner.id, "token": runner.token, "token_expires_at": None}
        return 403, {"message": "403 Forbidden"}

    def _summary(self, runner: FakeRunner) -> dict[str, Any]:
        return {
            "id": runner.id,
            "description": runner.description,
            "runner_type": runner.runner_type,
            "paused": runner.paused,
            "active": not runner.paused,
            "status": "never_contacted",
            "online": False,
            "created_at": "2026-01-01T00:00:00.000Z",
        }

    def _details(self, runner: FakeRunner) -> dict[str, Any]:
        groups = [
            {"id": gid, "web_url": f"{BASE}/groups/{path}", "name": path.rsplit("/", 1)[-1]}
            for path, gid in GROUPS.items()
            if gid == runner.group_id
        ]
        projects = [
            {"id": pid, "path_with_namespace": path}
            for path, pid in PROJECTS.items()
            if pid == runner.project_id
        ]
        return {
            **self._summary(runner),
            "tag_list": runner.tag_list,
            "run_untagged": runner.run_untagged,
            "locked": runner.locked,
            "access_level": runner.access_level,
            "maximum_timeout": runner.maximum_timeout,
            "maintenance_note": runner.maintenance_note,
            "contacted_at": None,
            "groups": groups,
            "projects": projects,
        }


def _token() -> str:
    return "glrt-t2_" + secrets.token_urlsafe(15).replace("-", "a")


def make_api(fake: FakeGitLab, *, token: str = PAT, sleeps: list[float] | None = None) -> Any:
    """A real :class:`GitLabAPI` whose session is served by ``fake``."""
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings

    session = requests.Session()
    session.mount(BASE, fake)
    record = sleeps if sleeps is not None else []
    return GitLabAPI(
        ConnectionSettings(url=BASE, token=token),
        session=session,
        sleep=record.append,
    )
