"""GraphQL over the shared transport: errors named by operation, paging, complexity."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from provisioner.errors import GitLabError
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.graphql import QueryComplexity, operation_of
from provisioner.gitlab.models import ConnectionSettings
from tests.unit.registration.fakes import BASE, PAT

PAGED = """
query GroupProjects($group: ID!, $after: String) {
  queryComplexity { score limit }
  group(fullPath: $group) {
    projects(first: 2, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { fullPath }
    }
  }
}
"""


class ScriptedGraphQL(BaseAdapter):
    """Answers ``POST /api/graphql`` with the next scripted (status, body)."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        super().__init__()
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url == f"{BASE}/api/graphql"
        assert request.headers.get("PRIVATE-TOKEN") == PAT
        body = request.body if isinstance(request.body, str) else (request.body or b"").decode()
        self.requests.append(json.loads(body))
        status, payload = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response.request = request
        response.headers["Content-Type"] = "application/json"
        response._content = json.dumps(payload).encode()
        return response

    def close(self) -> None:
        pass


def _api(answers: list[tuple[int, Any]]) -> tuple[GitLabAPI, ScriptedGraphQL]:
    fake = ScriptedGraphQL(answers)
    session = requests.Session()
    session.mount(BASE, fake)
    api = GitLabAPI(ConnectionSettings(url=BASE, token=PAT), session=session, sleep=lambda _s: None)
    return api, fake


def _page(paths: list[str], *, more: bool, cursor: str | None) -> dict[str, Any]:
    return {
        "data": {
            "queryComplexity": {"score": 27, "limit": 250},
            "group": {
                "projects": {
                    "pageInfo": {"hasNextPage": more, "endCursor": cursor},
                    "nodes": [{"fullPath": p} for p in paths],
                }
            },
        }
    }


def test_operation_name_and_type() -> None:
    assert operation_of(PAGED) == ("query", "GroupProjects")
    assert operation_of("# c\nmutation Reset { x }") == ("mutation", "Reset")
    assert operation_of("{ currentUser { username } }") == ("query", "anonymous")


def test_pager_follows_end_cursor_and_returns_complexity() -> None:
    api, fake = _api(
        [
            (200, _page(["g/a", "g/b"], more=True, cursor="c1")),
            (200, _page(["g/c"], more=False, cursor="c2")),
        ]
    )
    pages = list(api.graphql.pages(PAGED, {"group": "g"}, ("group", "projects")))
    assert [p.complexity for p in pages] == [QueryComplexity(27, 250)] * 2
    assert [r["variables"]["after"] for r in fake.requests] == [None, "c1"]
    assert all(r["variables"]["group"] == "g" for r in fake.requests)


def test_nodes_of_every_page() -> None:
    api, _fake = _api(
        [
            (200, _page(["g/a", "g/b"], more=True, cursor="c1")),
            (200, _page(["g/c"], more=False, cursor=None)),
        ]
    )
    nodes = api.graphql.nodes(PAGED, {"group": "g"}, ("group", "projects"))
    assert [n["fullPath"] for n in nodes] == ["g/a", "g/b", "g/c"]
    assert api.request_count == 2


def test_a_null_group_ends_the_pages() -> None:
    api, _fake = _api([(200, {"data": {"group": None}})])
    assert list(api.graphql.nodes(PAGED, {"group": "nope"}, ("group", "projects"))) == []


def test_graphql_errors_name_the_operation() -> None:
    message = "Query has complexity of 300, which exceeds max complexity of 250"
    api, _fake = _api([(200, {"errors": [{"message": message}]})])
    with pytest.raises(GitLabError) as info:
        api.graphql.query(PAGED, {"group": "g"})
    assert info.value.message == f"GitLab refused GraphQL query GroupProjects: {message}"
    assert "fewer nodes" in (info.value.hint or "")
    assert info.value.exit_code == 4


def test_partial_data_with_errors_is_an_error_too() -> None:
    api, _fake = _api(
        [(200, {"data": {"group": None}, "errors": [{"message": "Please provide a valid cursor"}]})]
    )
    with pytest.raises(GitLabError, match="GroupProjects: Please provide a valid cursor"):
        api.graphql.query(PAGED, {"group": "g", "after": "junk"})


def test_queries_are_retried_like_reads_and_mutations_are_not() -> None:
    api, fake = _api([(502, {"message": "bad gateway"}), (200, {"data": {"x": 1}})])
    assert api.graphql.query("query Q { x }").data == {"x": 1}
    assert len(fake.requests) == 2
    api, fake = _api([(502, {"message": "bad gateway"})])
    with pytest.raises(GitLabError, match="mutation M"):
        api.graphql.query("mutation M { x }")
    assert len(fake.requests) == 1


def test_a_connection_without_page_info_is_a_clear_error() -> None:
    api, _fake = _api([(200, {"data": {"group": {"projects": {"nodes": []}}}})])
    with pytest.raises(GitLabError, match="selects no pageInfo"):
        list(api.graphql.pages("query P($after: String) { x }", None, ("group", "projects")))
