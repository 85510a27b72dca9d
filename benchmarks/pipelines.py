"""Requests and time of one `runnerctl pipelines` refresh, against the 1 + N REST script.

A sandbox group of 1,000 projects in 20 subgroups, each project with three pipelines (two on
``main``, a newer one on ``feature``). Both sides show the newest pipeline of any ref
(``--ref any``), the field script's semantics.

- **ours**: the monitor domain with the real adapter: one GraphQL request per page of 100
  projects (``group.projects(includeSubgroups: true)`` with ``pipelines(first: 1)`` nested);
- **baseline**: the script the field describes (``display-latest-pipelines.py --group-id``):
  ``GET /groups/:id/projects`` then ``GET /projects/:id/pipelines`` per project, written here
  with paging (``X-Next-Page``) and ``include_subgroups`` added so that it is correct.

Requests are counted by the sandbox per route (``handle.app.requests``). "First paint" is the
time until the table can be drawn: after the last request for both (neither draws partial
tables). Both run without a request budget on the same server, so the time compares work; the
budgeted time of ours (its default of at most 1 request/s) is printed too.

Goals: at most 12 requests per refresh (≥ 80x fewer than the baseline) and a first paint
faster than the baseline's.

Usage: .venv/bin/python benchmarks/pipelines.py [--projects 1000] [--subgroups 20]
       [--latency-ms 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GOAL_REQUESTS = 12
GOAL_RATIO = 80.0


def _seed(handle: Any, projects: int, subgroups: int) -> str:
    """The group through the API, the projects and pipelines straight into the store."""
    import gitlab

    gl = gitlab.Gitlab(handle.url, private_token=handle.root_token)
    top = gl.groups.create({"name": "bench", "path": "bench"})
    subs = [
        gl.groups.create({"name": f"team{i:02d}", "path": f"team{i:02d}", "parent_id": top.id})
        for i in range(subgroups)
    ]
    store = handle.app.store
    now = datetime.now(UTC)
    statuses = ("success", "failed", "running", "pending", "canceled")
    with store.tx():
        for i in range(projects):
            stamp = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            pid = store.insert(
                "projects",
                {
                    "name": f"svc{i:04d}",
                    "path": f"svc{i:04d}",
                    "namespace_id": subs[i % subgroups].id,
                    "visibility": "private",
                    "default_branch": "main",
                    "created_at": stamp,
                    "last_activity_at": stamp,
                    "creator_id": 1,
                    "runners_token": f"bench{i}",
                },
            )
            for n, ref in enumerate(("main", "main", "feature")):
                moment = (now - timedelta(minutes=30 - 10 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
                store.insert(
                    "pipelines",
                    {
                        "iid": n + 1,
                        "project_id": pid,
                        "ref": ref,
                        "sha": "a" * 40,
                        "before_sha": "0" * 40,
                        "status": statuses[(i + n) % len(statuses)],
                        "source": "push",
                        "user_id": 1,
                        "created_at": moment,
                        "updated_at": moment,
                        "started_at": moment,
                    },
                )
    return str(top.full_path)


def _ours(url: str, token: str, group: str) -> tuple[int, float, int]:
    """(rows, seconds, requests counted by the client) of one refresh."""
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings
    from provisioner.monitor import GroupMonitor, MonitorSpec, RefMode

    api = GitLabAPI(ConnectionSettings(url=url, token=token))
    monitor = GroupMonitor(MonitorSpec(group=group, ref_mode=RefMode.ANY), gitlab=api)
    start = time.perf_counter()
    snapshot = monitor.refresh()
    return len(snapshot.rows), time.perf_counter() - start, snapshot.requests


def _baseline(url: str, token: str, group: str) -> tuple[int, float]:
    """The 1 + N script, with paging and subgroups added; (rows, seconds)."""
    import requests

    session = requests.Session()
    session.headers["PRIVATE-TOKEN"] = token
    start = time.perf_counter()
    rows = []
    page = "1"
    encoded = requests.utils.quote(group, safe="")
    while page:
        answer = session.get(
            f"{url}/api/v4/groups/{encoded}/projects",
            params={"include_subgroups": "true", "per_page": 100, "page": page},
            timeout=60,
        )
        answer.raise_for_status()
        for project in answer.json():
            pipelines = session.get(
                f"{url}/api/v4/projects/{project['id']}/pipelines",
                params={"per_page": 1},
                timeout=60,
            )
            pipelines.raise_for_status()
            latest = pipelines.json()
            rows.append((project["path_with_namespace"], latest[0]["status"] if latest else None))
        page = answer.headers.get("X-Next-Page", "")
    return len(rows), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--subgroups", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=0, help="added per API request")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from provisioner.sandbox import start_background

    with tempfile.TemporaryDirectory() as tmp:
        handle = start_background(Path(tmp), port=0, latency_ms=args.latency_ms)
        try:
            group = _seed(handle, args.projects, args.subgroups)
            counter = handle.app.requests
            ours, base = [], []
            for _ in range(args.rounds):
                counter.reset()
                rows, seconds, client_count = _ours(handle.url, handle.root_token, group)
                ours.append((rows, seconds, counter.total(""), client_count))
                counter.reset()
                rows_b, seconds_b = _baseline(handle.url, handle.root_token, group)
                base.append((rows_b, seconds_b, counter.total("")))
        finally:
            handle.stop()

    rows, _, requests_ours, client = ours[-1]
    rows_b, _, requests_base = base[-1]
    time_ours = statistics.median(o[1] for o in ours)
    time_base = statistics.median(b[1] for b in base)
    ratio = requests_base / requests_ours
    budgeted = max(0, requests_ours - 1) * 1.0 + time_ours
    print(f"group: {args.projects} projects in {args.subgroups} subgroups, 3 pipelines each")
    print(f"latency added per request: {args.latency_ms} ms; median of {args.rounds} rounds")
    print(f"{'':10} {'rows':>6} {'requests':>9} {'first paint':>12}")
    print(f"{'runnerctl':10} {rows:>6} {requests_ours:>9} {time_ours:>11.2f}s")
    print(f"{'1 + N REST':10} {rows_b:>6} {requests_base:>9} {time_base:>11.2f}s")
    print(f"requests: {ratio:.0f}x fewer (server count {requests_ours}, client count {client})")
    print(f"first paint: {time_base / time_ours:.1f}x faster without a budget")
    print(
        f"with runnerctl's default budget (1 request/s): about {budgeted:.1f}s; the baseline "
        f"under the same budget would need about {requests_base:.0f}s"
    )
    ok = (
        rows == rows_b == args.projects
        and requests_ours <= GOAL_REQUESTS
        and ratio >= GOAL_RATIO
        and time_ours < time_base
    )
    print(
        f"goals (<= {GOAL_REQUESTS} requests, >= {GOAL_RATIO:.0f}x fewer, faster first paint): "
        + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
