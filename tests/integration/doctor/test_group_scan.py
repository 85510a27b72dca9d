"""``doctor --group``: every failed job of a group and its subgroups, classified and counted."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from provisioner.sandbox_runner import RunnerHandle
from tests.conftest import Cli
from tests.integration.sandbox_runner.conftest import API_ONLY, Lab

pytestmark = pytest.mark.sandbox


def test_group_scan_classifies_failed_jobs_across_subgroups(
    lab: Lab, runner_of: Callable[..., RunnerHandle], cli: Cli
) -> None:
    gl = lab.gl
    name = lab.sandbox.unique("doctor-group")
    top = gl.groups.create({"name": name, "path": name})
    sub = gl.groups.create({"name": "sub", "path": "sub", "parent_id": top.id})
    config = lab.config()
    tag = lab.sandbox.unique("doc-group")
    lab.register(config, tags=(tag,), name=f"{tag}-runner")
    # API_ONLY: the commit's own push pipeline does not start; only run_pipeline's pipeline runs.
    missing = API_ONLY + (
        f"ok:\n  tags: [{tag}]\n  script: [echo fine]\n"
        f"bad:\n  tags: [{tag}]\n  script: [nonexistent-tool-xyz]\n"
    )
    code_bug = API_ONLY + f"job:\n  tags: [{tag}]\n  script: [exit 3]\n"
    first = lab.sandbox.new_project(group=top, files={".gitlab-ci.yml": missing})
    second = lab.sandbox.new_project(group=sub, files={".gitlab-ci.yml": code_bug})
    for project in (first, second):
        lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(120)

    code, out, err = cli(
        "doctor",
        "--group",
        name,
        "--since",
        "1h",
        "--output",
        "json",
        env={"GITLAB_URL": lab.sandbox.url, "GITLAB_TOKEN": lab.sandbox.root_token},
    )
    assert code == 10, err
    report = json.loads(out)
    by_project = {j["project"]: j for j in report["jobs"]}
    assert set(by_project) == {first.path_with_namespace, second.path_with_namespace}
    bad = by_project[first.path_with_namespace]
    assert bad["name"] == "bad"
    assert bad["failure_reason"] == "script_failure"
    assert bad["finding"]["id"] == "command-not-found"
    assert bad["finding"]["evidence"]["text"].endswith("nonexistent-tool-xyz: command not found")
    assert by_project[second.path_with_namespace]["finding"] is None  # exit 3: the code's fault
    assert report["by_category"] == {"config": 1, "unclassified": 1}
    assert report["by_runner"] == {f"{tag}-runner": {"config": 1, "unclassified": 1}}
    assert report["runner_faults"] == 0

    code, out, _ = cli(
        "doctor",
        "--group",
        name,
        "--since",
        "1h",
        env={"GITLAB_URL": lab.sandbox.url, "GITLAB_TOKEN": lab.sandbox.root_token},
    )
    assert code == 10
    assert "2 failed jobs in " + name in out
    assert "0 of 2 look like the runner's fault" in out
