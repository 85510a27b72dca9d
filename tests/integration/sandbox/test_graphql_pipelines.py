"""The sandbox's additions for ``runnerctl pipelines``: rootRef, archived projects, nested
paging, and the per-route request counter."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

CI = {".gitlab-ci.yml": "job:\n  script: [echo]\n"}

QUERY = """
query($group: ID!, $archived: Boolean, $after: String) {
  group(fullPath: $group) {
    projects(includeSubgroups: true, includeArchived: $archived) {
      nodes {
        fullPath archived repository { rootRef }
        pipelines(first: 1, after: $after) { pageInfo { hasNextPage endCursor } nodes { iid } }
      }
    }
  }
}
"""


def _post(sandbox: RunningSandbox, variables: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        f"{sandbox.url}/api/graphql",
        json={"query": QUERY, "variables": variables},
        headers={"Authorization": f"Bearer {sandbox.root_token}"},
        timeout=30,
    )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    return body["data"]


def test_root_ref_archived_projects_and_nested_paging(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    name = sandbox.unique("gqlmon")
    group = gl.groups.create({"name": name, "path": name})
    busy = sandbox.new_project(group=group, files=CI, name="busy")
    empty = sandbox.new_project(group=group, name="empty")
    old = sandbox.new_project(group=group, files=CI, name="old")
    first, second = (busy.pipelines.create({"ref": "main"}) for _ in range(2))
    archived = gl.http_post(f"/projects/{old.id}/archive")
    assert archived["archived"] is True

    nodes = _post(sandbox, {"group": name, "archived": False})["group"]["projects"]["nodes"]
    by_path = {n["fullPath"]: n for n in nodes}
    assert set(by_path) == {busy.path_with_namespace, empty.path_with_namespace}
    assert by_path[busy.path_with_namespace]["repository"] == {"rootRef": "main"}
    assert by_path[empty.path_with_namespace]["repository"] == {"rootRef": None}
    page = by_path[busy.path_with_namespace]["pipelines"]
    assert [n["iid"] for n in page["nodes"]] == [str(second.iid)]
    assert page["pageInfo"]["hasNextPage"] is True
    cursor = page["pageInfo"]["endCursor"]
    nodes = _post(sandbox, {"group": name, "archived": True, "after": cursor})["group"]["projects"][
        "nodes"
    ]
    by_path = {n["fullPath"]: n for n in nodes}
    assert by_path[old.path_with_namespace]["archived"] is True
    assert [n["iid"] for n in by_path[busy.path_with_namespace]["pipelines"]["nodes"]] == [
        str(first.iid)
    ]
    rest = gl.groups.get(group.id).projects.list(archived=True, get_all=True)
    assert [p.path_with_namespace for p in rest] == [old.path_with_namespace]
    gl.http_post(f"/projects/{old.id}/unarchive")
    assert len(gl.groups.get(group.id).projects.list(archived=False, get_all=True)) == 3


def test_requests_are_counted_per_route(sandbox: RunningSandbox) -> None:
    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    reset = requests.delete(f"{sandbox.url}/-/sandbox/requests", headers=headers, timeout=30)
    assert reset.json() == {"total": 0, "routes": {}}
    gl = sandbox.gitlab()  # GET /user
    gl.projects.list(per_page=1, get_all=False)
    counts = requests.get(f"{sandbox.url}/-/sandbox/requests", headers=headers, timeout=30).json()
    assert counts["routes"]["GET /api/v4/user"] == 1
    assert counts["routes"]["GET /api/v4/projects"] == 1
    assert counts["routes"]["GET /-/sandbox/requests"] == 1
    assert counts["total"] == 3  # the reset starts from zero, itself included
    anonymous = requests.get(f"{sandbox.url}/-/sandbox/requests", timeout=30)
    assert anonymous.status_code == 401
