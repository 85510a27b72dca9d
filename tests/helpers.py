"""Helpers shared by every test tier: polling with a deadline, and reproducible archives."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from provisioner.smoke import SmokeResult

T = TypeVar("T")

# The earliest time a zip entry can carry; any fixed value makes the bytes reproducible.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float,
    message: str | Callable[[], str],
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    The predicate may raise (an ``AssertionError`` ends the wait at once, e.g. when the
    process it waits for died). After ``timeout`` seconds this raises ``AssertionError`` with
    ``message``; a callable message is built only then, so it can show the latest state.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


def wait_for_pipeline(
    pipeline: Any, *, timeout: float, context: Callable[[], str] = lambda: ""
) -> str:
    """Refresh a python-gitlab ``pipeline`` each second until it has finished; its status.

    After ``timeout`` seconds the wait fails with the status and ``context()`` (a runner's
    log, say), built only then.
    """

    def finished() -> bool:
        pipeline.refresh()
        return pipeline.status in ("success", "failed", "canceled")

    wait_until(
        finished,
        timeout=timeout,
        interval=1,
        message=lambda: f"pipeline still {pipeline.status} after {timeout:.0f} s: {context()}",
    )
    return str(pipeline.status)


def zip_bytes(files: Mapping[str, bytes | str]) -> bytes:
    """A zip (wheel, artifacts archive) of ``files`` whose bytes do not depend on the clock.

    ``ZipFile.writestr(name, ...)`` stamps each entry with the current time (two-second
    resolution), so building "the same" archive twice gives two digests when the clock
    crosses a two-second boundary in between.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.external_attr = 0o600 << 16  # what writestr(name, ...) gives a file
            zf.writestr(info, data)
    return buf.getvalue()


def tar_gz_bytes(files: Mapping[str, bytes]) -> bytes:
    """A ``.tar.gz`` (sdist) of ``files`` with zero timestamps in both tar and gzip headers."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def smoke_result(**fields: Any) -> SmokeResult:
    """A smoke run's result for tests that need one without running a pipeline."""
    from provisioner.smoke import SmokeResult, SmokeStatus

    project = fields.pop("project", "root/runnerctl-smoke")
    base = fields.pop("base", "https://gitlab.example")
    pipeline_id = fields.pop("pipeline_id", 1)
    defaults: dict[str, Any] = {
        "status": SmokeStatus.PASSED,
        "project": project,
        "project_url": f"{base}/{project}",
        "pipeline_id": pipeline_id,
        "pipeline_url": f"{base}/{project}/-/pipelines/{pipeline_id}",
        "package_name": "runnerctl-smoke",
        "version": "0.1.0",
        "stages": (),
        "checks": (),
        "elapsed": 0.0,
        "time_to_green": None,
        "message": "",
    }
    return SmokeResult(**{**defaults, **fields})


def seed_pipeline(sandbox: Any, project_id: int, ref: str, status: str, age: int) -> int:
    """A pipeline row in a running sandbox, as GitLab would hold it (any status, any age)."""
    store = sandbox.handle.app.store
    created = datetime.now(UTC) - timedelta(minutes=age)
    iid = (
        store.scalar("SELECT MAX(iid) FROM pipelines WHERE project_id = ?", [project_id]) or 0
    ) + 1
    started = created + timedelta(seconds=5)
    finished = started + timedelta(seconds=75) if status in ("success", "failed") else None
    return store.insert(
        "pipelines",
        {
            "iid": iid,
            "project_id": project_id,
            "ref": ref,
            "sha": "a" * 40,
            "before_sha": "0" * 40,
            "status": status,
            "source": "push",
            "user_id": 1,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "updated_at": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "started_at": started.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "finished_at": finished.strftime("%Y-%m-%dT%H:%M:%S.000Z") if finished else None,
        },
    )
