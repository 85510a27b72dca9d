"""observe: GitLab's runners in one GraphQL page per 100, each host over one SSH session."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from provisioner.errors import GitLabError
from provisioner.fleet.model import HostSpec, ObservedManager, ObservedRunner
from provisioner.fleet.observe import observe, parse_entries
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.ssh import CommandResult, SSHError, SSHFailure
from tests.unit.fleet.factories import NOW, fleet, rdef
from tests.unit.gitlab.test_graphql import _api
from tests.unit.registration.fakes import BASE, PAT

CONFIG = """\
concurrent = 4

[[runners]]
  name = "build"
  url = "https://gitlab.example.com/"
  id = 10
  token = "glrt-SECRET1"
  token_obtained_at = 2026-12-01T00:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "docker"
  limit = 2
  [runners.docker]
    image = "python:3.12"
"""


def _node(rid: int, **kw: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": f"gid://gitlab/Ci::Runner/{rid}",
        "description": f"r{rid}",
        "runnerType": "GROUP_TYPE",
        "tagList": ["b", "a"],
        "paused": False,
        "locked": True,
        "runUntagged": False,
        "accessLevel": "REF_PROTECTED",
        "maximumTimeout": 3600,
        "maintenanceNote": "managed-by: runnerctl fleet=prod runner=build",
        "contactedAt": "2026-12-03T11:00:00Z",
        "tokenExpiresAt": None,
        "groups": {"nodes": [{"fullPath": "ops/ci"}]},
        "projects": None,
        "managers": {"nodes": [{"systemId": "s_abc", "contactedAt": "2026-12-03T11:00:00Z"}]},
    }
    node.update(kw)
    return node


def _page(nodes: list[dict[str, Any]], after: str | None) -> tuple[int, Any]:
    info = {"hasNextPage": after is not None, "endCursor": after}
    return 200, {"data": {"runners": {"pageInfo": info, "nodes": nodes}}}


def test_fleet_runners_one_request_per_page() -> None:
    api, fake = _api([_page([_node(2)], "c1"), _page([_node(1, groups=None)], None)])
    runners = api.fleet_runners()
    assert len(fake.requests) == 2
    assert fake.requests[1]["variables"] == {"after": "c1"}
    assert "runners(first: 100, after: $after)" in fake.requests[0]["query"]
    assert runners[0] == ObservedRunner(
        id=2,
        description="r2",
        runner_type="group_type",
        tags=("b", "a"),
        paused=False,
        locked=True,
        run_untagged=False,
        access_level="ref_protected",
        maximum_timeout=3600,
        maintenance_note="managed-by: runnerctl fleet=prod runner=build",
        contacted_at=datetime(2026, 12, 3, 11, tzinfo=UTC),
        token_expires_at=None,
        managers=(ObservedManager("s_abc", datetime(2026, 12, 3, 11, tzinfo=UTC)),),
        scope_paths=("ops/ci",),
    )
    assert runners[0].owner == ("prod", "build")
    assert runners[1].scope_paths == ()


def test_fleet_runners_needs_an_admin() -> None:
    denied = {
        "data": {"runners": None},
        "errors": [
            {
                "message": "The resource that you are attempting to access does not exist "
                "or you don't have permission to perform this action"
            }
        ],
    }
    api, _ = _api([(200, denied)])
    with pytest.raises(GitLabError) as info:
        api.fleet_runners()
    assert info.value.hint is not None
    assert "administrator" in info.value.hint


def test_entries_parsed_without_identity_keys() -> None:
    (e,) = parse_entries(CONFIG, source="vm-a:/etc/gitlab-runner/config.toml")
    assert (e.name, e.id, e.url, e.executor) == (
        "build",
        10,
        "https://gitlab.example.com/",
        "docker",
    )
    assert e.settings == {"executor": "docker", "limit": 2, "docker": {"image": "python:3.12"}}
    assert e.token == "glrt-SECRET1"
    assert "SECRET" not in repr(e)
    assert e.token_obtained_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert e.token_expires_at is None  # gitlab-runner's "never"
    assert parse_entries(None, source="x") == ()


class FakeSFTP:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def close(self) -> None:
        pass


class FakeHost:
    """One host's SSH session: answers the facts command and SFTP reads; records calls."""

    def __init__(self, facts: str, files: dict[str, str]) -> None:
        self.facts = facts
        self.files = files
        self.commands: list[str] = []
        self.closed = False

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0, self.facts, "")

    def sftp(self, *, as_root: bool = True) -> Any:
        return FakeSFTP(self.files)

    @contextlib.contextmanager
    def remote_lock(self, lock_path: str, *, timeout: float = 120) -> Iterator[None]:
        raise AssertionError("a plan takes no lock")
        yield

    def close(self) -> None:
        self.closed = True


class FakeGitLab:
    def __init__(self) -> None:
        self.request_count = 7

    def fleet_runners(self) -> tuple[ObservedRunner, ...]:
        self.request_count += 2
        return ()


