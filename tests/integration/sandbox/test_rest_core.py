"""REST v4 basics through python-gitlab: users, groups, projects, members, variables, commits."""

from __future__ import annotations

import base64

import gitlab
import pytest
import requests

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox


def test_version_and_current_user(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    version, revision = gl.version()
    assert version.count(".") == 2
    assert revision
    assert gl.user is not None
    assert gl.user.username == "root"
    assert gl.user.is_admin is True
    assert gl.user.web_url == f"{sandbox.url}/root"


def test_bad_token_is_401_with_gitlab_body(sandbox: RunningSandbox) -> None:
    resp = requests.get(
        f"{sandbox.url}/api/v4/user", headers={"PRIVATE-TOKEN": "glpat-nope"}, timeout=10
    )
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"message": "401 Unauthorized"}
    with pytest.raises(gitlab.GitlabAuthenticationError):
        sandbox.gitlab(token="glpat-nope")


def test_nested_groups_and_projects_by_path(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    top_name = sandbox.unique("top")
    top = gl.groups.create({"name": top_name, "path": top_name})
    sub = gl.groups.create({"name": "sub", "path": "sub", "parent_id": top.id})
    assert sub.full_path == f"{top_name}/sub"
    assert sub.parent_id == top.id
    inner = sandbox.new_project(group=sub, name="inner")
    outer = sandbox.new_project(group=top, name="outer")
    fetched = gl.projects.get(f"{top_name}/sub/{inner.path}")
    assert fetched.id == inner.id
    assert fetched.namespace["full_path"] == f"{top_name}/sub"
    assert fetched.http_url_to_repo == f"{sandbox.url}/{top_name}/sub/{inner.path}.git"
    assert gl.groups.get(f"{top_name}/sub").id == sub.id
    direct = {p.id for p in top.projects.list(get_all=True)}
    everything = {p.id for p in top.projects.list(include_subgroups=True, get_all=True)}
    assert direct == {outer.id}
    assert everything == {outer.id, inner.id}


def test_missing_project_is_gitlab_404(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    with pytest.raises(gitlab.GitlabGetError) as err:
        gl.projects.get("no/such/project")
    assert err.value.response_code == 404
    assert err.value.error_message == "404 Project Not Found"


def test_duplicate_project_is_400_validation(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project()
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gl.projects.create({"name": project.name, "path": project.path})
    assert err.value.response_code == 400
    assert "has already been taken" in str(err.value.error_message)


def test_members_decide_visibility_and_scope(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    username = sandbox.unique("dev")
    user = gl.users.create(
        {
            "username": username,
            "name": "Dev",
            "email": f"{username}@x.test",
            "password": "not-used-here-123",
        }
    )
    token = user.personal_access_tokens.create({"name": "t", "scopes": ["api"]}).token
    assert token.startswith("glpat-")
    project = sandbox.new_project()
    dev = sandbox.gitlab(token=token)
    with pytest.raises(gitlab.GitlabGetError) as err:
        dev.projects.get(project.id)
    assert err.value.response_code == 404
    internal = sandbox.new_project(visibility="internal")
    assert dev.projects.get(internal.id).visibility == "internal"  # any signed-in user
    project.members.create({"user_id": user.id, "access_level": 30})
    assert dev.projects.get(project.id).id == project.id
    assert {m.username for m in project.members.list()} >= {"root", username}
    read_only = user.personal_access_tokens.create({"name": "r", "scopes": ["read_api"]}).token
    reader = sandbox.gitlab(token=read_only)
    assert reader.projects.get(project.id).id == project.id
    with pytest.raises(gitlab.GitlabCreateError) as scope_err:
        reader.projects.create({"name": sandbox.unique("nope")})
    assert scope_err.value.response_code == 403


def test_variables_file_type_and_masked(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    project.variables.create({"key": "PLAIN", "value": "1"})
    project.variables.create({"key": "KEYFILE", "value": "line1\nline2\n", "variable_type": "file"})
    project.variables.create({"key": "SECRET", "value": "s3cr3t-value", "masked": True})
    by_key = {v.key: v for v in project.variables.list(get_all=True)}
    assert by_key["KEYFILE"].variable_type == "file"
    assert by_key["SECRET"].masked is True
    assert by_key["PLAIN"].masked is False
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.variables.create({"key": "SHORT", "value": "abc", "masked": True})
    assert err.value.response_code == 400
    var = project.variables.get("PLAIN")
    var.value = "2"
    var.save()
    assert project.variables.get("PLAIN").value == "2"
    project.variables.delete("PLAIN")
    assert "PLAIN" not in {v.key for v in project.variables.list(get_all=True)}


def test_commit_actions_make_real_commits(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files={"a.txt": "one\n", "b.txt": "bee\n"})
    second = project.commits.create(
        {
            "branch": "main",
            "commit_message": "change things",
            "actions": [
                {"action": "update", "file_path": "a.txt", "content": "two\n"},
                {"action": "delete", "file_path": "b.txt"},
                {
                    "action": "create",
                    "file_path": "bin/run.sh",
                    "content": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
                    "encoding": "base64",
                    "execute_filemode": True,
                },
            ],
        }
    )
    assert len(second.parent_ids) == 1
    assert second.title == "change things"
    assert project.files.get("a.txt", ref="main").decode() == b"two\n"
    run = project.files.get("bin/run.sh", ref="main")
    assert run.execute_filemode is True
    assert run.last_commit_id == second.id
    with pytest.raises(gitlab.GitlabGetError):
        project.files.get("b.txt", ref="main")
    with pytest.raises(gitlab.GitlabCreateError) as err:
        project.commits.create(
            {
                "branch": "main",
                "commit_message": "dup",
                "actions": [{"action": "create", "file_path": "a.txt", "content": "x"}],
            }
        )
    assert err.value.response_code == 400
    assert err.value.error_message == "A file with this name already exists"
    feature = project.commits.create(
        {
            "branch": "feature",
            "start_branch": "main",
            "commit_message": "branch off",
            "actions": [{"action": "create", "file_path": "f.txt", "content": "f"}],
        }
    )
    assert feature.parent_ids == [second.id]
    assert project.files.raw("f.txt", ref="feature") == b"f"


def test_offset_pagination_headers_and_link(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    for i in range(5):
        project.variables.create({"key": f"V{i}", "value": str(i)})
    url = f"{sandbox.url}/api/v4/projects/{project.id}/variables"
    resp = requests.get(
        url,
        params={"per_page": 2, "page": 2},
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert resp.status_code == 200
    assert [v["key"] for v in resp.json()] == ["V2", "V3"]
    h = resp.headers
    assert (h["X-Page"], h["X-Per-Page"], h["X-Total"], h["X-Total-Pages"]) == ("2", "2", "5", "3")
    assert (h["X-Next-Page"], h["X-Prev-Page"]) == ("3", "1")
    assert resp.links["next"]["url"].startswith(f"{url}?")
    assert "page=3" in resp.links["next"]["url"]
    assert "page=1" in resp.links["first"]["url"]
    assert "page=3" in resp.links["last"]["url"]
    last = requests.get(
        url,
        params={"per_page": 2, "page": 3},
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert last.headers["X-Next-Page"] == ""
    assert "next" not in last.links
    keys = [v.key for v in project.variables.list(per_page=2, get_all=True)]
    assert keys == [f"V{i}" for i in range(5)]


def test_unknown_route_is_json_404(sandbox: RunningSandbox) -> None:
    resp = requests.get(
        f"{sandbox.url}/api/v4/nothing/here",
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert resp.status_code == 404
    assert resp.json() == {"error": "404 Not Found"}


def test_repository_browsing_and_single_file_commits(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project(files={"src/app.py": "print(1)\n"})
    project.files.create(
        {
            "file_path": "docs/readme.md",
            "branch": "main",
            "content": "# docs\n",
            "commit_message": "add docs",
        }
    )
    readme = project.files.get("docs/readme.md", ref="main")
    readme.content = "# docs v2\n"
    readme.save(branch="main", commit_message="edit docs")
    assert project.files.raw("docs/readme.md", ref="main") == b"# docs v2\n"
    commits = project.commits.list(get_all=True)
    assert [c.title for c in commits] == ["edit docs", "add docs", "initial"]
    assert project.commits.get("main").id == commits[0].id
    top = {e["path"]: e["type"] for e in project.repository_tree()}
    assert top == {"docs": "tree", "src": "tree"}
    deep = {e["path"] for e in project.repository_tree(recursive=True, get_all=True)}
    assert {"src/app.py", "docs/readme.md"} <= deep
    project.branches.create({"branch": "feature/x", "ref": "main"})
    assert project.branches.get("feature/x").commit["id"] == commits[0].id
    project.tags.create({"tag_name": "v1.0.0", "ref": "main", "message": "release"})
    tags = project.tags.list()
    assert [(t.name, t.target) for t in tags] == [("v1.0.0", commits[0].id)]
    project.files.delete(file_path="docs/readme.md", branch="main", commit_message="rm")
    with pytest.raises(gitlab.GitlabGetError):
        project.files.get("docs/readme.md", ref="main")
    project.branches.delete("feature/x")
    with pytest.raises(gitlab.GitlabGetError):
        project.branches.get("feature/x")
    assert gl.namespaces.get("root").kind == "user"


def test_group_variables_reach_jobs_and_projects_override(sandbox: RunningSandbox) -> None:
    from tests.integration.sandbox.runner_client import RunnerClient, variables

    gl = sandbox.gitlab()
    name = sandbox.unique("vars")
    group = gl.groups.create({"name": name, "path": name})
    sub = gl.groups.create({"name": "sub", "path": "sub", "parent_id": group.id})
    group.variables.create({"key": "REGION", "value": "eu"})
    group.variables.create({"key": "LEVEL", "value": "group"})
    sub.variables.create({"key": "LEVEL", "value": "subgroup"})
    project = sandbox.new_project(group=sub, files={".gitlab-ci.yml": "j:\n  script: [env]\n"})
    project.variables.create({"key": "OWN", "value": "p"})
    assert {v.key for v in group.variables.list()} == {"REGION", "LEVEL"}
    assert gl.user is not None
    runner = gl.user.runners.create({"runner_type": "project_type", "project_id": project.id})
    project.pipelines.create({"ref": "main"})
    job = RunnerClient(sandbox.url, runner.token).request_job().json()
    keys = [v["key"] for v in job["variables"]]
    assert keys.index("REGION") < keys.index("OWN")
    levels = [v["value"] for v in job["variables"] if v["key"] == "LEVEL"]
    assert levels == ["group", "subgroup"]  # the runner keeps the last: subgroup wins
    assert variables(job)["OWN"]["value"] == "p"


def test_hidden_variables_never_return_their_value(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    created = project.variables.create(
        {"key": "HIDDEN", "value": "top-secret-1234", "masked_and_hidden": True}
    )
    assert created.value is None
    assert created.hidden is True
    assert created.masked is True
    fetched = project.variables.get("HIDDEN")
    assert (fetched.value, fetched.hidden, fetched.masked) == (None, True, True)
    listed = {v.key: v for v in project.variables.list(get_all=True)}
    assert listed["HIDDEN"].value is None
    updated = project.variables.update("HIDDEN", {"value": "other-secret-5678"})
    assert updated["value"] is None
    assert updated["hidden"] is True
    with pytest.raises(gitlab.exceptions.GitlabUpdateError) as unmask:
        project.variables.update("HIDDEN", {"masked": False})
    assert unmask.value.response_code == 400
    # A value the mask rule refuses cannot be hidden either.
    with pytest.raises(gitlab.exceptions.GitlabCreateError):
        project.variables.create({"key": "SHORT", "value": "abc", "masked_and_hidden": True})
    plain = project.variables.create({"key": "PLAIN", "value": "visible"})
    assert (plain.value, plain.hidden) == ("visible", False)


def test_file_responses_carry_gitlab_headers(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files={"dir/run.sh": "#!/bin/sh\necho hi\n"})
    base = f"{sandbox.url}/api/v4/projects/{project.id}/repository/files/dir%2Frun.sh"
    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    body = requests.get(base, params={"ref": "main"}, headers=headers, timeout=10).json()
    expected = {
        "X-Gitlab-File-Name": "run.sh",
        "X-Gitlab-File-Path": "dir/run.sh",
        "X-Gitlab-Size": str(body["size"]),
        "X-Gitlab-Encoding": "base64",
        "X-Gitlab-Blob-Id": body["blob_id"],
        "X-Gitlab-Commit-Id": body["commit_id"],
        "X-Gitlab-Last-Commit-Id": body["last_commit_id"],
        "X-Gitlab-Content-Sha256": body["content_sha256"],
        "X-Gitlab-Ref": "main",
        "X-Gitlab-Execute-Filemode": "false",
    }
    for method, url in (
        ("GET", base),
        ("HEAD", base),
        ("GET", base + "/raw"),
        ("HEAD", base + "/raw"),
    ):
        resp = requests.request(method, url, params={"ref": "main"}, headers=headers, timeout=10)
        assert resp.status_code == 200, (method, url)
        assert {k: resp.headers.get(k) for k in expected} == expected, (method, url)
        if method == "HEAD":
            assert resp.content == b""
    gl_file = project.files.get("dir/run.sh", ref="main")
    assert gl_file.decode() == b"#!/bin/sh\necho hi\n"


def test_branch_in_an_empty_repository_starts_from_a_readme(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    branch = project.branches.create({"branch": "feature", "ref": "main"})
    assert branch.name == "feature"
    main = project.branches.get("main")
    assert main.commit["id"] == branch.commit["id"]
    assert main.commit["message"].startswith("Add README.md")
    assert project.files.raw("README.md", ref="feature") == b""
    assert [e["path"] for e in project.repository_tree(ref="main")] == ["README.md"]


def test_documented_filters_work_or_are_refused_by_name(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    name = sandbox.unique("finduser")
    gl.users.create(
        {"username": name, "name": "Find Me", "email": f"{name}@example.com", "password": "x"}
    )
    assert [u.username for u in gl.users.list(search=name)] == [name]
    assert [u.username for u in gl.users.list(search=f"{name}@example.com")] == [name]
    assert gl.users.list(search=f"{name}@example") == []
    assert gl.users.list(blocked=True) == []
    assert name in [u.username for u in gl.users.list(blocked=False, get_all=True)]

    g1 = gl.groups.create({"name": sandbox.unique("skip"), "path": sandbox.unique("skip")})
    g2 = gl.groups.create({"name": sandbox.unique("keep"), "path": sandbox.unique("keep")})
    listed = {g.id for g in gl.groups.list(query_parameters={"skip_groups[]": g1.id}, all=True)}
    assert g2.id in listed
    assert g1.id not in listed

    project = sandbox.new_project(files={"a.txt": "a"})
    project.commits.create(
        {
            "branch": "side",
            "start_branch": "main",
            "commit_message": "side only",
            "actions": [{"action": "create", "file_path": "b.txt", "content": "b"}],
        }
    )
    main_only = [c.title for c in project.commits.list(get_all=True)]
    assert main_only == ["initial"]
    every = [c.title for c in project.commits.list(all=True, get_all=True)]
    assert sorted(every) == ["initial", "side only"]

    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    for path, param in (
        ("/users", "two_factor=enabled"),
        ("/groups", "top_level_only=true"),
        ("/groups", "min_access_level=30"),
        (f"/projects/{project.id}/repository/commits", "with_stats=true"),
        (f"/projects/{project.id}/repository/commits", "since=2020-01-01T00:00:00Z"),
    ):
        resp = requests.get(f"{sandbox.url}/api/v4{path}?{param}", headers=headers, timeout=10)
        name_of = param.split("=")[0]
        assert resp.status_code == 400, (path, param)
        assert resp.json() == {"error": f"{name_of} is not supported by the GitLab sandbox"}
    # Authentication still comes first; parameters GitLab does not document are ignored.
    assert requests.get(f"{sandbox.url}/api/v4/users?two_factor=x", timeout=10).status_code == 401
    assert requests.get(
        f"{sandbox.url}/api/v4/users?no_such_filter=1", headers=headers, timeout=10
    ).ok
