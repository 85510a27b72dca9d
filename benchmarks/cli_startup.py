"""How fast `runnerctl --help` starts, against a bare `python -c pass` in the same run.

Prints the median wall time of each over N runs and their ratio. Target: `runnerctl --help`
under 0.3 s on these machines (heavy libraries are imported lazily inside commands).

Usage: .venv/bin/python benchmarks/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_SECONDS = 0.3


def _median_seconds(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    runnerctl = Path(sys.executable).with_name("runnerctl")
    if not runnerctl.exists():
        found = shutil.which("runnerctl")
        if found is None:
            print("runnerctl is not installed: run `make setup` first", file=sys.stderr)
            return 1
        runnerctl = Path(found)

    # Warm the OS page cache once so neither side pays for a cold disk.
    _median_seconds([sys.executable, "-c", "pass"], 2)
    _median_seconds([str(runnerctl), "--help"], 2)

    baseline = _median_seconds([sys.executable, "-c", "pass"], args.runs)
    help_time = _median_seconds([str(runnerctl), "--help"], args.runs)
    verdict = "OK" if help_time < TARGET_SECONDS else "OVER TARGET"
    print(f"python -c pass        median {baseline * 1000:7.1f} ms  (baseline)")
    print(f"runnerctl --help      median {help_time * 1000:7.1f} ms")
    print(f"ratio to baseline     {help_time / baseline:7.2f}x")
    print(f"target < {TARGET_SECONDS * 1000:.0f} ms     {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
