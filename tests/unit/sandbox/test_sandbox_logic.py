"""Pure parts of the sandbox: fault bounds, job/pipeline status rules, runner status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from provisioner.sandbox.entities import runner_status
from provisioner.sandbox.faults import Faults
from provisioner.sandbox.pipelines import _next_status, composite_status
from provisioner.sandbox.state import now_iso, parse_iso


def test_faults_never_exceed_the_streak_bound() -> None:
    faults = Faults(fault_rate=1.0, max_consecutive=2, seed=7)
    picks = [faults.pick() for _ in range(30)]
    assert picks[2::3] == [None] * 10
    assert all(p in (429, 500, 502, 503) for i, p in enumerate(picks) if i % 3 != 2)
    snap = faults.snapshot()
    assert snap["requests"] == 30
    assert snap["injected_total"] == 20


def test_the_streak_bound_holds_per_request_when_other_requests_interleave() -> None:
    # A careful client looks around (GET) between two tries of the same create (POST): the
    # successful look-ups must not reset the bound of the create.
    faults = Faults(fault_rate=1.0, max_consecutive=2, seed=3)
    creates = []
    for _ in range(3):
        creates.append(faults.pick("POST /api/v4/user/runners"))
        faults.pick("GET /api/v4/runners/all")
    assert None not in creates[:2]
    assert creates[2] is None


def test_no_faults_at_rate_zero_and_bad_settings_refused() -> None:
    faults = Faults(seed=1)
    assert {faults.pick() for _ in range(100)} == {None}
    with pytest.raises(ValueError, match="between 0 and 1"):
        faults.configure(fault_rate=1.5)
    with pytest.raises(ValueError, match="negative"):
        Faults(latency_ms=-1)


def test_429_response_headers() -> None:
    response = Faults(retry_after=2).response(429)
    headers = response.headers
    assert response.status_code == 429
    assert headers["Retry-After"] == "2"
    assert headers["RateLimit-Remaining"] == "0"
    assert int(headers["RateLimit-Reset"]) > 0
    assert headers["RateLimit-ResetTime"].endswith("GMT")


@pytest.mark.parametrize(
    ("when", "failed", "expected"),
    [
        ("on_success", False, "pending"),
        ("on_success", True, "skipped"),
        ("on_failure", True, "pending"),
        ("on_failure", False, "skipped"),
        ("always", True, "pending"),
        ("manual", False, "manual"),
        ("manual", True, "skipped"),
    ],
)
def test_when_rules(when: str, failed: bool, expected: str) -> None:
    assert _next_status(when, failed) == expected


def _jobs(*pairs: tuple[str, bool]) -> list[dict[str, Any]]:
    return [{"status": s, "allow_failure": a} for s, a in pairs]


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        (_jobs(("pending", False), ("created", False)), "pending"),
        (_jobs(("success", False), ("pending", False)), "running"),
        (_jobs(("running", False)), "running"),
        (_jobs(("success", False), ("failed", True)), "success"),
        (_jobs(("success", False), ("failed", False)), "failed"),
        (_jobs(("success", False), ("canceled", False)), "canceled"),
        (_jobs(("success", False), ("manual", True)), "success"),
        (_jobs(("success", False), ("manual", False), ("created", False)), "manual"),
        (_jobs(("skipped", False)), "skipped"),
    ],
)
def test_pipeline_status_from_jobs(jobs: list[dict[str, Any]], expected: str) -> None:
    assert composite_status(jobs) == expected


def _runner(
    created: timedelta, contacted: timedelta | None, paused: bool = False
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "created_at": now_iso(now - created),
        "contacted_at": now_iso(now - contacted) if contacted is not None else None,
        "paused": paused,
    }


def test_runner_status_like_gitlab() -> None:
    assert runner_status(_runner(timedelta(hours=1), None)) == "never_contacted"
    assert runner_status(_runner(timedelta(days=1), timedelta(minutes=5))) == "online"
    assert runner_status(_runner(timedelta(days=1), timedelta(hours=3))) == "offline"
    assert runner_status(_runner(timedelta(days=9), timedelta(days=8))) == "stale"
    assert runner_status(_runner(timedelta(days=9), None)) == "stale"
    paused = _runner(timedelta(days=1), timedelta(minutes=5), paused=True)
    assert runner_status(paused) == "paused"
    assert runner_status(paused, rest=False) == "online"


def test_timestamps_round_trip_with_milliseconds() -> None:
    moment = datetime(2026, 1, 25, 16, 39, 48, 66000, tzinfo=UTC)
    text = now_iso(moment)
    assert text == "2026-01-25T16:39:48.066Z"
    assert parse_iso(text) == moment


def _ctx(query: str) -> Any:
    from provisioner.sandbox.web import Ctx

    return Ctx(
        method="GET",
        raw_path="/api/v4/runners/all",
        query_string=query,
        headers={},
        body=b"",
        scheme="http",
        host="gl.test:8929",
    )


def test_pagination_headers_and_counts_omitted_above_10000() -> None:
    from provisioner.sandbox.web import paginate

    small = paginate(_ctx("scope=active&page=2&per_page=3"), list(range(7)), lambda r: r)
    assert small.body == b"[3,4,5]"
    h = small.headers
    assert (h["x-page"], h["x-per-page"], h["x-total"], h["x-total-pages"]) == ("2", "3", "7", "3")
    assert (h["x-next-page"], h["x-prev-page"]) == ("3", "1")
    assert h["link"] == (
        '<http://gl.test:8929/api/v4/runners/all?scope=active&page=1&per_page=3>; rel="prev", '
        '<http://gl.test:8929/api/v4/runners/all?scope=active&page=3&per_page=3>; rel="next", '
        '<http://gl.test:8929/api/v4/runners/all?scope=active&page=1&per_page=3>; rel="first", '
        '<http://gl.test:8929/api/v4/runners/all?scope=active&page=3&per_page=3>; rel="last"'
    )
    big = paginate(_ctx("per_page=500"), list(range(10_001)), lambda r: r)
    assert big.headers["x-per-page"] == "100"
    assert "x-total" not in big.headers
    assert "x-total-pages" not in big.headers
    assert 'rel="last"' not in big.headers["link"]
    assert big.headers["x-next-page"] == "2"
