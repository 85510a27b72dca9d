"""API requests and time per `register`, first run and idempotent re-run, against the sandbox.

Registers N runners (default 50) into one config.toml through the registration domain with the
real adapter (python-gitlab over HTTP to an in-process sandbox), then runs the same N registers
again. Requests are counted on the client side by the adapter's requests-Session hook.

Baseline, measured in the same run against the same sandbox: the usual python-gitlab script
(`gl.auth()`, `gl.user.runners.create`, `gl.runners.verify`, `gl.runners.get`) and, for its
re-run, the name-keyed lookup such scripts do (list every runner, then verify and read the
match). Its list cost grows with the number of runners; ours does not.

Goals: at most 3 requests per runner for a first run (instance scope or numeric ids; a group or
project *path* adds one lookup) and at most 2 for a no-op re-run.

Usage: .venv/bin/python benchmarks/register_calls.py [--runners N] [--scope instance|group]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL_FIRST = 3
GOAL_RERUN = 2


def _ours(url: str, token: str, config: Path, n: int, scope_text: str) -> dict[str, Any]:
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings
    from provisioner.registration import Executor, ExecutorConfig, parse_scope
    from provisioner.registration.service import Action, RegisterRequest, register
    from provisioner.runner_config import ConfigStore

    store = ConfigStore(config)
    scope = parse_scope(scope_text)
    out: dict[str, Any] = {}
    for phase, expected in (("first", Action.CREATED), ("rerun", Action.UNCHANGED)):
        counts: list[int] = []
        times: list[float] = []
        for i in range(n):
            api = GitLabAPI(ConnectionSettings(url=url, token=token))
            request = RegisterRequest(
                name=f"bench-{scope.runner_type.value}-{i:03d}",
                scope=scope,
                gitlab_url=url,
                executor=ExecutorConfig(Executor.DOCKER),
                tags=("bench",),
            )
            start = time.perf_counter()
            result = register(request, gitlab=api, store=store)
            times.append(time.perf_counter() - start)
            if result.action is not expected:
                raise SystemExit(f"{phase}: expected {expected}, got {result.action}")
            counts.append(api.request_count)
        out[phase] = (statistics.mean(counts), max(counts), statistics.median(times))
    return out


def _baseline(url: str, token: str, n: int, prefix: str) -> dict[str, Any]:
    import gitlab
    import requests

    sent = [0]

    def client() -> Any:
        session = requests.Session()
        session.hooks["response"].append(lambda *_a, **_k: sent.__setitem__(0, sent[0] + 1))
        return gitlab.Gitlab(url, private_token=token, session=session)

    tokens: dict[str, str] = {}
    out: dict[str, Any] = {}
    for phase in ("first", "rerun"):
        counts: list[int] = []
        times: list[float] = []
        for i in range(n):
            name = f"{prefix}-{i:03d}"
            sent[0] = 0
            gl = client()
            start = time.perf_counter()
            if phase == "first":
                gl.auth()
                created = gl.user.runners.create(
                    {"runner_type": "instance_type", "description": name, "tag_list": ["bench"]}
                )
                tokens[name] = created.token
                gl.runners.verify(created.token)
                gl.runners.get(created.id)
            else:
                found = [r for r in gl.runners.list(get_all=True) if r.description == name]
                gl.runners.verify(tokens[name])
                gl.runners.get(found[0].id)
            times.append(time.perf_counter() - start)
            counts.append(sent[0])
        out[phase] = (statistics.mean(counts), max(counts), statistics.median(times))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=50)
    parser.add_argument("--scope", choices=("instance", "group"), default="instance")
    args = parser.parse_args()

    import gitlab

    from provisioner.sandbox import start_background

    with tempfile.TemporaryDirectory() as tmp:
        handle = start_background(Path(tmp) / "gitlab", port=0)
        try:
            gl = gitlab.Gitlab(handle.url, private_token=handle.root_token)
            group = gl.groups.create({"name": "bench", "path": "bench"})
            scope = "instance" if args.scope == "instance" else "group:bench"
            base = _baseline(handle.url, handle.root_token, args.runners, "baseline")
            ours = _ours(
                handle.url, handle.root_token, Path(tmp) / "config.toml", args.runners, scope
            )
            del group
        finally:
            handle.stop()

    print(f"register x {args.runners} runners, scope {scope}, sandbox on loopback")
    print(f"{'':24}{'req/runner (mean, max)':>26}{'median time':>14}")
    ok = True
    for phase, goal in (("first", GOAL_FIRST), ("rerun", GOAL_RERUN)):
        mean, worst, median = ours[phase]
        b_mean, b_worst, b_median = base[phase]
        print(f"runnerctl {phase:<14}{mean:>18.2f}{worst:>8}{median * 1000:>11.1f} ms")
        print(f"baseline  {phase:<14}{b_mean:>18.2f}{b_worst:>8}{b_median * 1000:>11.1f} ms")
        print(
            f"  ratio runnerctl/baseline: requests {mean / b_mean:.2f}, "
            f"time {median / b_median:.2f}"
        )
        budget = goal + (1 if phase == "first" and scope != "instance" else 0)
        verdict = "meets" if worst <= budget else "MISSES"
        print(f"  goal <= {budget} requests per runner: {verdict}")
        ok = ok and worst <= budget
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
