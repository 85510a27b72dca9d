"""``Query.runners`` on the sandbox's GraphQL endpoint: fields, filters, paging, admin only."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

QUERY = """
query($tags: [String!], $after: String, $first: Int, $type: CiRunnerType, $paused: Boolean,
      $status: CiRunnerStatus) {
  runners(tagList: $tags, first: $first, after: $after, type: $type, paused: $paused,
          status: $status) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id description runnerType tagList paused locked runUntagged accessLevel maximumTimeout
      maintenanceNote contactedAt tokenExpiresAt status
      groups { nodes { fullPath } }
      projects { nodes { fullPath } }
      managers { nodes { systemId contactedAt version status } }
    }
  }
  queryComplexity { score limit }
}
"""


def _post(sandbox: RunningSandbox, token: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        f"{sandbox.url}/api/graphql",
        json={"query": QUERY, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _create(sandbox: RunningSandbox, **attrs: Any) -> dict[str, Any]:
    created: dict[str, Any] = sandbox.gitlab().http_post("/user/runners", post_data=attrs)
    return created


def test_fields_filters_and_paging(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    tag = sandbox.unique("gqlrun")
    name = sandbox.unique("gqlrun-group")
    group = gl.groups.create({"name": name, "path": name})
    project = sandbox.new_project()
    instance = _create(
        sandbox,
        runner_type="instance_type",
        description="fleet-a",
        tag_list=[tag, "linux"],
        paused=True,
        locked=True,
        run_untagged=False,
        maximum_timeout=3600,
        access_level="ref_protected",
        maintenance_note="managed-by: runnerctl fleet prod\nrunner: fleet-a",
    )
    grouped = _create(
        sandbox, runner_type="group_type", group_id=group.id, description="g", tag_list=[tag]
    )
    projected = _create(sandbox, runner_type="project_type", project_id=project.id, tag_list=[tag])
    verified = requests.post(
        f"{sandbox.url}/api/v4/runners/verify",
        json={"token": instance["token"], "system_id": "s_0123456789ab"},
        timeout=30,
    )
    assert verified.status_code == 200

    body = _post(sandbox, sandbox.root_token, {"tags": [tag]})
    assert "errors" not in body, body
    page = body["data"]["runners"]
    # GitLab's default sort is CREATED_DESC: the newest runner first.
    ids = [n["id"] for n in page["nodes"]]
    assert ids == [f"gid://gitlab/Ci::Runner/{r['id']}" for r in (projected, grouped, instance)]
    assert page["pageInfo"]["hasNextPage"] is False
    node = page["nodes"][2]
    assert node["description"] == "fleet-a"
    assert node["runnerType"] == "INSTANCE_TYPE"
    assert node["tagList"] == [tag, "linux"]
    assert (node["paused"], node["locked"], node["runUntagged"]) == (True, True, False)
    assert node["accessLevel"] == "REF_PROTECTED"
    assert node["maximumTimeout"] == 3600
    assert node["maintenanceNote"] == "managed-by: runnerctl fleet prod\nrunner: fleet-a"
    assert node["contactedAt"].endswith("Z")
    assert node["tokenExpiresAt"] is None
    assert node["status"] == "ONLINE"
    assert (node["groups"], node["projects"]) == (None, None)
    [manager] = node["managers"]["nodes"]
    assert manager["systemId"] == "s_0123456789ab"
    assert manager["contactedAt"] == node["contactedAt"]
    assert manager["status"] == "ONLINE"
    assert page["nodes"][1]["groups"] == {"nodes": [{"fullPath": name}]}
    assert page["nodes"][1]["projects"] is None
    assert page["nodes"][0]["projects"] == {"nodes": [{"fullPath": project.path_with_namespace}]}
    assert page["nodes"][0]["status"] == "NEVER_CONTACTED"
    assert page["nodes"][0]["managers"] == {"nodes": []}
    assert body["data"]["queryComplexity"]["score"] <= body["data"]["queryComplexity"]["limit"]

    first = _post(sandbox, sandbox.root_token, {"tags": [tag], "first": 2})["data"]["runners"]
    assert [n["id"] for n in first["nodes"]] == ids[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    rest = _post(
        sandbox,
        sandbox.root_token,
        {"tags": [tag], "first": 2, "after": first["pageInfo"]["endCursor"]},
    )["data"]["runners"]
    assert [n["id"] for n in rest["nodes"]] == ids[2:]
    assert rest["pageInfo"]["hasNextPage"] is False

    def only(**variables: Any) -> list[str]:
        nodes = _post(sandbox, sandbox.root_token, {"tags": [tag], **variables})["data"]
        return [n["id"] for n in nodes["runners"]["nodes"]]

    assert only(type="GROUP_TYPE") == [ids[1]]
    assert only(paused=True) == [ids[2]]
    assert only(paused=False) == ids[:2]
    assert only(status="NEVER_CONTACTED") == ids[:2]
    assert only(status="ONLINE") == [ids[2]]


def test_non_admins_get_the_resource_error(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    name = sandbox.unique("gqlrun-user")
    user = gl.users.create(
        {"username": name, "name": name, "email": f"{name}@x.test", "password": "unused-password-1"}
    )
    token = user.personal_access_tokens.create({"name": "t", "scopes": ["api"]}).token
    body = _post(sandbox, token, {})
    assert body["data"]["runners"] is None
    [error] = body["errors"]
    assert error["path"] == ["runners"]
    assert error["message"] == (
        "The resource that you are attempting to access does not exist "
        "or you don't have permission to perform this action"
    )
    anonymous = requests.post(
        f"{sandbox.url}/api/graphql", json={"query": "{ runners { nodes { id } } }"}, timeout=30
    ).json()
    assert anonymous["data"]["runners"] is None
    assert anonymous["errors"][0]["path"] == ["runners"]


def test_enums_are_validated(sandbox: RunningSandbox) -> None:
    body = _post(sandbox, sandbox.root_token, {"type": "instance_type"})
    assert "data" not in body
    assert "CiRunnerType" in body["errors"][0]["message"]
