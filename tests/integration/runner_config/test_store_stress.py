"""ConfigStore under load: fifty threads, then fifty processes, write at once and lose nothing.

Slow (they fork and spawn fifty writers each), so they run in the integration tier; the unit
tier keeps the single-writer and crash-safety tests of ``tests/unit/runner_config``.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provisioner.runner_config import ConfigStore
from tests.unit.runner_config.test_store import adder, names, temps

pytestmark = pytest.mark.slow


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "gitlab-runner" / "config.toml"


def _reader(
    path: Path, stop: threading.Event, seen: list[int], errors: list[BaseException]
) -> None:
    while not stop.is_set():
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
            seen.append(1)
            time.sleep(0.002)  # leave the GIL to the writers
        except BaseException as exc:
            errors.append(exc)


def test_fifty_concurrent_threads_lose_no_runner(cfg: Path) -> None:
    ConfigStore(cfg).update(lambda _doc: None, create=True)
    stop, seen, errors = threading.Event(), [], []  # type: ignore[var-annotated]
    reader = threading.Thread(target=_reader, args=(cfg, stop, seen, errors))
    reader.start()
    try:
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(lambda i: ConfigStore(cfg).update(adder(i)), range(50)))
    finally:
        stop.set()
        reader.join()
    assert all(r.changed for r in results)
    assert sorted(names(cfg)) == sorted(f"runner-{i}" for i in range(50))
    assert errors == []
    assert seen, "the reader never read the file"
    assert len(ConfigStore(cfg).backups()) == 5
    assert temps(cfg.parent) == []


def _process_writer(path: str, i: int) -> None:
    ConfigStore(Path(path)).update(adder(i))


def test_fifty_concurrent_processes_lose_no_runner(cfg: Path) -> None:
    ConfigStore(cfg).update(lambda _doc: None, create=True)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_process_writer, args=(str(cfg), i)) for i in range(50)]
    for proc in procs:
        proc.start()
    stop, seen, errors = threading.Event(), [], []  # type: ignore[var-annotated]
    reader = threading.Thread(target=_reader, args=(cfg, stop, seen, errors))
    reader.start()
    try:
        for proc in procs:
            proc.join(60)
    finally:
        stop.set()
        reader.join()
    assert [p.exitcode for p in procs] == [0] * 50
    assert sorted(names(cfg)) == sorted(f"runner-{i}" for i in range(50))
    assert errors == []
    assert seen
