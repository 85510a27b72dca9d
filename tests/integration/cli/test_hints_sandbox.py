"""The URL a failed smoke run points at is one the sandbox serves; the web page is not."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from provisioner.smoke.service import pipeline_api_url
from tests.helpers import smoke_result

pytestmark = pytest.mark.sandbox


def test_the_pipeline_api_url_answers_where_the_web_url_cannot(sandbox: Any) -> None:
    project = sandbox.new_project(
        name="hint", files={".gitlab-ci.yml": "unit:\n  script: [echo hi]\n"}
    )
    pipeline = project.pipelines.create({"ref": "main"})
    result = smoke_result(
        project=project.path_with_namespace,
        project_url=project.web_url,
        pipeline_id=pipeline.id,
        pipeline_url=pipeline.web_url,
    )
    auth = {"Authorization": f"Bearer {sandbox.root_token}"}

    api = requests.get(pipeline_api_url(result), headers=auth, timeout=30)
    web = requests.get(result.pipeline_url, headers=auth, timeout=30)

    assert api.status_code == 200
    assert [job["name"] for job in api.json()] == ["unit"]
    assert web.status_code == 404  # the sandbox has no web UI: a hint must not lead there
