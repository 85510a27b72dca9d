"""``POST /api/graphql`` on the running sandbox: the monitor's query, unchanged, over real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox


def _post(
    sandbox: RunningSandbox, query: str, variables: dict[str, Any], token: str | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{sandbox.url}/api/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=30,
    )


def test_group_latest_pipelines_query_runs_unchanged(
    sandbox: RunningSandbox, reference_dir: Path
) -> None:
    query = (reference_dir / "graphql" / "group_latest_pipelines.graphql").read_text()
    gl = sandbox.gitlab()
    name = sandbox.unique("mon")
    group = gl.groups.create({"name": name, "path": name})
    sub = gl.groups.create({"name": "sub", "path": "sub", "parent_id": group.id})
    busy = sandbox.new_project(group=sub, files={".gitlab-ci.yml": "job:\n  script: [echo]\n"})
    idle = sandbox.new_project(group=group)
    first = busy.pipelines.create({"ref": "main"})
    second = busy.pipelines.create({"ref": "main"})
    assert gl.user is not None
    runner = gl.user.runners.create({"runner_type": "project_type", "project_id": busy.id})
    client = RunnerClient(sandbox.url, runner.token)
    client.run_job(client.request_job().json(), state="failed", failure_reason="script_failure")
    del first

    resp = _post(sandbox, query, {"group": name, "first": 1}, sandbox.root_token)
    assert resp.status_code == 200
    body = resp.json()
    assert "errors" not in body, body
    data = body["data"]
    assert data["queryComplexity"]["score"] <= data["queryComplexity"]["limit"]
    projects = data["group"]["projects"]
    assert projects["count"] == 2
    assert projects["pageInfo"]["hasNextPage"] is True
    (node,) = projects["nodes"]
    assert node["fullPath"] == busy.path_with_namespace
    (latest,) = node["latest"]["nodes"]
    assert latest["iid"] == str(second.iid)
    rest = _post(
        sandbox,
        query,
        {"group": name, "first": 1, "after": projects["pageInfo"]["endCursor"]},
        sandbox.root_token,
    ).json()["data"]["group"]["projects"]
    assert [n["fullPath"] for n in rest["nodes"]] == [idle.path_with_namespace]
    assert rest["nodes"][0]["latest"]["nodes"] == []
    assert rest["pageInfo"]["hasNextPage"] is False
    pipelines = {p.id: p.status for p in busy.pipelines.list(get_all=True)}
    assert latest["status"] == pipelines[second.id].upper()


def test_invisible_group_is_null_and_ids_are_global(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    query = "query($p: ID!) { currentUser { username } project(fullPath: $p) { id fullPath } }"
    anonymous = _post(sandbox, query, {"p": project.path_with_namespace}).json()
    assert anonymous["data"] == {"currentUser": None, "project": None}
    root = _post(sandbox, query, {"p": project.path_with_namespace}, sandbox.root_token).json()
    assert root["data"]["currentUser"] == {"username": "root"}
    assert root["data"]["project"]["id"] == f"gid://gitlab/Project/{project.id}"
    missing = _post(sandbox, '{ group(fullPath: "no/such") { id } }', {}, sandbox.root_token).json()
    assert missing == {"data": {"group": None}}
    bad = _post(sandbox, "{ currentUser { username } }", {}, "glpat-invalid")
    assert bad.status_code == 401
