"""Time-to-green of the smoke pipeline: the baked job image against a plain image.

Both runs use the same sandbox GitLab, the same smoke project template and the stand-in
runner's docker executor with ``network_mode = "host"``:

- baked: ``runnerctl/python:3.11`` (cosign, wheelhouse and a pre-warmed uv cache inside; each
  job installs its few tools offline from the wheelhouse);
- plain: ``runnerctl/base:bookworm`` (Debian's python3, venv, pip, curl; nothing else). Each
  job makes a venv and pip-installs its tools from the package index through this machine's
  TLS-intercepting proxy, which works only because the host CA bundle is mounted into the job
  container. The plain image has no cosign and no registry can be reached, so the runner
  mounts the host's cosign binary read-only at /usr/local/bin/cosign.

Prints per-stage times and time-to-green of each, their ratio (goal: baked at least 2x
faster), and with ``--demo`` the wall time of a cold and a warm ``runnerctl demo`` (goal: warm
under 3 minutes; ``make demo`` adds the setup script's checks).

With ``--component``, it also compares the smoke pipeline built on the python-release
component (``include: local`` of ``templates/python-release.yml``, what the smoke template is
now) with the smoke pipeline as it was before the component (every job written inline, read
from git at ``INLINE_BASELINE``), both on the baked image, same runner, same key pair and
variables; it prints their time to green and the ratio component/inline (goal: no slower,
ratio <= 1.05 allowing for noise).

Usage: .venv/bin/python benchmarks/smoke_pipeline.py [--runs N] [--demo] [--skip-plain]
       [--component]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from provisioner.docker_api import DockerAPI
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.images.build import ensure_job_image
from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
from provisioner.registration.service import RegisterRequest, register
from provisioner.runner_config import ConfigDocument, ConfigStore
from provisioner.sandbox import start_background as start_sandbox
from provisioner.sandbox_runner import start_background as start_runner
from provisioner.smoke import SmokeRequest, SmokeResult, SmokeStatus, run_smoke
from provisioner.smoke.service import STAGES
from provisioner.smoke.signing import find_cosign

BAKED = "runnerctl/python:3.11"
INLINE_BASELINE = "6f00e5b"  # the last commit whose smoke template wrote every job inline
ROOT = Path(__file__).resolve().parents[1]
TERMINAL = frozenset({"success", "failed", "canceled", "skipped"})
PLAIN = "runnerctl/base:bookworm"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def _register(
    url: str, token: str, config: Path, *, tag: str, image: str, volumes: tuple[str, ...]
) -> None:
    request = RegisterRequest(
        name=f"bench-{tag}",
        scope=parse_scope("instance"),
        gitlab_url=url,
        executor=ExecutorConfig(
            Executor.DOCKER,
            docker=DockerOptions(
                image=image,
                volumes=volumes,
                pip_cache_volume=None,
                allowed_images=(f"{image.split(':', 1)[0]}:*",),
            ),
        ),
        tags=(tag,),
    )
    api = GitLabAPI.from_settings(ConnectionSettings(url=url, token=token))
    store = ConfigStore(config)
    register(request, gitlab=api, store=store)

    def tune(doc: ConfigDocument) -> None:
        doc.set_global("check_interval", 1)
        for table in doc.runner_tables():
            table["docker"]["network_mode"] = "host"

    store.update(tune)


def _smoke(url: str, token: str, *, tag: str, image: str, project: str) -> SmokeResult:
    api = GitLabAPI.from_settings(ConnectionSettings(url=url, token=token))
    result = run_smoke(
        SmokeRequest(tag=tag, project=project, image=image, timeout=1800),
        gitlab=api,
        gitlab_url=url,
    )
    if result.status is not SmokeStatus.PASSED:
        print(f"  {image}: {result.message}\n{result.trace_tail}", file=sys.stderr)
        raise SystemExit(1)
    return result


def _setup(
    url: str, token: str, root: Path, *, tag: str, image: str, volumes: tuple[str, ...]
) -> Path:
    config = root / f"{tag}.toml"
    _register(url, token, config, tag=tag, image=image, volumes=volumes)
    return config


def _measure(
    url: str, token: str, config: Path, root: Path, *, tag: str, image: str, runs: int
) -> list[SmokeResult]:
    handle = start_runner(config, work_dir=root / f"work-{tag}")
    try:
        return [
            _smoke(url, token, tag=tag, image=image, project=f"root/bench-{tag}")
            for _ in range(runs)
        ]
    finally:
        handle.stop(force=True, timeout=30)


def _stage_table(label: str, results: list[SmokeResult]) -> dict[str, float]:
    medians = {}
    for stage in STAGES:
        values = [
            s.seconds
            for r in results
            for s in r.stages
            if s.name == stage and s.seconds is not None
        ]
        medians[stage] = statistics.median(values) if values else float("nan")
    green = statistics.median(r.time_to_green or 0.0 for r in results)
    print(f"{label}: time to green {green:6.1f} s (median of {len(results)})")
    for stage, value in medians.items():
        print(f"    {stage:<19} {value:6.1f} s")
    return {"green": green, **medians}


def _inline_template() -> dict[str, str]:
    """The smoke template at INLINE_BASELINE, read from git."""
    prefix = "provisioner/smoke/template/"
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", INLINE_BASELINE, prefix],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        path[len(prefix) :]: subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{INLINE_BASELINE}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for path in listing
    }


def _pipeline_seconds(project: object, *, tag: str) -> float:
    """Create a pipeline as runnerctl smoke does and return its time to green."""
    start = time.perf_counter()
    pipeline = project.pipelines.create(  # type: ignore[attr-defined]
        {
            "ref": "main",
            "variables": [
                {"key": "SMOKE_RUNNER_TAG", "value": tag},
                {"key": "PYTHON_IMAGE", "value": BAKED},
                {"key": "SMOKE_SIGNING", "value": "key"},
            ],
        }
    )
    while pipeline.status not in TERMINAL:
        time.sleep(0.5)
        pipeline.refresh()
    if pipeline.status != "success":
        print(f"  pipeline {pipeline.id} ended {pipeline.status}", file=sys.stderr)
        raise SystemExit(1)
    return time.perf_counter() - start


def _compare_component(url: str, token: str, config: Path, root: Path, runs: int) -> None:
    import gitlab

    from provisioner.smoke.signing import generate_key_pair
    from provisioner.smoke.template import template_files

    gl = gitlab.Gitlab(url, private_token=token)
    pair = generate_key_pair()
    projects = {}
    for label, files in (("component", template_files()), ("inline", _inline_template())):
        project = gl.projects.create({"name": f"bench-{label}", "path": f"bench-{label}"})
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "smoke template",
                "actions": [
                    {"action": "create", "file_path": path, "content": text}
                    for path, text in files.items()
                ],
            }
        )
        for key, value, extra in (
            ("COSIGN_PRIVATE_KEY", pair.private_pem, {"variable_type": "file"}),
            ("COSIGN_PUBLIC_KEY", pair.public_pem, {"variable_type": "file"}),
            ("COSIGN_PASSWORD", pair.password, {"masked": True}),
        ):
            project.variables.create({"key": key, "value": value, **extra})
        projects[label] = project
    handle = start_runner(config, work_dir=root / "work-component")
    times: dict[str, list[float]] = {"component": [], "inline": []}
    try:
        for _ in range(runs):
            for label in ("inline", "component"):  # alternate, so drift hits both
                times[label].append(_pipeline_seconds(projects[label], tag="baked"))
    finally:
        handle.stop(force=True, timeout=30)
    component = statistics.median(times["component"])
    inline = statistics.median(times["inline"])
    print(f"smoke pipeline, jobs inline ({INLINE_BASELINE}): {inline:6.1f} s (median of {runs})")
    print(f"smoke pipeline on the python-release component:  {component:6.1f} s")
    ratio = component / inline
    verdict = "meets" if ratio <= 1.05 else "misses"
    print(f"ratio component/inline time to green: {ratio:.2f}x ({verdict} the no-slower goal)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _demo_times() -> tuple[float, float]:
    runnerctl = str(Path(sys.executable).with_name("runnerctl"))
    data = Path(tempfile.mkdtemp(prefix="runnerctl-bench-demo-"))
    port = str(_free_port())
    times = []
    try:
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(
                [runnerctl, "demo", "--data-dir", str(data), "--port", port],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "GITLAB_TOKEN": ""},
            )
            times.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="pipelines per image")
    parser.add_argument("--demo", action="store_true", help="also time runnerctl demo twice")
    parser.add_argument("--skip-plain", action="store_true", help="only the baked image")
    parser.add_argument(
        "--component",
        action="store_true",
        help="also compare the component-based smoke pipeline with the inline one",
    )
    args = parser.parse_args()

    docker = DockerAPI.from_env()
    ensure_job_image("3.11", docker=docker)
    if docker.inspect_image(PLAIN) is None:
        print(f"{PLAIN} is missing: run `runnerctl image base` first", file=sys.stderr)
        return 1
    cosign = str(Path(find_cosign()).resolve())
    volume = f"runnerctl-bench-smoke-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="runnerctl-bench-smoke-"))
    sandbox = start_sandbox(root / "gitlab", port=0)
    url, token = sandbox.url, sandbox.root_token
    try:
        baked_config = _setup(
            url, token, root, tag="baked", image=BAKED, volumes=(f"{volume}:/cache",)
        )
        plain_config = _setup(
            url,
            token,
            root,
            tag="plain",
            image=PLAIN,
            volumes=(f"{cosign}:/usr/local/bin/cosign:ro", f"{HOST_CA}:{HOST_CA}:ro"),
        )
        baked = _measure(url, token, baked_config, root, tag="baked", image=BAKED, runs=args.runs)
        baked_row = _stage_table(f"baked image {BAKED}", baked)
        if not args.skip_plain:
            plain = _measure(
                url, token, plain_config, root, tag="plain", image=PLAIN, runs=args.runs
            )
            plain_row = _stage_table(f"plain image {PLAIN} (tools from the index)", plain)
            ratio = plain_row["green"] / baked_row["green"]
            verdict = "meets" if ratio >= 2 else "misses"
            print(f"ratio plain/baked time to green: {ratio:.2f}x ({verdict} the 2x goal)")
        if args.component:
            _compare_component(url, token, baked_config, root, args.runs)
    finally:
        sandbox.stop()
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
    if args.demo:
        cold, warm = _demo_times()
        verdict = "meets" if warm < 180 else "misses"
        print(f"runnerctl demo: first run {cold:.1f} s, warm run {warm:.1f} s ({verdict} 3 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
