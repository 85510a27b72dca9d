"""``resource_group``: two jobs of one group in a project never run at the same time."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient, variables

pytestmark = pytest.mark.sandbox


def _ci(tag: str) -> dict[str, str]:
    return {
        ".gitlab-ci.yml": (
            "variables:\n"
            "  TARGET: fleet\n"
            "apply:\n"
            f"  tags: [{tag}]\n"
            "  resource_group: $TARGET\n"
            "  script: [runnerctl fleet apply FLEET.toml]\n"
            "lint:\n"
            f"  tags: [{tag}]\n"
            "  script: [echo lint]\n"
        )
    }


def _runner(sandbox: RunningSandbox, tag: str, system_id: str) -> RunnerClient:
    created = sandbox.gitlab().http_post(
        "/user/runners",
        post_data={"runner_type": "instance_type", "tag_list": [tag], "run_untagged": False},
    )
    return RunnerClient(sandbox.url, created["token"], system_id=system_id)


def _pipeline_of(job: dict[str, Any]) -> int:
    return int(variables(job)["CI_PIPELINE_ID"]["value"])


def _statuses(project: Any, pipeline_id: int) -> dict[str, str]:
    return {j.name: j.status for j in project.pipelines.get(pipeline_id).jobs.list()}


def test_a_second_job_of_the_group_waits_for_the_first(sandbox: RunningSandbox) -> None:
    tag = sandbox.unique("rg")
    project = sandbox.new_project(files=_ci(tag))
    [first] = project.pipelines.list(source="push")  # the first commit's pipeline
    second = project.pipelines.create({"ref": "main"})
    assert _statuses(project, first.id) == {"apply": "pending", "lint": "pending"}
    assert _statuses(project, second.id) == {"apply": "waiting_for_resource", "lint": "pending"}
    one, two = _runner(sandbox, tag, "s_one"), _runner(sandbox, tag, "s_two")

    taken = [one.request_job().json(), two.request_job().json()]
    assert sorted((j["job_info"]["name"], j["job_info"]["project_id"]) for j in taken) == [
        ("apply", project.id),
        ("lint", project.id),
    ]
    apply_job = next(j for j in taken if j["job_info"]["name"] == "apply")
    holder = one if taken[0] is apply_job else two
    other = two if holder is one else one
    assert _pipeline_of(apply_job) == first.id
    # The second pipeline's lint runs beside the first apply; its apply does not.
    lint2 = other.request_job()
    assert lint2.status_code == 201
    assert lint2.json()["job_info"]["name"] == "lint"
    for _ in range(2):
        assert holder.request_job().status_code == 204
        assert other.request_job().status_code == 204
    assert _statuses(project, second.id)["apply"] == "waiting_for_resource"

    holder.run_job(apply_job)
    assert _statuses(project, second.id)["apply"] == "pending"
    nxt = other.request_job()
    assert nxt.status_code == 201
    assert nxt.json()["job_info"]["name"] == "apply"
    assert _pipeline_of(nxt.json()) == second.id


def test_a_canceled_holder_frees_the_group(sandbox: RunningSandbox) -> None:
    tag = sandbox.unique("rg-cancel")
    project = sandbox.new_project(files=_ci(tag))
    [first] = project.pipelines.list(source="push")
    second = project.pipelines.create({"ref": "main"})
    assert project.pipelines.get(second.id).status == "pending"  # its lint is pending
    project.pipelines.get(first.id).cancel()
    assert _statuses(project, second.id)["apply"] == "pending"
    only_apply = project.pipelines.create({"ref": "main"})
    assert _statuses(project, only_apply.id)["apply"] == "waiting_for_resource"


def test_two_concurrent_runners_never_overlap_in_the_group(sandbox: RunningSandbox) -> None:
    tag = sandbox.unique("rg-race")
    project = sandbox.new_project(files=_ci(tag))
    pipelines = [
        *project.pipelines.list(source="push"),
        *(project.pipelines.create({"ref": "main"}) for _ in range(2)),
    ]
    assert len(pipelines) == 3
    runs: list[tuple[str, float, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work(client: RunnerClient) -> None:
        while not stop.is_set():
            answer = client.request_job()
            if answer.status_code != 201:
                time.sleep(0.02)
                continue
            job = answer.json()
            started = time.monotonic()
            time.sleep(0.2)  # the job "runs"
            ended = time.monotonic()
            with lock:
                runs.append((job["job_info"]["name"], started, ended))
            client.run_job(job)

    threads = [
        threading.Thread(target=work, args=(_runner(sandbox, tag, f"s_race{i}"),), daemon=True)
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(
            lambda: all(project.pipelines.get(p.id).status == "success" for p in pipelines),
            timeout=60,
            interval=0.2,
            message=lambda: str([_statuses(project, p.id) for p in pipelines]),
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    applies = sorted((s, e) for name, s, e in runs if name == "apply")
    assert len(applies) == 3
    for (_, end), (start, _) in itertools.pairwise(applies):
        assert start >= end, applies
    # Jobs outside the group did run beside an apply: the two runners really were concurrent.
    lints = [(s, e) for name, s, e in runs if name == "lint"]
    assert any(s < ae and as_ < e for s, e in lints for as_, ae in applies)
