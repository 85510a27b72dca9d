"""Runner lifecycle through python-gitlab, as registration and fleet code drive it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import gitlab
import pytest
import requests

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox


def _user_with_token(sandbox: RunningSandbox, scopes: list[str]) -> tuple[Any, str]:
    gl = sandbox.gitlab()
    name = sandbox.unique("user")
    user = gl.users.create(
        {"username": name, "name": name, "email": f"{name}@x.test", "password": "unused-password-1"}
    )
    token = user.personal_access_tokens.create({"name": "t", "scopes": scopes}).token
    return user, token


def test_create_verify_update_reset_delete(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project()
    assert gl.user is not None
    created = gl.user.runners.create(
        {
            "runner_type": "project_type",
            "project_id": project.id,
            "description": "build-1",
            "tag_list": ["linux", "docker"],
            "run_untagged": False,
            "locked": True,
            "maximum_timeout": 3600,
            "access_level": "not_protected",
        }
    )
    assert created.token.startswith("glrt-t3_")
    assert created.token_expires_at is None
    runner = gl.runners.get(created.id)
    assert runner.status == "never_contacted"
    assert runner.tag_list == ["linux", "docker"]
    assert (runner.run_untagged, runner.locked, runner.maximum_timeout) == (False, True, 3600)
    assert runner.runner_type == "project_type"
    assert [p["id"] for p in runner.projects] == [project.id]

    gl.runners.verify(created.token)
    runner = gl.runners.get(created.id)
    assert runner.status == "online"
    assert runner.contacted_at is not None
    with pytest.raises(gitlab.GitlabVerifyError):
        gl.runners.verify("glrt-t3_not-a-real-token")

    runner.paused = True
    runner.description = "build-1b"
    runner.save()
    runner = gl.runners.get(created.id)
    assert (runner.paused, runner.active, runner.status) == (True, False, "paused")
    assert runner.description == "build-1b"

    reset = gl.http_post(f"/runners/{created.id}/reset_authentication_token")
    assert reset["token"].startswith("glrt-t3_")
    assert reset["token"] != created.token
    with pytest.raises(gitlab.GitlabVerifyError):
        gl.runners.verify(created.token)
    gl.runners.verify(reset["token"])

    assert created.id in {r.id for r in project.runners.list(get_all=True)}
    gl.runners.delete(created.id)
    with pytest.raises(gitlab.GitlabGetError) as err:
        gl.runners.get(created.id)
    assert err.value.response_code == 404


def test_validation_errors_like_gitlab(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project()
    assert gl.user is not None
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gl.user.runners.create(
            {"runner_type": "project_type", "project_id": project.id, "run_untagged": False}
        )
    assert err.value.response_code == 400
    assert "can not be empty when runner is not allowed to pick untagged jobs" in str(
        err.value.error_message
    )
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gl.user.runners.create({"runner_type": "instance_type", "maximum_timeout": 60})
    assert "needs to be at least 10 minutes" in str(err.value.error_message)
    with pytest.raises(gitlab.GitlabCreateError) as err:
        gl.user.runners.create({"runner_type": "bogus"})
    assert err.value.response_code == 400


def test_token_scopes(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project()
    user, read_token = _user_with_token(sandbox, ["read_api"])
    project.members.create({"user_id": user.id, "access_level": 40})
    reader = sandbox.gitlab(token=read_token)
    assert reader.user is not None
    with pytest.raises(gitlab.GitlabCreateError) as err:
        reader.user.runners.create({"runner_type": "project_type", "project_id": project.id})
    assert err.value.response_code == 403
    assert err.value.response_body
    assert b"insufficient_scope" in err.value.response_body

    gl = sandbox.gitlab()
    creator_token = (
        gl.users.get(user.id)
        .personal_access_tokens.create({"name": "c", "scopes": ["create_runner"]})
        .token
    )
    creator = gitlab.Gitlab(sandbox.url, private_token=creator_token)
    created = creator.http_post(
        "/user/runners", post_data={"runner_type": "project_type", "project_id": project.id}
    )
    assert created["token"].startswith("glrt-")
    with pytest.raises(gitlab.GitlabListError) as list_err:
        creator.runners.list()
    assert list_err.value.response_code == 403
    with pytest.raises(gitlab.GitlabHttpError) as inst_err:
        creator.http_post("/user/runners", post_data={"runner_type": "instance_type"})
    assert inst_err.value.response_code == 403

    # A runner token is only good for runner endpoints.
    resp = requests.get(
        f"{sandbox.url}/api/v4/projects/{project.id}",
        headers={"PRIVATE-TOKEN": created["token"]},
        timeout=10,
    )
    assert resp.status_code == 401


def test_legacy_registration_gone_then_allowed(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project()
    reg_token = gl.projects.get(project.id).runners_token
    resp = requests.post(f"{sandbox.url}/api/v4/runners", json={"token": reg_token}, timeout=10)
    assert resp.status_code == 410
    assert resp.json() == {"message": "410 Gone - runner registration disallowed"}
    bad = requests.post(f"{sandbox.url}/api/v4/runners", json={"token": "nope"}, timeout=10)
    assert bad.status_code == 403
    settings = gl.settings.get()
    settings.allow_runner_registration_token = True
    settings.save()
    try:
        registered = gl.runners.create(
            {"token": reg_token, "description": "legacy", "tag_list": ["old"]}
        )
        assert not registered.token.startswith("glrt-")
        assert registered.token.startswith("t3_")
        runner = gl.runners.get(registered.id)
        assert runner.runner_type == "project_type"
        gl.runners.delete(token=registered.token)
        with pytest.raises(gitlab.GitlabGetError):
            gl.runners.get(registered.id)
    finally:
        settings.allow_runner_registration_token = False
        settings.save()


def test_lists_and_filters(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    assert gl.user is not None
    name = sandbox.unique("grp")
    group = gl.groups.create({"name": name, "path": name})
    project = sandbox.new_project(group=group)
    g_runner = gl.user.runners.create(
        {"runner_type": "group_type", "group_id": group.id, "tag_list": ["gpu"]}
    )
    p_runner = gl.user.runners.create(
        {"runner_type": "project_type", "project_id": project.id, "paused": True}
    )
    i_runner = gl.user.runners.create({"runner_type": "instance_type"})
    assert g_runner.token.startswith("glrt-t2_")
    assert i_runner.token.startswith("glrt-t1_")
    in_group = {r.id for r in group.runners.list(get_all=True)}
    assert {g_runner.id, i_runner.id} <= in_group
    in_project = {r.id for r in project.runners.list(get_all=True)}
    assert {g_runner.id, p_runner.id, i_runner.id} <= in_project
    everyone = gl.runners_all.list(get_all=True)
    assert {g_runner.id, p_runner.id, i_runner.id} <= {r.id for r in everyone}
    shared = {r.id for r in gl.runners_all.list(scope="shared", get_all=True)}
    assert i_runner.id in shared
    assert p_runner.id not in shared
    paused = {r.id for r in gl.runners.list(paused=True, get_all=True)}
    assert p_runner.id in paused
    assert g_runner.id not in paused
    tagged = {r.id for r in gl.runners_all.list(tag_list=["gpu"], get_all=True)}
    assert g_runner.id in tagged
    assert i_runner.id not in tagged
    with pytest.raises(gitlab.GitlabListError) as err:
        gl.runners.list(scope="bogus")
    assert err.value.response_code == 400
    never = {r.id for r in gl.runners_all.list(status="never_contacted", get_all=True)}
    assert i_runner.id in never
    detail = gl.runners.get(g_runner.id)
    assert detail.groups[0]["id"] == group.id


@pytest.mark.slow
def test_pagination_across_250_runners(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    assert gl.user is not None
    name = sandbox.unique("many")
    group = gl.groups.create({"name": name, "path": name})
    created = {
        gl.user.runners.create(
            {"runner_type": "group_type", "group_id": group.id, "description": f"r{i}"}
        ).id
        for i in range(250)
    }
    listed = group.runners.list(type="group_type", per_page=100, get_all=True)
    assert [r.id for r in listed] == sorted(created)
    page = group.runners.list(type="group_type", per_page=100, page=3)
    assert len(page) == 50
    resp = requests.get(
        f"{sandbox.url}/api/v4/groups/{group.id}/runners",
        params={"type": "group_type", "per_page": 100},
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=30,
    )
    assert resp.headers["X-Total"] == "250"
    assert resp.headers["X-Total-Pages"] == "3"
    lazy = group.runners.list(type="group_type", per_page=100, iterator=True)
    assert sum(1 for _ in lazy) == 250


def test_delete_honours_if_unmodified_since(sandbox: RunningSandbox) -> None:
    from email.utils import format_datetime

    gl = sandbox.gitlab()
    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    created = gl.http_post(
        "/user/runners", post_data={"runner_type": "instance_type", "description": "old"}
    )
    url = f"{sandbox.url}/api/v4/runners/{created['id']}"
    time.sleep(1.1)  # HTTP dates have whole seconds
    # A heartbeat is not a change: the runner stays deletable under a plan made before it.
    beat = requests.post(
        f"{sandbox.url}/api/v4/runners/verify",
        json={"token": created["token"], "system_id": "s_beat"},
        timeout=30,
    )
    assert beat.status_code == 200
    planned = datetime.now(UTC)
    time.sleep(1.1)
    note = "managed-by: runnerctl fleet prod"
    updated = requests.put(url, json={"maintenance_note": note}, headers=headers, timeout=30)
    assert updated.status_code == 200
    assert updated.json()["maintenance_note"] == note

    stale = {**headers, "If-Unmodified-Since": format_datetime(planned, usegmt=True)}
    refused = requests.delete(url, headers=stale, timeout=30)
    assert (refused.status_code, refused.json()) == (412, {"message": "412 Precondition Failed"})
    assert requests.get(url, headers=headers, timeout=30).status_code == 200

    # The same value again (no attribute changes) does not move updated_at.
    fresh = datetime.now(UTC) + timedelta(seconds=1)
    time.sleep(2.1)
    again = requests.put(url, json={"maintenance_note": note}, headers=headers, timeout=30)
    assert again.status_code == 200
    current = {**headers, "If-Unmodified-Since": format_datetime(fresh, usegmt=True)}
    assert requests.delete(url, headers=current, timeout=30).status_code == 204
    assert requests.get(url, headers=headers, timeout=30).status_code == 404


def test_reset_token_counts_as_a_change(sandbox: RunningSandbox) -> None:
    from email.utils import format_datetime

    gl = sandbox.gitlab()
    headers = {"PRIVATE-TOKEN": sandbox.root_token}
    created = gl.http_post("/user/runners", post_data={"runner_type": "instance_type"})
    planned = datetime.now(UTC)
    time.sleep(1.1)
    gl.http_post(f"/runners/{created['id']}/reset_authentication_token")
    stale = {**headers, "If-Unmodified-Since": format_datetime(planned, usegmt=True)}
    url = f"{sandbox.url}/api/v4/runners/{created['id']}"
    assert requests.delete(url, headers=stale, timeout=30).status_code == 412
    garbage = {**headers, "If-Unmodified-Since": "not a date"}
    assert requests.delete(url, headers=garbage, timeout=30).status_code == 204


def test_manager_contacted_at_moves_with_job_requests(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    # A tag no job has, so that this runner never takes another test's job.
    created = gl.http_post(
        "/user/runners",
        post_data={
            "runner_type": "instance_type",
            "tag_list": [sandbox.unique("poller")],
            "run_untagged": False,
        },
    )
    body = {"token": created["token"], "system_id": "s_poller", "info": {"version": "18.0.0"}}
    first = requests.post(f"{sandbox.url}/api/v4/jobs/request", json=body, timeout=30)
    assert first.status_code == 204
    [manager] = gl.http_get(f"/runners/{created['id']}/managers")
    time.sleep(0.01)
    second = requests.post(f"{sandbox.url}/api/v4/jobs/request", json=body, timeout=30)
    assert second.status_code == 204
    [again] = gl.http_get(f"/runners/{created['id']}/managers")
    assert manager["system_id"] == again["system_id"] == "s_poller"
    assert again["version"] == "18.0.0"
    assert again["contacted_at"] > manager["contacted_at"]
