"""The shared test helpers: polling with a deadline, and archives that ignore the clock."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile

import pytest

from tests.helpers import ZIP_EPOCH, tar_gz_bytes, wait_for_pipeline, wait_until, zip_bytes


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(answers), timeout=5, interval=0, message="never") == "ready"


def test_wait_until_raises_the_message_built_after_the_deadline() -> None:
    state = {"status": "created"}

    def poll() -> bool:
        state["status"] = "running"
        return False

    with pytest.raises(AssertionError, match=r"^still running$"):
        wait_until(poll, timeout=0, interval=0, message=lambda: f"still {state['status']}")


def test_wait_until_lets_the_predicate_end_the_wait() -> None:
    def died() -> bool:
        raise AssertionError("the process died")

    with pytest.raises(AssertionError, match="the process died"):
        wait_until(died, timeout=60, interval=0, message="timed out")


def test_archives_are_the_same_bytes_whatever_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"pkg/__init__.py": "", "pkg-1.0.dist-info/RECORD": b"x\n"}
    first_zip, first_tgz = zip_bytes(files), tar_gz_bytes({"a/b.txt": b"b"})
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)
    assert zip_bytes(files) == first_zip
    assert tar_gz_bytes({"a/b.txt": b"b"}) == first_tgz
    with zipfile.ZipFile(io.BytesIO(first_zip)) as zf:
        assert [(i.filename, i.date_time) for i in zf.infolist()] == [
            ("pkg/__init__.py", ZIP_EPOCH),
            ("pkg-1.0.dist-info/RECORD", ZIP_EPOCH),
        ]
        assert zf.read("pkg-1.0.dist-info/RECORD") == b"x\n"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first_tgz))) as tf:
        member = tf.getmember("a/b.txt")
        assert member.mtime == 0
        extracted = tf.extractfile(member)
        assert extracted is not None
        assert extracted.read() == b"b"


class _Pipeline:
    """A python-gitlab pipeline whose status moves one step per refresh."""

    def __init__(self, *statuses: str) -> None:
        self._next = iter(statuses)
        self.status = "created"
        self.refreshes = 0

    def refresh(self) -> None:
        self.refreshes += 1
        self.status = next(self._next, self.status)


def test_wait_for_pipeline_refreshes_until_it_finishes() -> None:
    pipeline = _Pipeline("pending", "failed")
    assert wait_for_pipeline(pipeline, timeout=30) == "failed"
    assert pipeline.refreshes == 2


def test_wait_for_pipeline_fails_with_its_status_and_the_context() -> None:
    pipeline = _Pipeline("running")
    with pytest.raises(AssertionError, match=r"^pipeline still running after 0 s: runner log$"):
        wait_for_pipeline(pipeline, timeout=0, context=lambda: "runner log")
