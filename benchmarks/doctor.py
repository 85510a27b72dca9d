"""How fast doctor classifies job logs, against one ``grep -E -f`` of all its patterns.

Inputs are built from real logs in tests/unit/doctor/data (successful jobs of the stand-in
runner on both executors, and failed ones with their noise), repeated deterministically:

* one 4 MiB log: successful-job lines, a clone failure near the top and an OOM kill at the end;
* 1,000 logs of 20 KiB, each with one failure window from the fixtures somewhere inside.

doctor finds every required literal of the catalogue in one pass (an Aho-Corasick DFA,
provisioner/doctor/literal_search.py), cleans (ANSI, ``\\r``, section markers) and runs a
signature's regex only on the lines holding one of its literals, then ranks. The baseline is
GNU grep given every pattern at once (``grep -E -f``, which builds one automaton) over the same
files; doctor's time includes Python reading the file.
A naive classifier (every regex on every line) is timed on the 4 MiB log for reference.
Goals (issue 13): a 4 MiB log in under 1 s, and within 5x of grep.

Usage: .venv/bin/python benchmarks/doctor.py [--runs N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner.doctor.catalogue import load_catalogue  # noqa: E402
from provisioner.doctor.matcher import classify, clean_log_lines  # noqa: E402

DATA = ROOT / "tests" / "unit" / "doctor" / "data"
BIG = 4 << 20
SMALL = 20 << 10
COUNT = 1000
GOAL_SECONDS = 1.0
GOAL_RATIO = 5.0


def _lines(folder: str) -> list[list[str]]:
    found = []
    for path in sorted((DATA / folder).glob("*.log")):
        text = path.read_bytes().decode("utf-8")
        found.append(
            [ln.removeprefix("#=MATCH=#") for ln in text.split("\n") if "#=" not in ln[:3]]
        )
    return found


def _fill(rng: random.Random, pool: list[str], size: int) -> list[str]:
    out, total = [], 0
    while total < size:
        line = rng.choice(pool)
        out.append(line)
        total += len(line) + 1
    return out


def build_inputs(folder: Path) -> tuple[Path, list[Path]]:
    rng = random.Random(13)
    success = [ln for log in _lines("success") for ln in log]
    failures = _lines("fixtures")
    big = folder / "big.log"
    body = _fill(rng, success, BIG)
    body[len(body) // 100 : len(body) // 100] = failures[0]
    body.append("ERROR: Job failed: exit code 137")
    big.write_bytes("\n".join(body).encode())
    small = []
    for index in range(COUNT):
        lines = _fill(rng, success, SMALL - 2048)
        at = rng.randrange(len(lines))
        lines[at:at] = failures[index % len(failures)]
        path = folder / f"small-{index:04d}.log"
        path.write_bytes("\n".join(lines).encode())
        small.append(path)
    return big, small


def _time(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _ours(paths: list[Path]) -> None:
    for path in paths:
        classify(path.read_bytes().decode("utf-8", "replace"))


def _grep(patterns: Path, paths: list[Path]) -> None:
    subprocess.run(
        ["grep", "-E", "-c", "-f", str(patterns), "--", *map(str, paths)],
        stdout=subprocess.DEVNULL,
        check=False,
    )


def _naive(path: Path) -> None:
    lines = clean_log_lines(path.read_bytes().decode("utf-8", "replace"))
    for signature in load_catalogue().signatures:
        for line in lines:
            if signature.pattern.search(line):
                break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doctor-bench-") as tmp:
        folder = Path(tmp)
        big, small = build_inputs(folder)
        patterns = folder / "patterns.txt"
        patterns.write_text("\n".join(s.pattern.pattern for s in load_catalogue().signatures))
        load_catalogue()
        found = classify(big.read_text())
        print(f"catalogue: {len(load_catalogue().signatures)} signatures")
        print(f"4 MiB log ({big.stat().st_size / (1 << 20):.1f} MiB, best: {found[0].id}):")
        ours = _time(lambda: _ours([big]), args.runs)
        grep = _time(lambda: _grep(patterns, [big]), args.runs)
        naive = _time(lambda: _naive(big), 1)
        print(f"  doctor       {ours * 1000:8.1f} ms   (goal < {GOAL_SECONDS * 1000:.0f} ms)")
        print(f"  grep -E -f   {grep * 1000:8.1f} ms")
        print(f"  naive regex  {naive * 1000:8.1f} ms   (every pattern on every line)")
        print(f"  ratio doctor/grep: {ours / grep:.2f}   (goal <= {GOAL_RATIO:.0f})")
        print(f"{COUNT} logs of 20 KiB:")
        ours_many = _time(lambda: _ours(small), max(1, args.runs // 2))
        grep_many = _time(lambda: _grep(patterns, small), max(1, args.runs // 2))
        print(
            f"  doctor       {ours_many * 1000:8.1f} ms total, {ours_many / COUNT * 1e6:.0f} us/log"
        )
        print(
            f"  grep -E -f   {grep_many * 1000:8.1f} ms total, {grep_many / COUNT * 1e6:.0f} us/log"
        )
        print(f"  ratio doctor/grep: {ours_many / grep_many:.2f}   (goal <= {GOAL_RATIO:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
