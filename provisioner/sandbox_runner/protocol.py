"""The runner job protocol, client side: what gitlab-runner sends to GitLab.

This is the runner's own protocol (``/api/v4/runners/verify``, ``/api/v4/jobs/...``), not
GitLab's REST API for people and tools, which only :mod:`provisioner.gitlab` speaks. It is
therefore kept here, inside the stand-in runner, and talks ``requests`` directly. Headers,
bodies and status handling follow gitlab-runner's ``network/gitlab.go`` and ``network/trace.go``
(see ``docs/sandbox-runner.md``): the token goes in the ``RUNNER-TOKEN``/``JOB-TOKEN`` header
*and* the body, ``last_update`` is echoed back, ``Content-Range`` has no ``bytes`` prefix.
"""

from __future__ import annotations

import logging
import platform
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import requests

from provisioner.errors import GitLabError

log = logging.getLogger(__name__)

# The protocol identity: GitLab reads these fields to decide what the runner supports. The
# stand-in answers as the gitlab-runner release whose protocol it implements; ``revision``
# says what it really is, so a person reading the runner list can tell.
PROTOCOL_VERSION = "18.3.0"
REVISION = "runnerctl"
USER_AGENT = f"gitlab-runner {PROTOCOL_VERSION} (runnerctl; go1.24; linux/amd64)"
ALWAYS_SUPPORTED_REASONS = frozenset(
    {"script_failure", "runner_system_failure", "job_execution_timeout"}
)
TIMEOUT = 30.0
# gitlab-runner's artifact uploader and downloader retry a throttled or failed transfer
# (429, 5xx, a dropped connection) with a growing back-off, honouring ``Retry-After``.
TRANSFER_ATTEMPTS = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 5.0


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def runner_info(executor: str, shell: str) -> dict[str, Any]:
    """The ``info`` object of every request (``common/network.go`` ``VersionInfo``)."""
    return {
        "name": "gitlab-runner",
        "version": PROTOCOL_VERSION,
        "revision": REVISION,
        "platform": "linux",
        "architecture": _arch(),
        "executor": executor,
        "shell": shell,
        "features": {
            "variables": True,
            "image": executor == "docker",
            "services": False,
            "artifacts": True,
            "cache": False,
            "fallback_cache_keys": False,
            "shared": False,
            "upload_multiple_artifacts": True,
            "upload_raw_artifacts": True,
            "session": False,
            "terminal": False,
            "refspecs": True,
            "masking": True,
            "proxy": False,
            "raw_variables": True,
            "artifacts_exclude": True,
            "multi_build_steps": True,
            "trace_reset": True,
            "trace_checksum": True,
            "trace_size": True,
            "vault_secrets": False,
            "cancelable": True,
            "return_exit_code": True,
            "service_variables": False,
            "service_multiple_aliases": False,
            "image_executor_opts": False,
            "service_executor_opts": False,
            "cancel_gracefully": False,
            "native_steps_integration": False,
            "two_phase_job_commit": True,
            "job_inputs": False,
        },
        "config": {"gpus": ""},
        "labels": {},
    }


class Verdict(StrEnum):
    """``Verifying runner...`` outcomes, worded as gitlab-runner logs them."""

    VALID = "is valid"
    NOT_VALID = "is not valid"
    FAILED = "failed"


@dataclass(frozen=True)
class PatchResult:
    """What ``PATCH /jobs/:id/trace`` answered."""

    status: int
    next_offset: int | None
    job_status: str
    interval: float | None

    @property
    def aborted(self) -> bool:
        """The job is no longer running on GitLab (canceled, failed, or the token is void)."""
        return self.status in (403, 404) or self.job_status in ("canceled", "failed", "canceling")


@dataclass(frozen=True)
class UpdateResult:
    """What ``PUT /jobs/:id`` answered."""

    status: int
    job_status: str

    @property
    def accepted(self) -> bool:
        """GitLab took the state (200), or the job is gone anyway (403/404)."""
        return self.status in (200, 403, 404)


def base_url(url: str) -> str:
    """gitlab-runner's ``fixCIURL``: strip the trailing ``/`` and a legacy ``/ci`` suffix."""
    url = url.rstrip("/")
    return url.removesuffix("/ci").rstrip("/")


def status_text(code: int) -> str:
    """``201 Created``, ``403 Forbidden`` ... as Go's ``http.StatusText`` renders them."""
    from http import HTTPStatus

    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


