"""Fault mode: latency and 5xx/429 injection, observable through a counter and bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox


def _control(sandbox: RunningSandbox, **settings: Any) -> dict[str, Any]:
    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    url = f"{sandbox.url}/-/sandbox/faults"
    resp = (
        requests.put(url, json=settings, headers=headers, timeout=10)
        if settings
        else requests.get(url, headers=headers, timeout=10)
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


@pytest.fixture
def faults(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    try:
        yield sandbox
    finally:
        _control(sandbox, fault_rate=0, latency_ms=0)


def test_429_has_integer_retry_after_and_ratelimit_headers(faults: RunningSandbox) -> None:
    _control(faults, fault_rate=1.0)
    seen: dict[int, requests.Response] = {}
    for _ in range(30):
        resp = requests.get(
            f"{faults.url}/api/v4/version", headers={"PRIVATE-TOKEN": faults.root_token}, timeout=10
        )
        seen.setdefault(resp.status_code, resp)
    assert 429 in seen
    limited = seen[429]
    assert limited.headers["Retry-After"].isdigit()
    assert limited.headers["content-type"].startswith("text/plain")
    assert limited.text == "Retry later\n"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) >= int(time.time()) - 1
    assert parsedate_to_datetime(limited.headers["RateLimit-ResetTime"]).tzinfo is not None
    assert {s for s in seen if s >= 500} <= {500, 502, 503}
    # Bounded: even at rate 1.0 every third request gets through.
    assert 200 in seen


def test_python_gitlab_retries_through_faults(faults: RunningSandbox) -> None:
    project = faults.new_project()
    before = _control(faults)["injected_total"]
    _control(faults, fault_rate=0.5)
    gl = faults.gitlab(retry_transient_errors=True)
    for i in range(12):
        assert gl.projects.get(project.id).id == project.id
        project_again = gl.projects.get(project.id, lazy=True)
        project_again.variables.create({"key": f"K{i}", "value": "v"})
    stats = _control(faults, fault_rate=0)
    assert stats["injected_total"] > before
    assert set(stats["injected"]) <= {"429", "500", "502", "503"}
    assert len(project.variables.list(get_all=True)) == 12


def test_latency_is_added(faults: RunningSandbox) -> None:
    _control(faults, latency_ms=300)
    start = time.monotonic()
    resp = requests.get(
        f"{faults.url}/api/v4/version", headers={"PRIVATE-TOKEN": faults.root_token}, timeout=10
    )
    elapsed = time.monotonic() - start
    assert resp.status_code == 200
    assert elapsed >= 0.3
    assert _control(faults)["latency_ms"] == 300


def test_control_needs_admin_and_valid_values(faults: RunningSandbox) -> None:
    resp = requests.put(
        f"{faults.url}/-/sandbox/faults",
        json={"fault_rate": 2},
        headers={"PRIVATE-TOKEN": faults.root_token},
        timeout=10,
    )
    assert resp.status_code == 400
    anon = requests.get(f"{faults.url}/-/sandbox/faults", timeout=10)
    assert anon.status_code == 401


def test_lost_answers_happen_after_the_handler_ran(faults: RunningSandbox) -> None:
    """``lost_answer_rate``: GitLab acted, the client got a 502 or a dropped connection."""
    _control(faults, lost_answer_rate=1.0)
    headers = {"PRIVATE-TOKEN": faults.root_token}
    outcomes: list[str] = []
    names = [faults.unique("lost") for _ in range(9)]
    try:
        for name in names:
            try:
                resp = requests.post(
                    f"{faults.url}/api/v4/projects",
                    json={"name": name, "path": name},
                    headers=headers,
                    timeout=10,
                )
            except requests.exceptions.RequestException:
                outcomes.append("dropped")
            else:
                if resp.status_code == 502:
                    assert resp.headers["X-Sandbox-Fault"] == "lost-answer"
                outcomes.append(str(resp.status_code))
    finally:
        state = _control(faults, lost_answer_rate=0)
    # Bounded per request like the other faults: two lost answers, then one gets through.
    assert [o == "201" for o in outcomes] == [False, False, True] * 3
    assert {o for o in outcomes if o != "201"} == {"502", "dropped"}
    assert state["lost_answers_total"] >= 6
    # Every create took effect, although no client heard of six of them.
    for name in names:
        found = requests.get(
            f"{faults.url}/api/v4/projects/root%2F{name}", headers=headers, timeout=10
        )
        assert found.status_code == 200, name
