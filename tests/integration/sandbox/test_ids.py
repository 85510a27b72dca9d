"""GitLab never reuses an id: not after deleting the newest row, not across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.sandbox import start_background

pytestmark = pytest.mark.sandbox


def _api(url: str, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method, f"{url}/api/v4{path}", headers={"PRIVATE-TOKEN": token}, timeout=30, **kwargs
    )


def test_deleted_runner_project_pipeline_ids_are_not_reused(tmp_path: Path) -> None:
    # A sandbox of its own: the newest row must be the one deleted.
    with start_background(tmp_path / "gitlab", port=0) as handle:

        def api(method: str, path: str, **kwargs: Any) -> requests.Response:
            return _api(handle.url, handle.root_token, method, path, **kwargs)

        first = api("POST", "/user/runners", json={"runner_type": "instance_type"}).json()
        assert api("DELETE", f"/runners/{first['id']}").status_code == 204
        second = api("POST", "/user/runners", json={"runner_type": "instance_type"}).json()
        assert second["id"] > first["id"]
        # The old id names no runner: a stale config cannot reach the new one by id.
        assert api("GET", f"/runners/{first['id']}").status_code == 404

        project = api("POST", "/projects", json={"name": "ids"}).json()
        files = {
            "branch": "main",
            "commit_message": "ci",
            "actions": [
                {
                    "action": "create",
                    "file_path": ".gitlab-ci.yml",
                    "content": "workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE == 'api'\n"
                    "job:\n  script: [echo]\n",
                },
            ],
        }
        assert api("POST", f"/projects/{project['id']}/repository/commits", json=files).ok
        pipeline = api("POST", f"/projects/{project['id']}/pipeline", json={"ref": "main"}).json()
        assert api("DELETE", f"/projects/{project['id']}/pipelines/{pipeline['id']}").ok
        again = api("POST", f"/projects/{project['id']}/pipeline", json={"ref": "main"}).json()
        assert again["id"] > pipeline["id"]
        assert again["iid"] > pipeline["iid"]

        assert api("DELETE", f"/projects/{project['id']}").status_code == 202
        newer = api("POST", "/projects", json={"name": "ids-2"}).json()
        assert newer["id"] > project["id"]
        last_runner = second["id"]
        assert api("DELETE", f"/runners/{last_runner}").status_code == 204

    # The high-water mark survives a restart.
    with start_background(tmp_path / "gitlab", port=0) as handle:
        third = _api(
            handle.url,
            handle.root_token,
            "POST",
            "/user/runners",
            json={"runner_type": "instance_type"},
        ).json()
        assert third["id"] > last_runner
