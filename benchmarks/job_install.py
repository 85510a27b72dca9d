"""How fast does a job install its tooling inside the runnerctl Python image?

Installs the smoke pipeline's tooling (build, twine, cryptography, pytest) into a fresh venv in
a fresh container, four ways (plus one extra), and prints medians and each one's ratio to the first:

1. pip from the index with an empty cache (the baseline; needs the network: the container runs
   on the default bridge with the host's CA bundle mounted, because this host reaches PyPI
   through a TLS-intercepting proxy);
2. pip from the index with a warm ``PIP_CACHE_DIR`` (a volume filled by one earlier install);
3. pip ``--no-index`` from the baked wheelhouse (network off);
4. uv from the baked wheelhouse, the way a job runs it (``UV_FIND_LINKS`` from the image's
   environment, network off), which hits the uv cache the image pre-warms;
5. (extra) uv from the wheelhouse with an empty uv cache (a bind-mounted /cache hides the
   baked one).

Venv creation is outside the timed part. It also prints the image's build times (cold: empty
runnerctl cache and no layer cache; no layer cache only; warm) and its size over the base.

Usage: python benchmarks/job_install.py [--runs 3] [--python 3.11] [--skip-build-times]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from provisioner.docker_api import DockerAPI, Mount
from provisioner.images import BuildSpec, build_image, ensure_job_image

PACKAGES = "build twine cryptography pytest"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
ONLINE_ENV = {
    # The host's CA (with the proxy's) replaces the image's store for the index runs only.
    "PIP_CERT": "/host-ca/ca.crt",
    "REQUESTS_CA_BUNDLE": "/host-ca/ca.crt",
    "SSL_CERT_FILE": "/host-ca/ca.crt",
    # Hide the baked wheelhouse so pip really goes to the index.
    "PIP_FIND_LINKS": "/nonexistent",
}

TIMED = r"""
set -e
V=$(mktemp -d)/venv
python -m venv "$V"
start=$(date +%s.%N)
{cmd} >/tmp/install.log 2>&1 || {{ tail -n 20 /tmp/install.log; exit 1; }}
end=$(date +%s.%N)
"$V/bin/python" -c 'import build, twine, cryptography, pytest'
echo "ELAPSED $(python -c "print($end - $start)")"
"""

SCENARIOS: list[tuple[str, str, bool, bool]] = [
    # name, command, online, warm pip cache
    ("pip, index, empty cache", f"$V/bin/pip install --no-cache-dir {PACKAGES}", True, False),
    ("pip, index, warm PIP_CACHE_DIR", f"$V/bin/pip install {PACKAGES}", True, True),
    (
        "pip --no-index, wheelhouse",
        f"$V/bin/pip install --no-index --find-links /opt/wheelhouse {PACKAGES}",
        False,
        False,
    ),
    (
        "uv, wheelhouse (baked uv cache)",
        f"uv pip install --python $V/bin/python --offline {PACKAGES}",
        False,
        False,
    ),
    (
        "uv, wheelhouse, empty uv cache",
        "UV_CACHE_DIR=$(mktemp -d) uv pip install --python $V/bin/python --offline "
        f"--no-index --find-links /opt/wheelhouse {PACKAGES}",
        False,
        False,
    ),
]


def timed_install(
    docker: DockerAPI, image: str, cmd: str, *, online: bool, cache_volume: str | None
) -> float:
    mounts = [Mount(HOST_CA, "/host-ca/ca.crt", read_only=True)] if online else []
    if cache_volume:
        mounts.append(Mount(cache_volume, "/cache/pip"))
    result = docker.run(
        image,
        ["sh", "-c", TIMED.format(cmd=cmd)],
        network_mode="bridge" if online else "none",
        environment=ONLINE_ENV if online else {},
        mounts=mounts,
        timeout=600,
    )
    match = re.search(r"ELAPSED ([0-9.]+)", result.output)
    if not result.ok or match is None:
        raise SystemExit(f"install failed ({cmd}):\n{result.output}")
    return float(match.group(1))


def build_times(docker: DockerAPI, python: str) -> None:
    tag = f"runnerctl-bench/python:{python}"
    try:
        with tempfile.TemporaryDirectory(prefix="runnerctl-bench-cache-") as empty_cache:
            started = time.monotonic()
            build_image(
                BuildSpec(python=python, tag=tag, nocache=True),
                docker=docker,
                cache=Path(empty_cache),
            )
            cold = time.monotonic() - started
        started = time.monotonic()
        build_image(BuildSpec(python=python, tag=tag, nocache=True), docker=docker)
        no_layers = time.monotonic() - started
        started = time.monotonic()
        warm = build_image(BuildSpec(python=python, tag=tag), docker=docker)
        warm_s = time.monotonic() - started
    finally:
        docker.remove_image(tag, force=True)
    print(f"\nimage build (Python {python}, base {warm.base} already present)")
    print(f"  cold: empty runnerctl cache (fetch cosign + wheels), no layer cache {cold:6.1f} s")
    print(
        f"  no layer cache (cosign + wheelhouse cached on the host)            {no_layers:6.1f} s"
    )
    print(f"  warm: layer cache                                                  {warm_s:6.1f} s")
    print(f"  ratio cold / warm: {cold / warm_s:.1f}x")
    print(
        f"  size {warm.size / 1e6:.1f} MB, {warm.size_over_base / 1e6:.1f} MB over the base "
        f"({warm.base_size / 1e6:.1f} MB); {warm.wheels} wheels"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--python", default="3.11")
    parser.add_argument("--skip-build-times", action="store_true")
    args = parser.parse_args()
    docker = DockerAPI.from_env()
    image = ensure_job_image(args.python, docker=docker).tag
    print(f"job install of {PACKAGES!r} in {image}: {args.runs} runs each, fresh container + venv")
    volume = docker.create_volume(f"runnerctl-bench-pip-{uuid.uuid4().hex[:8]}")
    medians: list[tuple[str, float, list[float]]] = []
    try:
        # Fill the pip cache once (not timed) so scenario 2 measures a warm cache.
        timed_install(docker, image, SCENARIOS[1][1], online=True, cache_volume=volume)
        for name, cmd, online, warm in SCENARIOS:
            runs = [
                timed_install(
                    docker, image, cmd, online=online, cache_volume=volume if warm else None
                )
                for _ in range(args.runs)
            ]
            medians.append((name, statistics.median(runs), runs))
    finally:
        docker.remove_volume(volume)
    baseline = medians[0][1]
    print(f"\n{'scenario':34} {'median':>8} {'vs first':>9} {'speed-up':>9}   runs")
    for name, median, runs in medians:
        shown = ", ".join(f"{r:.2f}" for r in runs)
        ratio, speedup = median / baseline, baseline / median
        print(f"{name:34} {median:7.2f}s {ratio:8.2f}x {speedup:8.1f}x   {shown}")
    best = min(m for _, m, _ in medians[2:])
    print(
        f"\nbaked path (fastest of 3-5) is {baseline / best:.1f}x faster than the cold index path"
    )
    if not args.skip_build_times:
        build_times(docker, args.python)


if __name__ == "__main__":
    main()
