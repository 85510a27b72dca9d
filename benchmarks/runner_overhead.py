"""Per-job overhead of the stand-in runner: a 10-job pipeline of `true` jobs vs `true` run directly.

A sandbox GitLab runs in this process; a runner is registered through runnerctl's registration
service into a fresh config.toml (shell executor, then docker executor with the local job image
and ``network_mode = "host"``). For each executor the benchmark creates a pipeline of N jobs
whose script is ``true``, starts the runner and measures the wall time until the N-th job has
been reported. ``concurrent = 1``, so the jobs run one after another and the time per job is
everything a job costs: request, clone with real git, script, trace, final update (and, for
docker, creating, starting and removing a container).

Baselines, measured in the same run: the same N commands run directly (``bash -c true`` as a
process each, and ``docker run --rm <image> true`` through the docker SDK for the docker
executor). Printed: wall times, per-job overhead over the direct command, and the ratio.

Usage: .venv/bin/python benchmarks/runner_overhead.py [--jobs N] [--executor shell|docker|both]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IMAGE = "runnerctl/python:3.11"


def _register(url: str, token: str, config: Path, executor: str, tag: str) -> None:
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings
    from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
    from provisioner.registration.service import RegisterRequest, register
    from provisioner.runner_config import ConfigDocument, ConfigStore

    request = RegisterRequest(
        name=f"bench-{executor}",
        scope=parse_scope("instance"),
        gitlab_url=url,
        executor=ExecutorConfig(
            Executor(executor), docker=DockerOptions(image=IMAGE, pip_cache_volume=None)
        ),
        tags=(tag,),
    )
    store = ConfigStore(config)
    register(
        request,
        gitlab=GitLabAPI.from_settings(ConnectionSettings(url=url, token=token)),
        store=store,
    )

    def tune(doc: ConfigDocument) -> None:
        doc.set_global("concurrent", 1)
        doc.set_global("check_interval", 1)
        for table in doc.runner_tables():
            if executor == "docker":
                table["docker"]["network_mode"] = "host"
                table["docker"]["volumes"] = []

    store.update(tune)


def _pipeline(gl: Any, n: int, tag: str) -> Any:
    ci = "\n".join(f"job-{i:02d}:\n  tags: [{tag}]\n  script: ['true']\n" for i in range(n))
    name = f"bench-{tag}"
    project = gl.projects.create({"name": name, "path": name})
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "bench",
            "actions": [{"action": "create", "file_path": ".gitlab-ci.yml", "content": ci}],
        }
    )
    return project


def _run_pipeline(url: str, token: str, gl: Any, tmp: Path, *, executor: str, n: int) -> float:
    from provisioner.sandbox_runner import start_background

    tag = f"bench-{executor}"
    config = tmp / f"{executor}.toml"
    _register(url, token, config, executor, tag)
    project = _pipeline(gl, n, tag)
    project.pipelines.create({"ref": "main"})
    start = time.perf_counter()
    handle = start_background(config, work_dir=tmp / f"work-{executor}")
    try:
        while len(handle.results) < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    finally:
        handle.stop(timeout=30)
    bad = [r for r in handle.results if r.state.value != "success"]
    if bad:
        raise SystemExit(f"{executor}: {len(bad)} jobs did not succeed: {bad[0]}")
    return elapsed


def _direct_shell(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["bash", "-c", "true"], check=True)
    return time.perf_counter() - start


def _direct_docker(n: int) -> float:
    from provisioner.docker_api import DockerAPI

    docker = DockerAPI.from_env()
    start = time.perf_counter()
    for _ in range(n):
        result = docker.run(IMAGE, ["true"], network_mode="host")
        if not result.ok:
            raise SystemExit(f"docker run {IMAGE} true failed: {result.output}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--executor", choices=("shell", "docker", "both"), default="both")
    args = parser.parse_args()
    n = args.jobs
    import gitlab

    from provisioner.sandbox import start_background

    executors = ("shell", "docker") if args.executor == "both" else (args.executor,)
    rows = []
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as raw:
        tmp = Path(raw)
        sandbox = start_background(tmp / "gitlab", port=0)
        try:
            gl = gitlab.Gitlab(sandbox.url, private_token=sandbox.root_token)
            gl.auth()
            for executor in executors:
                pipeline = _run_pipeline(
                    sandbox.url, sandbox.root_token, gl, tmp, executor=executor, n=n
                )
                direct = _direct_shell(n)
                rows.append((executor, "bash -c true", pipeline, direct))
                if executor == "docker":
                    rows.append((executor, "docker run --rm", pipeline, _direct_docker(n)))
        finally:
            sandbox.stop()
    print(f"{n}-job pipeline of `true` jobs, concurrent = 1, runner and sandbox in one process")
    print(
        f"{'executor':<9} {'baseline':<16} {'pipeline s':>10} {'baseline s':>10} "
        f"{'per job s':>9} {'overhead/job s':>14} {'ratio':>7}"
    )
    for executor, baseline, pipeline, direct in rows:
        per_job = pipeline / n
        overhead = (pipeline - direct) / n
        print(
            f"{executor:<9} {baseline:<16} {pipeline:>10.2f} {direct:>10.3f} "
            f"{per_job:>9.3f} {overhead:>14.3f} {pipeline / direct:>6.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
