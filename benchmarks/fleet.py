"""What one `fleet plan` costs: API requests, SSH sessions and time, for 100 runners.

Starts a sandbox and N stand-in VMs (systemd + sshd containers from the hosts tests' image;
default 10 hosts with 10 runners each, `--hosts N` to change), creates 100 runners marked as
the fleet's, writes each host's config.toml with its runners' entries and a `gitlab-runner`
service, so the fleet is converged. Then runs `runnerctl fleet plan` (a real process, as a
scheduled job would) several times and prints, against the goals of issue 15:

- API requests per plan, counted by the sandbox (`/-/sandbox/requests`) and by the client
  (goal: <= 5 for 100 runners);
- SSH sessions per plan (goal: one per host);
- the plan's median wall time, and the ratio of a no-change `fleet apply` to it (goal: < 2)
  when `fleet apply` exists in this tree.

Usage: .venv/bin/python benchmarks/fleet.py [--hosts 10] [--runners 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.hostlab import (  # noqa: E402 (after the path setup)
    BASE,
    HERE,
    IMAGE,
    RUN_FLAGS,
    STANDIN,
    VmHost,
    _ensure_base,
    _wait_for_sshd,
    docker,
)

RUNNERCTL = Path(sys.executable).with_name("runnerctl")
FLEET = "bench"
SERVICE = (
    "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/sleep infinity\n"
    "[Install]\nWantedBy=multi-user.target\n"
)


def start_hosts(prefix: str, count: int, public: str, hosts: list[VmHost]) -> list[VmHost]:
    """Start ``count`` VMs, appending each to ``hosts`` as soon as it exists (for clean-up)."""
    for i in range(count):
        container = f"{prefix}-{i}"
        docker("run", "-d", "--name", container, *RUN_FLAGS, IMAGE)
        ip = docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", container)
        hosts.append(VmHost(f"h{i:02d}", container, ip))
    for host in hosts:
        _wait_for_sshd(host, time.monotonic() + 300)  # a loaded machine starts them slowly
        host.sh(
            f"echo '{public}' > /home/ops/.ssh/authorized_keys && "
            "chown ops:ops /home/ops/.ssh/authorized_keys && "
            "chmod 600 /home/ops/.ssh/authorized_keys"
        )
        docker("cp", str(STANDIN), f"{host.container}:/usr/local/bin/gitlab-runner")
        host.sh(
            "chmod 755 /usr/local/bin/gitlab-runner && "
            f"printf '{SERVICE}' > /etc/systemd/system/gitlab-runner.service && "
            "systemctl daemon-reload && systemctl enable --now gitlab-runner >/dev/null 2>&1"
        )
    return hosts


def converge(gl: Any, url: str, hosts: list[VmHost], runners: int) -> str:
    """Create the runners (marked) and each host's config.toml; return FLEET.toml's text."""
    from provisioner.fleet.model import marker

    lines = [
        f'[fleet]\nname = "{FLEET}"\ngitlab_url = "{url}"\nssh_user = "ops"\n',
        '[fleet.defaults]\nexecutor = "shell"\n',
    ]
    lines += [f'[[hosts]]\nname = "{h.name}"\naddress = "{h.ip}"\n' for h in hosts]
    entries: dict[str, list[str]] = {h.name: [] for h in hosts}
    for i in range(runners):
        host = hosts[i % len(hosts)]
        name = f"r{i:03d}"
        created = gl.http_post(
            "/user/runners",
            post_data={
                "runner_type": "instance_type",
                "description": name,
                "tag_list": ["bench", host.name],
                "maintenance_note": marker(FLEET, name),
                "locked": True,  # FLEET.toml's defaults
                "run_untagged": False,
            },
        )
        lines.append(
            f'[[runners]]\nname = "{name}"\nhost = "{host.name}"\ntags = ["bench", "{host.name}"]\n'
        )
        entries[host.name].append(
            f'[[runners]]\n  name = "{name}"\n  url = "{url}"\n  id = {created["id"]}\n'
            f'  token = "{created["token"]}"\n  executor = "shell"\n'
        )
    for host in hosts:
        text = "concurrent = 4\n\n" + "\n".join(entries[host.name])
        host.sh(
            "mkdir -p /etc/gitlab-runner && cat > /etc/gitlab-runner/config.toml <<'EOF'\n"
            f"{text}EOF\nchmod 600 /etc/gitlab-runner/config.toml"
        )
    return "\n".join(lines)


def run(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(RUNNERCTL), *args], capture_output=True, text=True, env=env, check=False
    )
    return time.perf_counter() - start, proc


def sandbox_requests(url: str, token: str, *, reset: bool = False) -> int:
    import requests

    verb = requests.delete if reset else requests.get
    answer = verb(f"{url}/-/sandbox/requests", headers={"PRIVATE-TOKEN": token}, timeout=30)
    answer.raise_for_status()
    return int(answer.json()["total"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--runners", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()

    import gitlab

    from provisioner.sandbox import start_background
    from provisioner.ssh import generate_key

    _ensure_base()
    docker("build", "-q", "--build-arg", f"BASE={BASE}", "-t", IMAGE, str(HERE))
    work = Path(tempfile.mkdtemp(prefix="rctl-fleetbench-"))
    key = work / "id_ed25519"
    public = generate_key(key)
    prefix = f"rctl-fleetbench-{os.getpid()}"
    handle = start_background(work / "sandbox", port=0)
    hosts: list[VmHost] = []
    try:
        start_hosts(prefix, opts.hosts, public, hosts)
        gl = gitlab.Gitlab(handle.url, private_token=handle.root_token)
        fleet_file = work / "FLEET.toml"
        fleet_file.write_text(converge(gl, handle.url, hosts, opts.runners))
        env = {**os.environ, "GITLAB_TOKEN": handle.root_token}
        ssh = ["--key-file", str(key), "--known-hosts", str(work / "known_hosts"), "--accept-new"]
        plan_args = ["fleet", "plan", str(fleet_file), "-o", "json", *ssh]
        run(plan_args, env)  # warm-up: host keys learnt, caches warm
        times, served = [], []
        document: dict[str, Any] = {}
        for _ in range(opts.repeat):
            sandbox_requests(handle.url, handle.root_token, reset=True)
            elapsed, proc = run(plan_args, env)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            served.append(sandbox_requests(handle.url, handle.root_token) - 1)  # minus this GET
            times.append(elapsed)
            document = json.loads(proc.stdout)
        plan_time = statistics.median(times)
        print(
            f"fleet plan: {opts.runners} runners on {opts.hosts} container hosts, "
            f"{opts.repeat} runs"
        )
        print(f"  actions planned: {len(document['actions'])} (converged fleet: goal 0)")
        kinds = {k: n for k, n in document["summary"].items() if n}
        if kinds:
            first = document["actions"][0]
            print(
                f"    by kind: {kinds}; first: {first['id']} {first['reason']} {first['changes']}"
            )
        print(
            f"  API requests per plan: {max(served)} served by the sandbox, "
            f"{document['api_requests']} sent by the client (goal <= 5)"
        )
        print(
            f"  SSH sessions per plan: {document['ssh_sessions']} for {opts.hosts} hosts "
            "(goal: 1 per host)"
        )
        print(
            f"  plan wall time: median {plan_time:.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f})"
        )
        elapsed, proc = run(["fleet", "apply", str(fleet_file), "--auto-approve", *ssh], env)
        if proc.returncode != 0:
            print(f"  no-change apply failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
            return 1
        print(
            f"  no-change apply: {elapsed:.2f} s; "
            f"ratio apply / plan = {elapsed / plan_time:.2f}x (goal < 2)"
        )
        return 0
    finally:
        for host in hosts:
            docker("rm", "-f", host.container, check=False)
        handle.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
