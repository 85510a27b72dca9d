"""How fast `runnerctl --help` starts, against python-gitlab's `gitlab --help` in the same run.

Both console scripts live in the same venv and pay for the same interpreter start-up; the
two are run alternately (runnerctl, gitlab, runnerctl, ...) so that machine load affects both
alike. Prints the median wall time of each over N runs and their ratio. Goal: ratio <= 0.75
(heavy libraries are imported lazily inside commands; python-gitlab imports requests and its
whole object model up front).

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

GOAL_RATIO = 0.75


def _script(name: str) -> Path | None:
    here = Path(sys.executable).with_name(name)
    if here.exists():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    runnerctl, gitlab = _script("runnerctl"), _script("gitlab")
    if runnerctl is None or gitlab is None:
        print(
            "runnerctl or python-gitlab's gitlab is not installed: run `make setup`",
            file=sys.stderr,
        )
        return 1
    ours, theirs = [str(runnerctl), "--help"], [str(gitlab), "--help"]

    # Warm the OS page cache once so neither side pays for a cold disk.
    for _ in range(2):
        _seconds(ours)
        _seconds(theirs)

    ours_samples: list[float] = []
    theirs_samples: list[float] = []
    for n in range(args.runs):
        # Alternate which one goes first, so neither always follows the other.
        pair = ((ours, ours_samples), (theirs, theirs_samples))
        for argv, samples in pair if n % 2 == 0 else reversed(pair):
            samples.append(_seconds(argv))

    ours_median = statistics.median(ours_samples)
    theirs_median = statistics.median(theirs_samples)
    ratio = ours_median / theirs_median
    verdict = "OK" if ratio <= GOAL_RATIO else "OVER GOAL"
    print(f"gitlab --help         median {theirs_median * 1000:7.1f} ms  (baseline, python-gitlab)")
    print(f"runnerctl --help      median {ours_median * 1000:7.1f} ms")
    print(f"ratio to baseline     {ratio:7.2f}x  ({args.runs} alternating runs each)")
    print(f"goal <= {GOAL_RATIO:.2f}x         {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