def test_observe_reads_each_host_once_in_parallel() -> None:
    fl = fleet(rdef("build", "vm-a", "vm-b"))
    up = "installed=1\nversion=17.5.0\nactive=active\nsystem_id=s_0123\n"
    hosts = {
        "vm-a": FakeHost(up, {"/etc/gitlab-runner/config.toml": CONFIG}),
        "vm-b": FakeHost("installed=0\nactive=inactive\nsystem_id=\n", {}),
    }
    threads: set[str] = set()
    barrier = threading.Barrier(2, timeout=5)  # both hosts are read at the same time

    def connect(spec: HostSpec) -> FakeHost:
        if spec.name == "vm-c":
            raise SSHError("vm-c: connection refused", kind=SSHFailure.UNREACHABLE)
        threads.add(threading.current_thread().name)
        barrier.wait()
        return hosts[spec.name]

    result = observe(fl, gitlab=FakeGitLab(), connect=connect, now=lambda: NOW)
    assert (result.api_requests, result.ssh_sessions) == (2, 2)
    assert len(threads) == 2
    a, b, c = result.hosts
    assert (a.reachable, a.runner_installed, a.service_active, a.system_id) == (
        True,
        True,
        True,
        "s_0123",
    )
    assert [e.id for e in a.entries] == [10]
    assert (b.reachable, b.runner_installed, b.service_active, b.system_id, b.entries) == (
        True,
        False,
        False,
        None,
        (),
    )
    assert (c.reachable, c.error) == (False, "vm-c: connection refused")
    for h in hosts.values():
        assert len(h.commands) == 1
        assert h.closed
    assert result.observed_at == NOW


def test_a_broken_config_makes_the_host_unreadable_not_the_plan() -> None:
    fl = fleet(rdef("build", "vm-a"), hosts=("vm-a",))
    host = FakeHost(
        "installed=1\nactive=active\n", {"/etc/gitlab-runner/config.toml": "[[runners]\n"}
    )
    result = observe(fl, gitlab=FakeGitLab(), connect=lambda _s: host, now=lambda: NOW)
    (h,) = result.hosts
    assert not h.reachable
    assert h.error is not None
    assert "TOML syntax error" in h.error
    assert host.closed


class RestOnly(BaseAdapter):
    """A GitLab whose GraphQL lacks the runners fields: answers REST from a table."""

    def __init__(self, routes: dict[str, Any]) -> None:
        super().__init__()
        self.routes = routes
        self.paths: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = (request.path_url or "").split("?")[0]
        self.paths.append(path)
        response = requests.Response()
        response.request = request
        response.headers["Content-Type"] = "application/json"
        if path == "/api/graphql":
            error = "Field 'tokenExpiresAt' doesn't exist on type 'CiRunner'"
            body: Any = {"errors": [{"message": error}]}
        else:
            body = self.routes.get(path.removeprefix("/api/v4"))
        response.status_code = 404 if body is None else 200
        response._content = json.dumps(body or {"message": "404 Not found"}).encode()
        return response

    def close(self) -> None:
        pass


def test_fleet_runners_falls_back_to_rest_when_graphql_lacks_the_fields() -> None:
    fake = RestOnly(
        {
            "/runners/all": [{"id": 4}, {"id": 5}],
            "/runners/4": {
                "id": 4,
                "description": "build",
                "runner_type": "group_type",
                "tag_list": ["linux"],
                "paused": True,
                "locked": False,
                "run_untagged": True,
                "access_level": "not_protected",
                "maximum_timeout": None,
                "maintenance_note": "managed-by: runnerctl fleet=prod runner=build",
                "groups": [{"id": 9, "web_url": "https://gitlab.example.com/groups/ops/ci"}],
            },
            "/runners/4/managers": [{"system_id": "s_1", "contacted_at": "2026-12-03T11:00:00Z"}],
        }
    )
    session = requests.Session()
    session.mount(BASE, fake)
    api = GitLabAPI(ConnectionSettings(url=BASE, token=PAT), session=session, sleep=lambda _s: None)
    (runner,) = api.fleet_runners()  # #5 was deleted between the list and its details
    assert (runner.id, runner.runner_type, runner.paused, runner.scope_paths) == (
        4,
        "group_type",
        True,
        ("ops/ci",),
    )
    assert runner.managers == (ObservedManager("s_1", datetime(2026, 12, 3, 11, tzinfo=UTC)),)
    assert runner.owner == ("prod", "build")
    assert fake.paths[0] == "/api/graphql"
    assert fake.paths[1] == "/api/v4/runners/all"


def test_sudo_refused_makes_the_host_unreadable() -> None:
    fl = fleet(rdef("build", "vm-a"), hosts=("vm-a",))
    host = FakeHost("", {})
    host.sudo = lambda *_a, **_k: CommandResult(1, "", "sudo: a password is required\n")  # type: ignore[method-assign]
    (h,) = observe(fl, gitlab=FakeGitLab(), connect=lambda _s: host, now=lambda: NOW).hosts
    assert (h.reachable, h.error) == (
        False,
        "vm-a: cannot read gitlab-runner's state as root: sudo: a password is required",
    )
