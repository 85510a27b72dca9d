"""Sandbox API throughput, against a no-op ASGI endpoint on the same stack in the same run.

Measures, with the server in its own process (``runnerctl sandbox up``):
  * requests/s for ``GET /api/v4/projects/:id`` with 20 concurrent clients;
  * requests/s for ``POST /api/v4/jobs/request`` (runner polling, nothing queued: 204) with 20
    concurrent clients;
  * the time python-gitlab takes to list 10,000 runners with pagination (100 per page);
and the same 20-client load against a no-op uvicorn app (``200 {}`` for GET, ``204`` for POST),
the baseline. The clients are 20 threads of one Python process, so the no-op figure is mostly
the client's own ceiling: a ratio near 1 means the sandbox is not the bottleneck.

Usage: .venv/bin/python benchmarks/sandbox_api.py [--requests N] [--runners N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

CLIENTS = 20
NOOP_APP = """
import socket, sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":  # like a 204 "no job" answer
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0)); sock.listen(256)
print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                              lifespan="off")).run(sockets=[sock])
"""


def _env() -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}


def _load(total: int, call: Callable[[requests.Session], int]) -> float:
    """Requests per second for ``total`` calls spread over CLIENTS threads."""
    per_client = total // CLIENTS
    errors: list[int] = []

    def worker() -> None:
        session = requests.Session()
        session.trust_env = False
        for _ in range(per_client):
            status = call(session)
            if status >= 400:
                errors.append(status)

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} failed requests, e.g. HTTP {errors[0]}")
    return per_client * CLIENTS / elapsed


def _seed_runners(data_dir: Path, count: int) -> None:
    """Insert ``count`` instance runners straight into the store (creating them is not timed)."""
    from provisioner.sandbox.api_runners import _insert_runner
    from provisioner.sandbox.state import Store

    store = Store(data_dir)
    store.bootstrap()
    with store.tx():
        for i in range(count):
            _insert_runner(
                store,
                "instance_type",
                {"description": f"bench-{i}"},
                creator=1,
                group_id=None,
                project_id=None,
                legacy=False,
            )
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runners", type=int, default=10_000)
    args = parser.parse_args()
    runnerctl = str(Path(sys.executable).with_name("runnerctl"))

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "gitlab"
        _seed_runners(data, args.runners)
        server = subprocess.Popen(
            [runnerctl, "sandbox", "up", "--port", "0", "--data-dir", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        noop = subprocess.Popen(
            [sys.executable, "-c", NOOP_APP], stdout=subprocess.PIPE, text=True, env=_env()
        )
        try:
            assert server.stdout is not None
            assert noop.stdout is not None
            url = server.stdout.readline().split(": ", 1)[1].strip()
            token_file = Path(server.stdout.readline().split(": ", 1)[1].strip())
            token = token_file.read_text().strip()
            noop_url = noop.stdout.readline().strip()
            import gitlab

            gl = gitlab.Gitlab(url, private_token=token)
            gl.session.trust_env = False
            project = gl.projects.create({"name": "bench"})
            runner = gl.http_post("/user/runners", post_data={"runner_type": "instance_type"})
            headers = {"PRIVATE-TOKEN": token}

            _load(200, lambda s: s.get(noop_url).status_code)  # warm-up
            baseline = _load(args.requests, lambda s: s.get(noop_url).status_code)
            baseline_post = _load(
                args.requests, lambda s: s.post(noop_url, json={"token": "x"}).status_code
            )
            get_rps = _load(
                args.requests,
                lambda s: s.get(f"{url}/api/v4/projects/{project.id}", headers=headers).status_code,
            )
            poll_rps = _load(
                args.requests,
                lambda s: (
                    s.post(
                        f"{url}/api/v4/jobs/request",
                        json={"token": runner["token"]},
                        headers={"RUNNER-TOKEN": runner["token"]},
                    ).status_code
                ),
            )

            start = time.perf_counter()
            listed = gl.runners_all.list(per_page=100, get_all=True)
            list_seconds = time.perf_counter() - start
            assert len(listed) == args.runners + 1, len(listed)
        finally:
            for proc in (server, noop):
                proc.terminate()
                proc.wait(timeout=15)

    print(f"clients                          {CLIENTS}")
    print(f"no-op ASGI GET 200 (baseline)    {baseline:8.0f} req/s")
    print(f"no-op ASGI POST 204 (baseline)   {baseline_post:8.0f} req/s")
    print(
        f"GET /projects/:id                {get_rps:8.0f} req/s   "
        f"ratio to baseline {get_rps / baseline:5.2f}"
    )
    print(
        f"POST /jobs/request (204)         {poll_rps:8.0f} req/s   "
        f"ratio to POST baseline {poll_rps / baseline_post:5.2f}"
    )
    pages = (args.runners + 1 + 99) // 100
    print(
        f"list {len(listed)} runners ({pages} pages) {list_seconds:8.2f} s     "
        f"{list_seconds / pages * 1000:.1f} ms/page; a no-op request takes "
        f"{1000 / baseline * CLIENTS:.1f} ms under the same load"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
