"""The one retry policy: which failures are retried, how long it waits, when it stops."""

from __future__ import annotations

import logging
from email.utils import formatdate
from typing import Any

import pytest
import requests

from provisioner.errors import GitLabError
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings, RunnerSpec, RunnerType, Variable
from provisioner.gitlab.transport import Outcome, RetryPolicy, Transport
from tests.unit.registration.fakes import BASE, PAT, FakeGitLab, Fault, make_api

NOW = 1_800_000_000.0


class FakeClock:
    """A monotonic clock that sleeping advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _api(fake: FakeGitLab, clock: FakeClock, **settings: Any) -> GitLabAPI:
    session = requests.Session()
    session.mount(BASE, fake)
    connection = ConnectionSettings(url=BASE, token=PAT, **settings)
    transport = Transport(
        connection,
        session=session,
        sleep=clock.sleep,
        clock=lambda: clock.now,
        wall_clock=lambda: NOW,
        jitter=lambda: 0.5,
    )
    return GitLabAPI(connection, transport=transport)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(base=0.25, cap=8.0)
    failed = Outcome(503, "x")
    assert [policy.backoff(failed, n, 0.0) for n in range(7)] == [
        0.125,
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
    ]
    assert [policy.backoff(failed, n, 0.999) for n in range(3)] == pytest.approx(
        [0.25, 0.5, 1.0], abs=0.01
    )
    assert policy.backoff(Outcome(429, "x", wait=7.0), 5, 0.3) == 7.0
    assert policy.backoff(Outcome(429, "x", wait=3600.0), 0, 0.3) == 60.0


@pytest.mark.parametrize(
    ("status", "idempotent", "retried"),
    [
        (429, True, True),
        (408, True, True),
        (500, True, True),
        (502, True, True),
        (503, True, True),
        (504, True, True),
        (None, True, True),
        (400, True, False),
        (401, True, False),
        (404, True, False),
        (429, False, True),
        (502, False, False),
        (None, False, False),
    ],
)
def test_what_is_retried(status: int | None, idempotent: bool, retried: bool) -> None:
    assert RetryPolicy().retryable(Outcome(status, "x"), idempotent=idempotent) is retried


def test_tls_errors_are_not_retried() -> None:
    assert RetryPolicy().retryable(Outcome(None, "TLS error", tls=True), idempotent=True) is False


def test_retry_after_as_an_http_date_is_obeyed() -> None:
    clock = FakeClock()
    date = formatdate(NOW + 12, usegmt=True)
    fake = FakeGitLab(faults=[Fault(503, "GET", "/runners/1", retry_after=date)])
    api = _api(fake, clock)
    assert api.find_runner(1) is None
    assert clock.sleeps == [pytest.approx(12.0)]


def test_ratelimit_reset_is_obeyed() -> None:
    clock = FakeClock()
    fake = FakeGitLab(faults=[Fault(429, "GET", "/runners/1")])
    original = fake._response

    def with_reset(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        if response.status_code == 429:
            response.headers["RateLimit-Reset"] = str(int(NOW + 5))
        return response

    fake._response = with_reset  # type: ignore[method-assign]
    api = _api(fake, clock)
    assert api.find_runner(1) is None
    assert clock.sleeps == [5.0]


def test_total_deadline_stops_retrying_before_max_retries() -> None:
    clock = FakeClock()
    fake = FakeGitLab(faults=[Fault(503, retry_after="40") for _ in range(10)])
    api = _api(fake, clock, retry_deadline=100.0, max_retries=10)
    with pytest.raises(GitLabError) as info:
        api.get_runner(1)
    # 40 + 40 fit in 100 s; a third 40 s wait would not.
    assert clock.sleeps == [40.0, 40.0]
    assert "after 3 attempts" in info.value.message


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda api: api.find_project("platform/ci/app"), "/projects/platform%2Fci%2Fapp"),
        (lambda api: api.get_variable(42, "K"), "/projects/42/variables/K"),
        (lambda api: api.read_file(42, "a.txt", "main"), "/projects/42/repository/files/a.txt/raw"),
        (lambda api: api.list_tree(42, "main"), "/projects/42/repository/tree"),
        (
            lambda api: api.download_generic(42, "p", "1", "f"),
            "/projects/42/packages/generic/p/1/f",
        ),
        (lambda api: api.delete_package(42, 9), "/projects/42/packages/9"),
        (lambda api: api.delete_runner_by_token("glrt-gone000000000000"), "/runners"),
    ],
)
def test_calls_that_made_one_attempt_are_now_retried(call: Any, path: str) -> None:
    # Issue 12: smoke gave up on one transient error in each of these.
    fake = FakeGitLab(faults=[Fault(502, None, path), Fault(429, None, path, retry_after="1")])
    sleeps: list[float] = []
    api = make_api(fake, sleeps=sleeps)
    call(api)
    assert [p for _m, p in fake.log] == [path, path, path]
    assert sleeps[1] == 1.0


def test_missing_is_none_only_for_the_listed_statuses() -> None:
    fake = FakeGitLab(faults=[Fault(403, "GET", "/projects/42/variables/K")])
    api = make_api(fake)
    with pytest.raises(GitLabError) as info:
        api.get_variable(42, "K")
    assert "403" in info.value.message
    assert "Maintainer" in (info.value.hint or "")
    assert api.get_variable(42, "K") is None  # 404 from the fake


def test_non_idempotent_calls_are_not_resent_after_a_lost_answer() -> None:
    fake = FakeGitLab(legacy_enabled=True, faults=[Fault(502, "POST", "/runners")])
    api = make_api(fake)
    with pytest.raises(GitLabError, match="502"):
        api.register_legacy("GR1348941legacyregtoken00", RunnerSpec(RunnerType.INSTANCE, "x"))
    assert fake.log == [("POST", "/runners")]


@pytest.mark.parametrize(("after_effect", "posts"), [(True, 1), (False, 2)])
def test_pipeline_recovery_finds_the_pipeline_the_lost_answer_made(
    after_effect: bool, posts: int
) -> None:
    path = "/projects/42/pipeline"
    fake = _PipelineFake(faults=[Fault(503, "POST", path, after_effect=after_effect)])
    fake.pipelines = {7: {"A": "1"}}  # an older run's pipeline, same variables
    api = make_api(fake)
    pipeline = api.create_pipeline(42, "main", {"A": "1"})
    assert sorted(fake.pipelines) == [7, 8]
    assert pipeline.id == 8
    assert [p for m, p in fake.log if m == "POST"] == [path] * posts


def test_pipeline_lost_answer_without_a_pipeline_list_is_an_error() -> None:
    fake = FakeGitLab(faults=[Fault(502, "POST", "/projects/42/pipeline")])
    api = make_api(fake)
    with pytest.raises(GitLabError, match="cannot be listed"):
        api.create_pipeline(42, "main", {"A": "1"})
    assert [m for m, _p in fake.log].count("POST") == 1


@pytest.mark.parametrize(("after_effect", "commits"), [(True, 1), (False, 2)])
def test_commit_recovery_reads_the_files_back(after_effect: bool, commits: int) -> None:
    path = "/projects/42/repository/commits"
    fake = _RepoFake(faults=[Fault(502, "POST", path, after_effect=after_effect)])
    api = make_api(fake)
    sha = api.commit_files(42, branch="main", message="m", files={"a.txt": "A", "b.txt": "B"})
    assert sha == f"sha{len(fake.commits)}"
    assert len(fake.commits) == 1
    assert [p for m, p in fake.log if m == "POST"] == [path] * commits


def test_non_idempotent_calls_are_resent_after_429() -> None:
    fake = FakeGitLab(faults=[Fault(429, "POST", "/runners", retry_after="1")])
    api = make_api(fake)
    with pytest.raises(GitLabError, match="410"):
        api.register_legacy("GR1348941legacyregtoken00", RunnerSpec(RunnerType.INSTANCE, "x"))
    assert [m for m, p in fake.log] == ["POST", "POST"]


def test_set_variable_recovers_a_lost_create_by_updating() -> None:
    fake = _VariablesFake(faults=[Fault(502, "POST", "/projects/42/variables", after_effect=True)])
    api = make_api(fake)
    api.set_variable(42, Variable("K", "v2"))
    assert fake.variables == {"K": "v2"}
    assert [(m, p) for m, p in fake.log] == [
        ("GET", "/projects/42/variables/K"),
        ("POST", "/projects/42/variables"),
        ("GET", "/projects/42/variables/K"),
        ("PUT", "/projects/42/variables/K"),
    ]


def test_every_retry_is_logged_at_info_and_redacted(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeGitLab(raise_connection_error=True)
    api = make_api(fake)
    with (
        caplog.at_level(logging.INFO, logger="provisioner.gitlab.transport"),
        pytest.raises(GitLabError),
    ):
        api.verify("glrt-secretsecretsecret0")
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 4
    assert retries[0].startswith("POST /runners/verify: ")
    assert "retry 1/4" in retries[0]
    assert all("glrt-" not in r for r in retries)


def test_a_401_without_a_token_says_a_token_is_needed() -> None:
    api = make_api(FakeGitLab(), token="")
    with pytest.raises(GitLabError) as info:
        api.resolve_group("platform/ci")
    assert "needs an access token" in (info.value.hint or "")
    assert "from no access token" not in (info.value.hint or "")


class _VariablesFake(FakeGitLab):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.variables: dict[str, str] = {}

    def _route(
        self, method: str, path: str, body: dict[str, Any], query: dict[str, str], headers: Any
    ) -> tuple[int, Any]:
        if path == "/projects/42/variables" and method == "POST":
            if body["key"] in self.variables:
                return 400, {"message": {"key": ["has already been taken"]}}
            self.variables[body["key"]] = body["value"]
            return 201, {"key": body["key"], "value": body["value"]}
        if path.startswith("/projects/42/variables/"):
            key = path.rsplit("/", 1)[-1]
            if key not in self.variables:
                return 404, {"message": "404 Variable Not Found"}
            if method == "PUT":
                self.variables[key] = body["value"]
            return 200, {"key": key, "value": self.variables[key]}
        return super()._route(method, path, body, query, headers)


class _Raw(str):
    """A body sent as it is, not as JSON."""


class _RepoFake(FakeGitLab):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files: dict[str, str] = {}
        self.commits: list[dict[str, Any]] = []

    def _route(
        self, method: str, path: str, body: dict[str, Any], query: dict[str, str], headers: Any
    ) -> tuple[int, Any]:
        if path == "/projects/42/repository/commits" and method == "POST":
            for action in body["actions"]:
                if action["action"] == "create" and action["file_path"] in self.files:
                    return 400, {"message": "A file with this name already exists"}
            for action in body["actions"]:
                self.files[action["file_path"]] = action["content"]
            self.commits.append(body)
            return 201, {"id": f"sha{len(self.commits)}"}
        if path.startswith("/projects/42/repository/files/") and path.endswith("/raw"):
            name = path.split("/")[-2]
            if name not in self.files:
                return 404, {"message": "404 File Not Found"}
            return 200, _Raw(self.files[name])
        if path == "/projects/42/repository/branches/main":
            if not self.commits:
                return 404, {"message": "404 Branch Not Found"}
            return 200, {"name": "main", "commit": {"id": f"sha{len(self.commits)}"}}
        return super()._route(method, path, body, query, headers)

    @staticmethod
    def _response(
        request: requests.PreparedRequest, status: int, payload: Any, retry_after: str | None = None
    ) -> requests.Response:
        response = FakeGitLab._response(request, status, payload, retry_after)
        if isinstance(payload, _Raw):
            response._content = payload.encode()
        return response


class _PipelineFake(FakeGitLab):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipelines: dict[int, dict[str, str]] = {}

    def _route(
        self, method: str, path: str, body: dict[str, Any], query: dict[str, str], headers: Any
    ) -> tuple[int, Any]:
        if path == "/projects/42/pipeline" and method == "POST":
            new = max(self.pipelines, default=0) + 1
            self.pipelines[new] = {v["key"]: v["value"] for v in body.get("variables", [])}
            return 201, {"id": new, "iid": new, "status": "created", "web_url": "u"}
        if path == "/projects/42/pipelines":
            assert query["source"] == "api"
            return 200, [{"id": i} for i in sorted(self.pipelines, reverse=True)]
        parts = path.split("/")
        if path.startswith("/projects/42/pipelines/") and path.endswith("/variables"):
            variables = self.pipelines[int(parts[4])]
            return 200, [{"key": k, "value": v} for k, v in variables.items()]
        if path.startswith("/projects/42/pipelines/"):
            return 200, {"id": int(parts[4]), "iid": 1, "status": "pending", "web_url": "u"}
        return super()._route(method, path, body, query, headers)


class _Answers(requests.adapters.BaseAdapter):
    """Answers every request with 200 and the given headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self.headers = headers

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"id": 7, "username": "root"}'
        response.headers.update({"Content-Type": "application/json", **self.headers})
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def _budget_api(headers: dict[str, str], clock: FakeClock) -> GitLabAPI:
    session = requests.Session()
    session.mount(BASE, _Answers(headers))
    connection = ConnectionSettings(url=BASE, token=PAT)
    transport = Transport(
        connection,
        session=session,
        sleep=clock.sleep,
        clock=lambda: clock.now,
        wall_clock=lambda: NOW,
        jitter=lambda: 0.5,
    )
    return GitLabAPI(connection, transport=transport)


def test_the_request_budget_spaces_requests_and_is_off_by_default() -> None:
    clock = FakeClock()
    api = _budget_api({}, clock)
    for _ in range(3):
        api.current_username()
    assert clock.sleeps == []
    api.limit_rate(2.0)
    for _ in range(3):
        api.current_username()
    assert clock.sleeps == [0.5, 0.5]


def test_the_budget_waits_for_the_reset_when_no_request_remains() -> None:
    clock = FakeClock()
    api = _budget_api({"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW) + 7)}, clock)
    api.limit_rate(1.0)
    api.current_username()
    api.current_username()
    assert clock.sleeps == [7.0]
