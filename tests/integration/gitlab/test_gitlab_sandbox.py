"""The GitLab client package against the sandbox: GraphQL paging and the retry policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from provisioner.errors import GitLabError
from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings, Variable
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

GROUP_PROJECTS = """
query GroupProjects($group: ID!, $first: Int = 2, $after: String) {
  queryComplexity { score limit }
  group(fullPath: $group) {
    fullPath
    projects(includeSubgroups: true, first: $first, after: $after) {
      count
      pageInfo { hasNextPage endCursor }
      nodes { fullPath latest: pipelines(first: 1) { nodes { status } } }
    }
  }
}
"""


def _api(sandbox: RunningSandbox, token: str | None = None) -> GitLabAPI:
    # No real sleeping: the sandbox's faults are random per request, not timed.
    return GitLabAPI(
        ConnectionSettings(url=sandbox.url, token=token or sandbox.root_token),
        sleep=lambda _seconds: None,
    )


def _faults(sandbox: RunningSandbox, rate: float) -> None:
    response = requests.put(
        f"{sandbox.url}/-/sandbox/faults",
        json={"fault_rate": rate},
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def group(sandbox: RunningSandbox) -> Any:
    gl = sandbox.gitlab()
    name = sandbox.unique("gql")
    created = gl.groups.create({"name": name, "path": name})
    for _ in range(5):
        sandbox.new_project(group=created)
    return created


@pytest.fixture
def faulty(sandbox: RunningSandbox, group: Any) -> Iterator[str]:
    """Half of the API answers are faults while the test runs; yields a project's path."""
    path = f"{group.full_path}/{group.projects.list()[0].path}"
    _faults(sandbox, 0.5)
    try:
        yield path
    finally:
        _faults(sandbox, 0.0)


def test_graphql_pages_through_a_group_with_complexity(sandbox: RunningSandbox, group: Any) -> None:
    api = _api(sandbox)
    pages = list(
        api.graphql.pages(GROUP_PROJECTS, {"group": group.full_path}, ("group", "projects"))
    )
    assert len(pages) == 3
    paths = [node["fullPath"] for page in pages for node in page.data["group"]["projects"]["nodes"]]
    assert len(paths) == len(set(paths)) == 5
    assert all(p.startswith(group.full_path + "/") for p in paths)
    complexity = pages[0].complexity
    assert complexity is not None
    assert complexity.limit == 250
    assert 0 < complexity.score <= complexity.limit
    assert api.request_count == 3


def test_graphql_unknown_group_has_no_nodes(sandbox: RunningSandbox) -> None:
    nodes = _api(sandbox).graphql.nodes(GROUP_PROJECTS, {"group": "no/such"}, ("group", "projects"))
    assert list(nodes) == []


def test_graphql_errors_name_the_query(sandbox: RunningSandbox) -> None:
    with pytest.raises(GitLabError) as info:
        _api(sandbox).graphql.query('query Broken { group(fullPath: "x") { noSuchField } }')
    assert info.value.message.startswith("GitLab refused GraphQL query Broken: ")
    assert "noSuchField" in info.value.message


def test_graphql_bad_token_is_a_401_with_a_hint(sandbox: RunningSandbox) -> None:
    with pytest.raises(GitLabError) as info:
        _api(sandbox, token="glpat-wrongwrongwrongwrong").graphql.query(
            GROUP_PROJECTS, {"group": "x"}
        )
    assert "401" in info.value.message
    assert "glpat-wrong" not in info.value.message + (info.value.hint or "")


def test_reads_and_graphql_get_through_injected_faults(
    sandbox: RunningSandbox, group: Any, faulty: str
) -> None:
    # Issue 12: these calls made one attempt, so smoke failed under --fault-rate.
    api = _api(sandbox)
    project = api.find_project(faulty)
    assert project is not None
    for _ in range(5):
        assert api.get_variable(project.id, "NOPE") is None
        assert api.read_file(project.id, "missing.txt", "main") is None
        assert api.download_generic(project.id, "pkg", "1.0", "nothing.bin") is None
        assert api.delete_package(project.id, 999_999) is False
        assert api.delete_runner_by_token("glrt-notarunnertoken00000") is False
        nodes = api.graphql.nodes(GROUP_PROJECTS, {"group": group.full_path}, ("group", "projects"))
        assert len(list(nodes)) == 5
    api.set_variable(project.id, Variable("SMOKE_KEY", "v1"))
    got = api.get_variable(project.id, "SMOKE_KEY")
    assert got is not None
    assert got.value == "v1"
    assert api.list_tree(project.id, "main") == frozenset()  # an empty repository
    # Without faults: 1 + 5 * (5 + 3 pages) + 2 + 1 + 1 requests; the rest were retries.
    assert api.request_count > 45


def test_pipelines_and_commits_under_faults_are_created_once(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(
        files={".gitlab-ci.yml": "job:\n  script: [echo hi]\n", "README.md": "x\n"}
    )
    api = _api(sandbox)
    _faults(sandbox, 0.5)
    try:
        shas = [
            api.commit_files(
                project.id,
                branch="main",
                message=f"change {n}",
                files={"README.md": f"change {n}\n"},
                existing=frozenset({"README.md"}),
            )
            for n in range(4)
        ]
        created = [api.create_pipeline(project.id, "main", {"RUN": str(n)}) for n in range(6)]
    finally:
        _faults(sandbox, 0.0)
    commits = [c.title for c in project.commits.list(ref_name="main", get_all=True)]
    assert [f"change {n}" for n in range(4)] == sorted(t for t in commits if t.startswith("change"))
    assert len(set(shas)) == 4
    pipelines = project.pipelines.list(source="api", get_all=True)
    assert sorted(p.id for p in pipelines) == sorted(p.id for p in created)
    for n, pipeline in enumerate(created):
        variables = project.pipelines.get(pipeline.id).variables.list()
        assert {v.key: v.value for v in variables} == {"RUN": str(n)}