class JobClient:
    """One HTTP session to one GitLab, for one runner entry."""

    def __init__(
        self,
        url: str,
        *,
        executor: str,
        shell: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base = base_url(url)
        self._sleep = sleep
        self.info = runner_info(executor, shell)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def close(self) -> None:
        """Close the connection pool."""
        self.session.close()

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {"X-Request-Id": uuid.uuid4().hex, "Accept": "application/json", **extra}

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(
                method, f"{self.base}/api/v4/{path}", timeout=TIMEOUT, **kwargs
            )
        except requests.RequestException as exc:
            reason = type(exc).__name__
            detail = str(exc.args[0]) if exc.args else reason
            raise GitLabError(
                f"{method} {self.base}/api/v4/{path}: {detail}",
                hint="is GitLab reachable from this machine at the runner's url?",
            ) from None

    def _transfer(self, what: str, attempt: Callable[[], requests.Response]) -> requests.Response:
        """Run ``attempt`` until it is not throttled or failed; returns the last answer."""
        for number in range(1, TRANSFER_ATTEMPTS + 1):
            last = number == TRANSFER_ATTEMPTS
            try:
                resp = attempt()
            except GitLabError as exc:
                if last:
                    raise
                log.warning("%s failed (%s); retrying", what, exc.message)
                self._sleep(_backoff(number, None))
                continue
            if resp.status_code not in RETRY_STATUSES or last:
                return resp
            log.warning("%s: %s; retrying", what, status_text(resp.status_code))
            self._sleep(_backoff(number, resp.headers.get("Retry-After")))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- runner -----------------------------------------------------------------------------

    def verify(self, token: str, system_id: str) -> tuple[Verdict, str]:
        """``POST /runners/verify`` (a throttled or failed answer is retried); the verdict."""
        try:
            resp = self._transfer(
                "verifying the runner",
                lambda: self._send(
                    "POST",
                    "runners/verify",
                    json={"token": token, "system_id": system_id},
                    headers=self._headers({"RUNNER-TOKEN": token}),
                ),
            )
        except GitLabError as exc:
            return Verdict.FAILED, exc.message
        if resp.status_code == 200:
            return Verdict.VALID, ""
        if resp.status_code == 403:
            return Verdict.NOT_VALID, ""
        return Verdict.FAILED, f"status={status_text(resp.status_code)}"

    def request_job(
        self, token: str, system_id: str, last_update: str
    ) -> tuple[int, dict[str, Any] | None, str]:
        """``POST /jobs/request``: (status, job or None, the new ``last_update``)."""
        resp = self._send(
            "POST",
            "jobs/request",
            json={
                "info": self.info,
                "token": token,
                "system_id": system_id,
                "last_update": last_update,
            },
            headers=self._headers({"RUNNER-TOKEN": token, "Content-Type": "application/json"}),
        )
        last = resp.headers.get("X-GitLab-Last-Update", last_update)
        if resp.status_code == 201:
            if "application/json" not in resp.headers.get("Content-Type", ""):
                return -1, None, last
            return 201, resp.json(), last
        return resp.status_code, None, last

    # -- job --------------------------------------------------------------------------------

    def update_job(
        self,
        job_id: int,
        job_token: str,
        state: str,
        trace: bytes,
        *,
        failure_reason: str | None = None,
        exit_code: int | None = None,
    ) -> UpdateResult:
        """``PUT /jobs/:id`` with the trace checksum; ``exit_code`` 0 is never sent (omitempty)."""
        checksum = f"crc32:{zlib.crc32(trace):08x}"
        body: dict[str, Any] = {"info": self.info, "token": job_token, "state": state}
        if state != "running":
            body["checksum"] = checksum
        body["output"] = {"checksum": checksum, "bytesize": len(trace)}
        if failure_reason:
            body["failure_reason"] = failure_reason
        if exit_code:
            body["exit_code"] = exit_code
        resp = self._send(
            "PUT",
            f"jobs/{job_id}",
            json=body,
            headers=self._headers({"JOB-TOKEN": job_token, "Content-Type": "application/json"}),
        )
        return UpdateResult(resp.status_code, resp.headers.get("Job-Status", ""))

    def finish_job(
        self,
        job_id: int,
        job_token: str,
        state: str,
        trace: bytes,
        *,
        failure_reason: str | None = None,
        exit_code: int | None = None,
        attempts: int = 10,
    ) -> UpdateResult:
        """The final ``PUT``, repeated while GitLab answers 202 (two-phase commit) or 5xx."""
        result = UpdateResult(0, "")
        for attempt in range(attempts):
            try:
                result = self.update_job(
                    job_id,
                    job_token,
                    state,
                    trace,
                    failure_reason=failure_reason,
                    exit_code=exit_code,
                )
            except GitLabError as exc:
                log.warning("job %s: final update failed: %s", job_id, exc.message)
                result = UpdateResult(0, "")
            if result.accepted:
                return result
            time.sleep(min(0.5 * (attempt + 1), 3.0))
        return result

    def patch_trace(self, job_id: int, job_token: str, data: bytes, start: int) -> PatchResult:
        """``PATCH /jobs/:id/trace`` with ``Content-Range: start-end`` (inclusive end)."""
        resp = self._send(
            "PATCH",
            f"jobs/{job_id}/trace",
            params={"debug_trace": "false"},
            data=data,
            headers=self._headers(
                {
                    "JOB-TOKEN": job_token,
                    "Content-Type": "text/plain",
                    "Content-Range": f"{start}-{start + len(data) - 1}",
                }
            ),
        )
        offset: int | None = None
        rng = resp.headers.get("Range", "")
        if "-" in rng:
            tail = rng.rsplit("-", 1)[1].strip()
            offset = int(tail) if tail.isdigit() else None
        interval_raw = resp.headers.get("X-GitLab-Trace-Update-Interval", "")
        try:
            interval = float(interval_raw) if interval_raw else None
        except ValueError:
            interval = None
        return PatchResult(resp.status_code, offset, resp.headers.get("Job-Status", ""), interval)

    def upload_artifacts(
        self,
        job_id: int,
        job_token: str,
        archive: Path,
        *,
        filename: str,
        artifact_type: str,
        artifact_format: str,
        expire_in: str | None,
    ) -> int:
        """``POST /jobs/:id/artifacts`` (multipart ``file``); returns the HTTP status."""
        params = {"artifact_format": artifact_format, "artifact_type": artifact_type}
        if expire_in:
            params["expire_in"] = expire_in

        def attempt() -> requests.Response:
            with archive.open("rb") as handle:  # re-read from the start on every attempt
                return self._send(
                    "POST",
                    f"jobs/{job_id}/artifacts",
                    params=params,
                    files={"file": (filename, handle, "application/octet-stream")},
                    headers=self._headers({"JOB-TOKEN": job_token}),
                )

        return self._transfer(f"uploading artifacts of job {job_id}", attempt).status_code

    def download_artifacts(self, job_id: int, job_token: str, target: Path) -> int:
        """``GET /jobs/:id/artifacts`` into ``target``; returns the HTTP status."""

        def attempt() -> requests.Response:
            try:
                resp = self.session.get(
                    f"{self.base}/api/v4/jobs/{job_id}/artifacts",
                    params={"direct_download": "true"},
                    headers=self._headers({"JOB-TOKEN": job_token}),
                    timeout=TIMEOUT,
                    stream=True,
                )
                with resp:
                    if resp.status_code == 200:
                        with target.open("wb") as out:
                            for chunk in resp.iter_content(1 << 16):
                                out.write(chunk)
            except requests.RequestException as exc:
                raise GitLabError(
                    f"GET {self.base}/api/v4/jobs/{job_id}/artifacts: {type(exc).__name__}"
                ) from None
            return resp

        return self._transfer(f"downloading artifacts of job {job_id}", attempt).status_code


def _backoff(number: int, retry_after: str | None) -> float:
    """Seconds before attempt ``number + 1``: ``Retry-After`` when given, else doubling."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), MAX_BACKOFF)
    return min(0.5 * 2.0 ** (number - 1), MAX_BACKOFF)


def map_failure_reason(reason: str, supported: frozenset[str]) -> str:
    """gitlab-runner's ``failure_reason_mapper``: fall back when GitLab does not know a reason."""
    if reason in supported or reason in ALWAYS_SUPPORTED_REASONS:
        return reason
    if reason == "image_pull_failure":
        return "runner_system_failure"
    if reason == "runner_configuration_error":
        return "script_failure"
    return "unknown_failure"
