"""Pipeline schedules in the sandbox: the REST API as GitLab answers it, ``play``, and the
scheduler creating ``source=schedule`` pipelines at (fast-forwarded) cron times."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.sandbox.schedules import next_run
from tests.helpers import wait_until
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

CI = {
    ".gitlab-ci.yml": (
        "nightly:\n"
        "  rules:\n"
        '    - if: $CI_PIPELINE_SOURCE == "schedule"\n'
        "  script: [echo nightly]\n"
        "on-push:\n"
        "  rules:\n"
        '    - if: $CI_PIPELINE_SOURCE == "push"\n'
        "  script: [echo push]\n"
    )
}


def _api(sandbox: RunningSandbox, token: str | None = None) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token or sandbox.root_token}


def _user(sandbox: RunningSandbox, project: Any, level: int) -> str:
    gl = sandbox.gitlab()
    name = sandbox.unique("sched-user")
    user = gl.users.create(
        {"username": name, "name": name, "email": f"{name}@x.test", "password": "unused-password-1"}
    )
    project.members.create({"user_id": user.id, "access_level": level})
    token: str = user.personal_access_tokens.create({"name": "t", "scopes": ["api"]}).token
    return token


def test_create_list_get_update_validate_delete(sandbox: RunningSandbox) -> None:
    project = sandbox.new_project(files=CI)
    base = f"{sandbox.url}/api/v4/projects/{project.id}/pipeline_schedules"
    headers = _api(sandbox)
    missing = requests.post(base, json={"ref": "main"}, headers=headers, timeout=30)
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "description is missing, cron is missing"},
    )
    bad = requests.post(
        base,
        json={"description": "x", "ref": "main", "cron": "61 * * * *", "cron_timezone": "Mars/X"},
        headers=headers,
        timeout=30,
    )
    assert (bad.status_code, bad.json()) == (
        400,
        {"message": {"cron": ["is invalid syntax"], "cron_timezone": ["is invalid syntax"]}},
    )
    before = datetime.now(UTC)
    created = requests.post(
        base,
        json={
            "description": "nightly fleet apply",
            "ref": "main",
            "cron": "30 2 * * *",
            "cron_timezone": "Europe/Berlin",
        },
        headers=headers,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["description"] == "nightly fleet apply"
    assert (doc["ref"], doc["cron"], doc["cron_timezone"]) == (
        "main",
        "30 2 * * *",
        "Europe/Berlin",
    )
    assert doc["active"] is True
    assert doc["owner"]["username"] == "root"
    assert doc["last_pipeline"] is None
    assert doc["variables"] == []
    expected = next_run("30 2 * * *", "Europe/Berlin", before)
    assert datetime.fromisoformat(doc["next_run_at"].replace("Z", "+00:00")) == expected
    assert expected.astimezone().tzinfo is not None

    paused = requests.post(
        base,
        json={"description": "off", "ref": "main", "cron": "0 * * * *", "active": False},
        headers=headers,
        timeout=30,
    ).json()
    assert paused["cron_timezone"] == "UTC"
    listed = requests.get(base, headers=headers, timeout=30).json()
    assert [s["id"] for s in listed] == [doc["id"], paused["id"]]
    assert "variables" not in listed[0]
    active = requests.get(base, params={"scope": "active"}, headers=headers, timeout=30).json()
    assert [s["id"] for s in active] == [doc["id"]]
    inactive = requests.get(base, params={"scope": "inactive"}, headers=headers, timeout=30)
    assert [s["id"] for s in inactive.json()] == [paused["id"]]

    one = f"{base}/{doc['id']}"
    updated = requests.put(one, json={"cron": "*/5 * * * *"}, headers=headers, timeout=30)
    assert updated.status_code == 200
    assert updated.json()["cron"] == "*/5 * * * *"
    assert updated.json()["next_run_at"] != doc["next_run_at"]
    invalid = requests.put(one, json={"cron": "every day"}, headers=headers, timeout=30)
    assert (invalid.status_code, invalid.json()) == (
        400,
        {"message": {"cron": ["is invalid syntax"]}},
    )

    assert requests.delete(one, headers=headers, timeout=30).status_code == 204
    gone = requests.get(one, headers=headers, timeout=30)
    assert (gone.status_code, gone.json()) == (404, {"message": "404 Pipeline Schedule Not Found"})


def test_variables_and_ownership(sandbox: RunningSandbox) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project(files=CI)
    schedule = gl.projects.get(project.id).pipelineschedules.create(
        {"description": "apply", "ref": "main", "cron": "0 3 * * *"}
    )
    base = f"{sandbox.url}/api/v4/projects/{project.id}/pipeline_schedules/{schedule.id}"
    headers = _api(sandbox)
    made = requests.post(
        f"{base}/variables",
        json={"key": "SSH_KEY", "value": "key-material", "variable_type": "file"},
        headers=headers,
        timeout=30,
    )
    assert made.status_code == 201
    assert made.json() == {
        "variable_type": "file",
        "key": "SSH_KEY",
        "value": "key-material",
        "raw": False,
    }
    again = requests.post(
        f"{base}/variables", json={"key": "SSH_KEY", "value": "x"}, headers=headers, timeout=30
    )
    assert (again.status_code, again.json()) == (
        400,
        {"message": {"key": ["(SSH_KEY) has already been taken"]}},
    )
    bad_key = requests.post(
        f"{base}/variables", json={"key": "A-B", "value": "x"}, headers=headers, timeout=30
    )
    assert bad_key.json() == {"message": {"key": ["can contain only letters, digits and '_'."]}}
    bad_type = requests.post(
        f"{base}/variables",
        json={"key": "B", "value": "x", "variable_type": "blob"},
        headers=headers,
        timeout=30,
    )
    assert bad_type.json() == {"error": "variable_type does not have a valid value"}
    schedule.variables.create({"key": "MODE", "value": "plan"})
    changed = requests.put(
        f"{base}/variables/MODE", json={"value": "apply"}, headers=headers, timeout=30
    )
    assert changed.json()["value"] == "apply"
    assert changed.json()["variable_type"] == "env_var"
    temp = schedule.variables.create({"key": "TEMP", "value": "1"})
    assert temp.key == "TEMP"
    dropped = requests.delete(f"{base}/variables/TEMP", headers=headers, timeout=30)
    assert (dropped.status_code, dropped.json()["key"]) == (202, "TEMP")
    assert requests.delete(f"{base}/variables/TEMP", headers=headers, timeout=30).json() == {
        "message": "404 Pipeline Schedule Variable Not Found"
    }
    details = requests.get(base, headers=headers, timeout=30).json()
    assert [(v["key"], v["variable_type"]) for v in details["variables"]] == [
        ("SSH_KEY", "file"),
        ("MODE", "env_var"),
    ]

    maintainer = _user(sandbox, project, 40)
    developer = _user(sandbox, project, 30)
    # Variables are shown to the owner and to maintainers only.
    seen = requests.get(base, headers=_api(sandbox, developer), timeout=30).json()
    assert seen["description"] == "apply"
    assert "variables" not in seen
    shown = requests.get(base, headers=_api(sandbox, maintainer), timeout=30).json()
    assert len(shown["variables"]) == 2
    # Only the owner edits a schedule; a maintainer takes it over first.
    refused = requests.put(
        base, json={"description": "mine"}, headers=_api(sandbox, maintainer), timeout=30
    )
    assert refused.status_code == 403
    denied = requests.post(f"{base}/take_ownership", headers=_api(sandbox, developer), timeout=30)
    assert denied.status_code == 403
    taken = requests.post(f"{base}/take_ownership", headers=_api(sandbox, maintainer), timeout=30)
    assert taken.status_code == 201
    assert taken.json()["owner"]["username"] != "root"
    mine = requests.put(
        base, json={"description": "mine"}, headers=_api(sandbox, maintainer), timeout=30
    )
    assert (mine.status_code, mine.json()["description"]) == (200, "mine")
    twice = requests.post(f"{base}/take_ownership", headers=_api(sandbox, maintainer), timeout=30)
    assert twice.status_code == 403


def test_play_creates_a_schedule_pipeline_without_moving_next_run(
    sandbox: RunningSandbox,
) -> None:
    gl = sandbox.gitlab()
    project = sandbox.new_project(files=CI)
    schedule = gl.projects.get(project.id).pipelineschedules.create(
        {"description": "apply", "ref": "main", "cron": "0 3 * * *"}
    )
    schedule.variables.create({"key": "FLEET_MODE", "value": "apply"})
    base = f"{sandbox.url}/api/v4/projects/{project.id}/pipeline_schedules/{schedule.id}"
    developer = _user(sandbox, project, 30)
    played = requests.post(f"{base}/play", headers=_api(sandbox, developer), timeout=30)
    assert (played.status_code, played.json()) == (201, {"message": "201 Created"})
    details = requests.get(base, headers=_api(sandbox), timeout=30).json()
    assert details["next_run_at"] == schedule.next_run_at
    last = details["last_pipeline"]
    assert last["source"] == "schedule"
    listed = requests.get(f"{base}/pipelines", headers=_api(sandbox), timeout=30).json()
    assert [p["id"] for p in listed] == [last["id"]]
    pipeline = gl.projects.get(project.id).pipelines.get(last["id"])
    assert pipeline.user["username"] != "root"  # the player, not the owner
    assert [j.name for j in pipeline.jobs.list()] == ["nightly"]
    assert [(v.key, v.value) for v in pipeline.variables.list()] == [("FLEET_MODE", "apply")]


@pytest.fixture
def fast(tmp_path: Path) -> Iterator[RunningSandbox]:
    """A sandbox whose cron minute lasts half a second."""
    from provisioner.sandbox import start_background

    handle = start_background(tmp_path / "data", port=0, schedule_tick=0.5)
    try:
        yield RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle)
    finally:
        handle.stop()


def test_the_scheduler_fires_due_schedules(fast: RunningSandbox) -> None:
    gl = fast.gitlab()
    tag = fast.unique("sched-tag")
    files = {
        ".gitlab-ci.yml": (
            "nightly:\n"
            f"  tags: [{tag}]\n"
            "  rules:\n"
            '    - if: $CI_PIPELINE_SOURCE == "schedule"\n'
            "  script: [cat $DEPLOY_KEY]\n"
        )
    }
    project = fast.new_project(files=files)
    schedules = gl.projects.get(project.id).pipelineschedules
    every = schedules.create({"description": "every", "ref": "main", "cron": "* * * * *"})
    every.variables.create({"key": "DEPLOY_KEY", "value": "k", "variable_type": "file"})
    off = schedules.create(
        {"description": "off", "ref": "main", "cron": "* * * * *", "active": False}
    )
    base = f"{fast.url}/api/v4/projects/{project.id}/pipeline_schedules"

    def pipelines(sid: int) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = requests.get(
            f"{base}/{sid}/pipelines", headers=_api(fast), timeout=30
        ).json()
        return answer

    wait_until(
        lambda: len(pipelines(every.id)) >= 2,
        timeout=30,
        interval=0.1,
        message=lambda: f"schedule pipelines so far: {pipelines(every.id)}",
    )
    runs = pipelines(every.id)
    assert {p["source"] for p in runs} == {"schedule"}
    assert runs[0]["id"] < runs[1]["id"]
    assert pipelines(off.id) == []
    details = requests.get(f"{base}/{every.id}", headers=_api(fast), timeout=30).json()
    assert details["next_run_at"] > every.next_run_at
    pipeline = gl.projects.get(project.id).pipelines.get(runs[0]["id"])
    assert pipeline.user["username"] == "root"  # the owner

    # The job hands the file-type variable to the runner as a file, as GitLab does.
    runner = gl.http_post(
        "/user/runners",
        post_data={"runner_type": "instance_type", "tag_list": [tag], "run_untagged": False},
    )
    job = requests.post(
        f"{fast.url}/api/v4/jobs/request", json={"token": runner["token"]}, timeout=30
    )
    assert job.status_code == 201
    variables = {v["key"]: v for v in job.json()["variables"]}
    assert variables["DEPLOY_KEY"]["file"] is True
    assert variables["DEPLOY_KEY"]["value"] == "k"
    assert variables["CI_PIPELINE_SOURCE"]["value"] == "schedule"


def test_a_restart_at_real_time_brings_fast_forwarded_times_back(tmp_path: Path) -> None:
    from provisioner.sandbox import start_background

    data = tmp_path / "data"
    with start_background(data, port=0, schedule_tick=0.001) as handle:
        fast = RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle)
        project = fast.new_project()
        sid = (
            fast.gitlab()
            .projects.get(project.id)
            .pipelineschedules.create({"description": "d", "ref": "main", "cron": "0 3 * * *"})
            .id
        )
        # At 60000 cron seconds per real second, the clock is a day ahead within 1.5 s.
        wait_until(
            lambda: handle.app.schedule_clock.now() > datetime.now(UTC) + timedelta(days=1),
            timeout=30,
            interval=0.1,
            message="the fast clock did not run ahead",
        )
        ahead = requests.put(
            f"{handle.url}/api/v4/projects/{project.id}/pipeline_schedules/{sid}",
            json={"active": True},
            headers=_api(fast),
            timeout=30,
        ).json()["next_run_at"]
    with start_background(data, port=0) as handle:
        doc = requests.get(
            f"{handle.url}/api/v4/projects/{project.id}/pipeline_schedules/{sid}",
            headers={"PRIVATE-TOKEN": handle.root_token},
            timeout=30,
        ).json()
    expected = next_run("0 3 * * *", "UTC", datetime.now(UTC))
    assert doc["next_run_at"] < ahead
    assert abs(_parse(doc["next_run_at"]) - expected) < timedelta(minutes=1)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
