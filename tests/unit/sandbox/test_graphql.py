"""The sandbox's GraphQL subset, driven through an in-memory data source (the boundary)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.sandbox.graphql_api import (
    GqlGroup,
    GqlPipeline,
    GqlProject,
    GqlUser,
    execute_graphql,
)

BASE = "http://gl.local"
T0 = datetime(2026, 8, 11, 11, 28, 34, tzinfo=UTC)


@dataclass
class FakeSource:
    user: GqlUser | None = field(default_factory=lambda: GqlUser(1, "root", "Administrator"))
    groups: dict[str, GqlGroup] = field(default_factory=dict)
    projects: dict[int, tuple[int, GqlProject]] = field(default_factory=dict)  # id -> (group, p)
    runs: dict[int, list[GqlPipeline]] = field(default_factory=dict)
    subgroups: dict[int, list[int]] = field(default_factory=dict)
    pipeline_calls: list[tuple[int, str | None, int]] = field(default_factory=list)

    def current_user(self) -> GqlUser | None:
        return self.user

    def group(self, full_path: str) -> GqlGroup | None:
        return self.groups.get(full_path)

    def group_projects(self, group_id: int, include_subgroups: bool) -> Sequence[GqlProject]:
        wanted = {group_id, *(self.subgroups.get(group_id, []) if include_subgroups else [])}
        return [p for _, (g, p) in sorted(self.projects.items()) if g in wanted]

    def project(self, full_path: str) -> GqlProject | None:
        return next((p for _, p in self.projects.values() if p.full_path == full_path), None)

    def pipelines(self, project_id: int, ref: str | None, limit: int) -> Sequence[GqlPipeline]:
        self.pipeline_calls.append((project_id, ref, limit))
        runs = sorted(self.runs.get(project_id, []), key=lambda p: p.id, reverse=True)
        return [p for p in runs if ref is None or p.ref == ref][:limit]


def pipeline(pid: int, iid: int, status: str, ref: str = "main", **extra: Any) -> GqlPipeline:
    created = T0 + timedelta(minutes=pid)
    finished = created + timedelta(seconds=235) if status in {"success", "failed"} else None
    return GqlPipeline(
        id=pid,
        iid=iid,
        status=status,
        ref=ref,
        sha=f"{pid:040x}",
        created_at=created,
        updated_at=finished or created,
        finished_at=finished,
        duration=235 if finished else None,
        path=f"/grp/demo/-/pipelines/{pid}",
        **extra,
    )


@pytest.fixture
def source() -> FakeSource:
    src = FakeSource()
    src.groups["grp"] = GqlGroup(1, "grp", "grp", f"{BASE}/groups/grp")
    src.groups["grp/sub"] = GqlGroup(2, "grp/sub", "sub", f"{BASE}/groups/grp/sub")
    src.subgroups[1] = [2]
    src.projects[42] = (2, GqlProject(42, "grp/sub/demo", "demo", f"{BASE}/grp/sub/demo", T0))
    src.projects[43] = (1, GqlProject(43, "grp/empty", "empty", f"{BASE}/grp/empty"))
    src.runs[42] = [
        pipeline(46, 11, "failed", ref="topic"),
        pipeline(
            47,
            12,
            "success",
            source="push",
            started_at=T0 + timedelta(seconds=6),
            user=GqlUser(1, "root", "Administrator"),
        ),
    ]
    return src


def run(source: FakeSource, query: str, variables: dict[str, Any] | None = None) -> Any:
    result = execute_graphql(source, query, variables, None)
    json.dumps(result)  # the body must be JSON-serialisable as is
    return result


def test_reference_query_runs_unchanged(source: FakeSource, reference_dir: Path) -> None:
    query = (reference_dir / "graphql" / "group_latest_pipelines.graphql").read_text()
    result = run(source, query, {"group": "grp"})
    assert "errors" not in result
    data = result["data"]
    assert data["queryComplexity"]["limit"] == 250
    # queryComplexity 3; group 1 + fullPath 1 + projects(1 + 10 + children 26 + 26*50%=13);
    # children: count 1, pageInfo 3, nodes 1+3+pipelines(1 + nodes 17 + 17*1%=0)
    assert data["queryComplexity"]["score"] == 3 + 1 + 1 + (1 + 10 + 26 + 13)
    assert data["group"] == {
        "fullPath": "grp",
        "projects": {
            "count": 2,
            "pageInfo": {"hasNextPage": False, "endCursor": _cursor(43)},
            "nodes": [
                {
                    "fullPath": "grp/sub/demo",
                    "webUrl": "http://gl.local/grp/sub/demo",
                    "lastActivityAt": "2026-08-11T11:28:34Z",
                    "latest": {
                        "nodes": [
                            {
                                "iid": "12",
                                "status": "SUCCESS",
                                "ref": "main",
                                "sha": f"{47:040x}",
                                "source": "push",
                                "createdAt": "2026-08-11T12:15:34Z",
                                "updatedAt": "2026-08-11T12:19:29Z",
                                "startedAt": "2026-08-11T11:28:40Z",
                                "finishedAt": "2026-08-11T12:19:29Z",
                                "duration": 235,
                                "path": "/grp/demo/-/pipelines/47",
                                "detailedStatus": {"text": "Passed", "group": "success"},
                                "user": {"username": "root"},
                            }
                        ]
                    },
                },
                {
                    "fullPath": "grp/empty",
                    "webUrl": "http://gl.local/grp/empty",
                    "lastActivityAt": None,
                    "latest": {"nodes": []},
                },
            ],
        },
    }


def _cursor(ident: int) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps({"id": str(ident)}).replace(" ", "").encode())
        .decode()
        .rstrip("=")
    )


def test_ids_statuses_and_project_lookup(source: FakeSource) -> None:
    result = run(
        source,
        """
        query($path: ID!) {
          currentUser { id username name }
          project(fullPath: $path) {
            id fullPath name webUrl
            pipelines(first: 5) {
              count
              nodes { id iid status ref finishedAt duration detailedStatus { icon label } }
            }
          }
        }
        """,
        {"path": "grp/sub/demo"},
    )
    assert result == {
        "data": {
            "currentUser": {
                "id": "gid://gitlab/User/1",
                "username": "root",
                "name": "Administrator",
            },
            "project": {
                "id": "gid://gitlab/Project/42",
                "fullPath": "grp/sub/demo",
                "name": "demo",
                "webUrl": "http://gl.local/grp/sub/demo",
                "pipelines": {
                    "count": 2,
                    "nodes": [
                        {
                            "id": "gid://gitlab/Ci::Pipeline/47",
                            "iid": "12",
                            "status": "SUCCESS",
                            "ref": "main",
                            "finishedAt": "2026-08-11T12:19:29Z",
                            "duration": 235,
                            "detailedStatus": {"icon": "status_success", "label": "passed"},
                        },
                        {
                            "id": "gid://gitlab/Ci::Pipeline/46",
                            "iid": "11",
                            "status": "FAILED",
                            "ref": "topic",
                            "finishedAt": "2026-08-11T12:18:29Z",
                            "duration": 235,
                            "detailedStatus": {"icon": "status_failed", "label": "failed"},
                        },
                    ],
                },
            },
        }
    }


def test_pipeline_filters(source: FakeSource) -> None:
    query = """
    query($status: PipelineStatusEnum, $ref: String) {
      project(fullPath: "grp/sub/demo") { pipelines(status: $status, ref: $ref) { nodes { iid } } }
    }
    """
    by_status = run(source, query, {"status": "FAILED"})
    assert by_status["data"]["project"]["pipelines"]["nodes"] == [{"iid": "11"}]
    by_ref = run(source, query, {"ref": "main"})
    assert by_ref["data"]["project"]["pipelines"]["nodes"] == [{"iid": "12"}]
    assert (42, "main", 101) in source.pipeline_calls  # first page + 1 probe, not everything


def test_missing_group_and_project_are_null(source: FakeSource) -> None:
    result = run(
        source,
        '{ group(fullPath: "nope") { id } project(fullPath: "nope/x") { id } }',
    )
    assert result == {"data": {"group": None, "project": None}}


def test_anonymous_current_user_is_null_with_anonymous_limits(source: FakeSource) -> None:
    source.user = None
    result = run(source, "{ currentUser { id } queryComplexity { limit score } }")
    assert result == {"data": {"currentUser": None, "queryComplexity": {"limit": 200, "score": 5}}}


def many_projects(count: int) -> FakeSource:
    src = FakeSource()
    src.groups["big"] = GqlGroup(7, "big", "big", f"{BASE}/groups/big")
    for ident in range(1, count + 1):
        src.projects[ident] = (
            7,
            GqlProject(ident, f"big/p{ident}", f"p{ident}", f"{BASE}/big/p{ident}"),
        )
    return src


PAGE = """
query($after: String, $first: Int) {
  group(fullPath: "big") {
    projects(first: $first, after: $after) {
      count
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      nodes { id }
    }
  }
}
"""


def test_pagination_over_more_than_100_projects() -> None:
    src = many_projects(230)
    seen: list[str] = []
    pages: list[int] = []
    after: str | None = None
    while True:
        result = run(src, PAGE, {"first": 150, "after": after})  # clamped to 100
        connection = result["data"]["group"]["projects"]
        assert connection["count"] == 230
        nodes = connection["nodes"]
        pages.append(len(nodes))
        seen.extend(node["id"] for node in nodes)
        info = connection["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert info["startCursor"] == _cursor(int(nodes[0]["id"].rsplit("/", 1)[1]))
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert pages == [100, 100, 30]
    assert seen == [f"gid://gitlab/Project/{i}" for i in range(1, 231)]


def test_page_without_first_has_no_next_page_like_gitlab() -> None:
    result = run(many_projects(120), PAGE, {})
    connection = result["data"]["group"]["projects"]
    assert len(connection["nodes"]) == 100
    assert connection["pageInfo"]["hasNextPage"] is False


def test_empty_page_cursors_are_null() -> None:
    result = run(many_projects(3), PAGE, {"first": 2, "after": _cursor(3)})
    connection = result["data"]["group"]["projects"]
    assert connection["nodes"] == []
    assert connection["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }


def test_include_subgroups(source: FakeSource) -> None:
    query = """
    query($sub: Boolean) {
      group(fullPath: "grp") { projects(includeSubgroups: $sub) { nodes { fullPath } } }
    }
    """
    own = run(source, query, {"sub": False})["data"]["group"]["projects"]["nodes"]
    assert own == [{"fullPath": "grp/empty"}]
    deep = run(source, query, {"sub": True})["data"]["group"]["projects"]["nodes"]
    assert deep == [{"fullPath": "grp/sub/demo"}, {"fullPath": "grp/empty"}]


def test_unknown_field_is_a_validation_error(source: FakeSource) -> None:
    result = run(source, '{ group(fullPath: "grp") { id bogus } }')
    assert result == {
        "errors": [
            {
                "message": "Cannot query field 'bogus' on type 'Group'.",
                "locations": [{"line": 1, "column": 31}],
            }
        ]
    }


def test_syntax_error(source: FakeSource) -> None:
    result = run(source, "{ group(fullPath: ")
    assert "data" not in result
    assert result["errors"][0]["message"].startswith("Syntax Error:")


def test_missing_variable_is_an_error(source: FakeSource) -> None:
    result = run(source, "query($g: ID!) { group(fullPath: $g) { id } }", {})
    assert "data" not in result
    [error] = result["errors"]
    assert error["message"].startswith("Variable '$g' ")  # graphql-core's wording
    assert "'ID!'" in error["message"]
    assert error["locations"] == [{"line": 1, "column": 7}]


def test_invalid_cursor_is_a_field_error() -> None:
    result = run(many_projects(3), PAGE, {"after": "not-a-cursor"})
    assert result["data"] == {"group": None}
    assert result["errors"][0]["message"] == "Please provide a valid cursor"
    assert result["errors"][0]["path"] == ["group", "projects"]


def test_complexity_limit(source: FakeSource) -> None:
    fields = " ".join(f"a{i}: fullPath" for i in range(260))
    result = run(source, f'{{ group(fullPath: "grp") {{ {fields} }} }}')
    assert result == {
        "errors": [{"message": "Query has complexity of 261, which exceeds max complexity of 250"}]
    }


def test_connection_multiplier_in_complexity(source: FakeSource) -> None:
    query = """
    query($n: Int) {
      queryComplexity { score }
      group(fullPath: "grp") { projects(first: $n) { nodes { id fullPath name webUrl } } }
    }
    """
    # queryComplexity(1)+score(1) + group(1) + projects(1 + 10 resolver + child) + nodes(1 + 4)
    small = run(source, query, {"n": 1})["data"]["queryComplexity"]["score"]
    assert small == 2 + 1 + (1 + 10 + 5 + int(5 * 1 * 0.01))
    full = run(source, query, {"n": 100})["data"]["queryComplexity"]["score"]
    assert full == 2 + 1 + (1 + 10 + 5 + 5)  # first:100 doubles the child complexity


def test_depth_limit(source: FakeSource) -> None:
    source.user = None  # anonymous: max depth 15 (20 when authenticated)
    deepest_data = (
        '{ group(fullPath: "grp") { projects { edges { node { pipelines { edges { node '
        "{ user { id } } } } } } } } }"
    )
    assert "errors" not in run(source, deepest_data)
    of_type = "ofType { " * 14 + "name" + " }" * 14
    too_deep = "{ __schema { types { " + of_type + " } } }"  # 17 levels
    assert run(source, too_deep) == {
        "errors": [{"message": "Query has depth of 17, which exceeds max depth of 15"}]
    }
    source.user = GqlUser(1, "root", "Administrator")
    assert "errors" not in run(source, too_deep)


def test_query_too_large(source: FakeSource) -> None:
    query = "{ currentUser { id } }" + " " * 10_000
    assert run(source, query) == {"errors": [{"message": "Query too large"}]}
