"""The stand-in runner rides out 429s and 5xx on the job protocol, as gitlab-runner does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from provisioner.sandbox_runner import RunnerHandle
from tests.integration.sandbox_runner.conftest import Lab
from tests.integration.sandbox_runner.test_shell_executor import THREE_STAGES

pytestmark = pytest.mark.sandbox

Start = Callable[..., RunnerHandle]


def test_three_stages_with_artifacts_pass_under_a_30_percent_fault_rate(
    lab: Lab, runner_of: Start
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("faults")
    lab.register(config, tags=(tag,))
    project = lab.project(THREE_STAGES.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    faults = lab.sandbox.handle.app.faults
    before = faults.snapshot()["injected_total"]
    faults.configure(fault_rate=0.3)
    try:
        handle = runner_of(config, once=True)
        assert handle.wait(180), "the runner did not drain the pipeline"
    finally:
        faults.configure(fault_rate=0.0)
    injected = faults.snapshot()["injected_total"] - before
    assert injected > 0
    done = lab.wait_pipeline(project, pipeline.id)
    jobs = lab.jobs(project, pipeline.id)
    assert done.status == "success", {n: j.status for n, j in jobs.items()}
    assert [r.state.value for r in handle.results] == ["success"] * 3
    assert "Downloading artifacts for build" in lab.trace(project, jobs["test"])
