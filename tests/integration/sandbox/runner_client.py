"""A few lines of HTTP exactly as gitlab-runner sends them (headers and bodies from its source)."""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.helpers import zip_bytes

INFO = {
    "name": "gitlab-runner",
    "version": "18.3.0",
    "revision": "d79f3e7b",
    "platform": "linux",
    "architecture": "amd64",
    "executor": "shell",
    "shell": "bash",
    "features": {
        "variables": True,
        "artifacts": True,
        "cache": True,
        "refspecs": True,
        "masking": True,
        "raw_variables": True,
        "artifacts_exclude": True,
        "multi_build_steps": True,
        "trace_reset": True,
        "trace_checksum": True,
        "trace_size": True,
        "cancelable": True,
        "return_exit_code": True,
        "two_phase_job_commit": True,
        "upload_multiple_artifacts": True,
        "upload_raw_artifacts": True,
    },
    "config": {"gpus": ""},
}


def _headers(extra: dict[str, str]) -> dict[str, str]:
    return {
        "User-Agent": "gitlab-runner 18.3.0 (main; go1.24; linux/amd64)",
        "X-Request-Id": uuid.uuid4().hex,
        "Accept": "application/json",
        **extra,
    }


@dataclass
class RunnerClient:
    url: str
    token: str
    system_id: str = "s_0123456789ab"
    session: requests.Session = field(default_factory=requests.Session)
    last_update: str = ""

    def request_job(self) -> requests.Response:
        resp = self.session.post(
            f"{self.url}/api/v4/jobs/request",
            json={
                "info": INFO,
                "token": self.token,
                "system_id": self.system_id,
                "last_update": self.last_update,
            },
            headers=_headers({"RUNNER-TOKEN": self.token}),
            timeout=30,
        )
        self.last_update = resp.headers.get("X-GitLab-Last-Update", self.last_update)
        return resp

    def patch_trace(self, job: dict[str, Any], data: bytes, start: int) -> requests.Response:
        return self.session.patch(
            f"{self.url}/api/v4/jobs/{job['id']}/trace",
            params={"debug_trace": "false"},
            data=data,
            headers=_headers(
                {
                    "JOB-TOKEN": job["token"],
                    "Content-Type": "text/plain",
                    "Content-Range": f"{start}-{start + len(data) - 1}",
                }
            ),
            timeout=30,
        )

    def update(
        self, job: dict[str, Any], state: str, trace: bytes = b"", **extra: Any
    ) -> requests.Response:
        checksum = f"crc32:{zlib.crc32(trace):08x}"
        body = {
            "info": INFO,
            "token": job["token"],
            "state": state,
            "checksum": checksum,
            "output": {"checksum": checksum, "bytesize": len(trace)},
            **extra,
        }
        return self.session.put(
            f"{self.url}/api/v4/jobs/{job['id']}",
            json=body,
            headers=_headers({"JOB-TOKEN": job["token"]}),
            timeout=30,
        )

    def upload_artifacts(
        self, job: dict[str, Any], files: dict[str, bytes], artifact_type: str = "archive"
    ) -> requests.Response:
        return self.session.post(
            f"{self.url}/api/v4/jobs/{job['id']}/artifacts",
            params={
                "artifact_format": "zip",
                "artifact_type": artifact_type,
                "expire_in": "1 week",
            },
            files={"file": ("artifacts.zip", zip_bytes(files), "application/octet-stream")},
            headers=_headers({"JOB-TOKEN": job["token"]}),
            timeout=30,
        )

    def download_artifacts(self, dep: dict[str, Any]) -> requests.Response:
        return self.session.get(
            f"{self.url}/api/v4/jobs/{dep['id']}/artifacts",
            params={"direct_download": "true"},
            headers=_headers({"JOB-TOKEN": dep["token"]}),
            timeout=30,
        )

    def run_job(
        self, job: dict[str, Any], *, state: str = "success", log: bytes = b"ok\n", **extra: Any
    ) -> None:
        """Report one job the way the runner does: trace, then the final state."""
        assert self.patch_trace(job, log, 0).status_code == 202
        assert self.update(job, state, log, **extra).status_code == 200


def variables(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["key"]: v for v in job["variables"]}
