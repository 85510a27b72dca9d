"""The stand-in runner with the shell executor, against the sandbox, from a registered config."""

from __future__ import annotations

import io
import tomllib
import zipfile
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from provisioner.sandbox_runner import RunnerHandle
from provisioner.secrets import contains_secret
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = pytest.mark.sandbox

Start = Callable[..., RunnerHandle]

THREE_STAGES = """
stages: [build, test, package]
build:
  stage: build
  tags: [@TAG@]
  script:
    - mkdir -p dist
    - echo "built by $CI_JOB_NAME in $CI_PROJECT_DIR" > dist/app.txt
    - printf '#!/bin/sh\\necho run-me\\n' > dist/run.sh && chmod +x dist/run.sh
  artifacts:
    paths: [dist/]
test:
  stage: test
  tags: [@TAG@]
  script:
    - test -f dist/app.txt
    - ./dist/run.sh
    - echo '<testsuite name="unit" tests="1"><testcase name="ok"/></testsuite>' > junit.xml
    - cat dist/app.txt > tested.txt
  after_script:
    - echo "after_script in a new shell, CI_JOB_STAGE=$CI_JOB_STAGE"
  artifacts:
    paths: [tested.txt]
    reports:
      junit: junit.xml
package:
  stage: package
  tags: [@TAG@]
  script:
    - cat tested.txt
    - test -f dist/app.txt
    - tar czf pkg.tgz dist tested.txt
  artifacts:
    paths: [pkg.tgz]
"""


def test_three_stages_pass_artifacts(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-3")
    lab.register(config, tags=(tag,))
    project = lab.project(THREE_STAGES.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(90), "the runner did not drain the pipeline"
    done = lab.wait_pipeline(project, pipeline.id)
    jobs = lab.jobs(project, pipeline.id)
    assert done.status == "success", {n: j.status for n, j in jobs.items()}
    test_log = lab.trace(project, jobs["test"])
    assert "Downloading artifacts for build" in test_log
    assert "run-me" in test_log  # the executable bit survived the zip round trip
    assert "after_script in a new shell, CI_JOB_STAGE=test" in test_log
    assert 'Uploading artifacts as "junit" to coordinator... 201 Created' in test_log
    package_log = lab.trace(project, jobs["package"])
    assert "built by build in " in package_log
    assert package_log.rstrip().endswith("Job succeeded\x1b[0;m")
    # The sandbox holds the archive the package job uploaded, with what its script made.
    raw = project.jobs.get(jobs["package"].id).artifacts()
    names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    assert names == ["pkg.tgz"]
    assert [r.state.value for r in handle.results] == ["success"] * 3
    # GitLab saw a runner: the protocol's info fields, and the runner is online.
    runner_id = tomllib.loads(config.read_text())["runners"][0]["id"]
    seen = lab.gl.runners.get(runner_id)
    assert (seen.version, seen.revision, seen.platform) == ("18.3.0", "runnerctl", "linux")
    assert seen.status == "online"
    assert (config.parent / ".runner_system_id").read_text().startswith("s_")


FAILING = """
stages: [build, test, deploy]
build:
  stage: build
  tags: [@TAG@]
  script:
    - echo "about to fail"
    - exit 3
    - echo "never printed"
  after_script: [echo "after_script still runs"]
test:
  stage: test
  tags: [@TAG@]
  script: [echo "must not run"]
cleanup:
  stage: deploy
  tags: [@TAG@]
  when: always
  script: [echo "always job ran"]
notify:
  stage: deploy
  tags: [@TAG@]
  when: on_failure
  script: [echo "on_failure job ran"]
"""


def test_failure_stops_later_stages_but_always_and_on_failure_run(
    lab: Lab, runner_of: Start
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-fail")
    lab.register(config, tags=(tag,))
    project = lab.project(FAILING.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(90)
    done = lab.wait_pipeline(project, pipeline.id)
    jobs = lab.jobs(project, pipeline.id)
    assert done.status == "failed"
    assert jobs["build"].status == "failed"
    assert jobs["build"].failure_reason == "script_failure"
    assert jobs["test"].status == "skipped"
    assert jobs["cleanup"].status == "success"
    assert jobs["notify"].status == "success"
    log = lab.trace(project, jobs["build"])
    assert "about to fail" in log
    assert "never printed" not in log
    assert "after_script still runs" in log
    assert "ERROR: Job failed: exit code 3" in log
    assert "always job ran" in lab.trace(project, jobs["cleanup"])
    assert "on_failure job ran" in lab.trace(project, jobs["notify"])


MASKING = """
secret:
  tags: [@TAG@]
  script:
    - 'echo "plain: $DEPLOY_PASSWORD"'
    - 'echo "twice:$DEPLOY_PASSWORD:$DEPLOY_PASSWORD"'
    - 'echo "job token: $CI_JOB_TOKEN"'
    - 'echo "registry password: $CI_REGISTRY_PASSWORD"'
    - cat "$KUBECONFIG"
    - echo "$DEPLOY_PASSWORD" >&2
"""


def test_masked_variables_never_reach_the_trace(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-mask")
    lab.register(config, tags=(tag,))
    project = lab.project(MASKING.replace("@TAG@", tag))
    secret = "Zx9-masked-deploy-pw-7781"
    project.variables.create({"key": "DEPLOY_PASSWORD", "value": secret, "masked": True})
    project.variables.create(
        {"key": "KUBECONFIG", "value": "server: https://k8s.local\n", "variable_type": "file"}
    )
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    assert lab.wait_pipeline(project, pipeline.id).status == "success"
    log = lab.trace(project, lab.jobs(project, pipeline.id)["secret"])
    assert secret not in log
    assert "plain: [MASKED]" in log
    assert "twice:[MASKED]:[MASKED]" in log
    assert "job token: [MASKED]" in log
    assert "registry password: [MASKED]" in log
    assert "server: https://k8s.local" in log  # file variables are written and readable
    assert not contains_secret(log), "a token-shaped string leaked into the trace"


TIMEOUT = """
slow:
  tags: [@TAG@]
  timeout: 5s
  script:
    - echo started
    - sleep 60
    - echo "not reached"
  after_script: [echo "after_script after the timeout"]
"""


def test_job_timeout_is_job_execution_timeout(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-timeout")
    lab.register(config, tags=(tag,))
    project = lab.project(TIMEOUT.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["slow"]
    assert job.status == "failed"
    assert job.failure_reason == "job_execution_timeout"
    log = lab.trace(project, job)
    assert "started" in log
    assert "not reached" not in log
    assert "after_script after the timeout" in log
    assert "ERROR: Job failed: execution took longer than 5s seconds" in log
    assert handle.results[0].failure_reason == "job_execution_timeout"


TAGGED = """
on-alpha:
  tags: [@TAG@-alpha]
  script: [echo alpha]
on-beta:
  tags: [@TAG@-beta]
  script: [echo beta]
also-alpha:
  tags: [@TAG@-alpha]
  script: [echo alpha again]
"""


def test_two_runners_take_only_jobs_matching_their_tags(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("tags")
    alpha = lab.register(config, tags=(f"{tag}-alpha",), name=lab.sandbox.unique("alpha"))
    beta = lab.register(config, tags=(f"{tag}-beta",), name=lab.sandbox.unique("beta"))
    project = lab.project(TAGGED.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    assert lab.wait_pipeline(project, pipeline.id).status == "success"
    ran_on = {r.name: r.runner for r in handle.results}
    assert ran_on == {"on-alpha": alpha, "also-alpha": alpha, "on-beta": beta}
    jobs = lab.jobs(project, pipeline.id)
    assert jobs["on-beta"].runner["description"] == beta
    assert {jobs["on-alpha"].runner["description"], jobs["also-alpha"].runner["description"]} == {
        alpha
    }


CONCURRENT = "\n".join(
    f"""
par-{n}:
  tags: [@TAG@]
  script:
    - sleep 2
    - echo done-{n}
"""
    for n in range(4)
)


def _stamp(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_concurrent_four_runs_four_jobs_at_once(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-par")
    lab.register(config, tags=(tag,), globals_={"concurrent": 4})
    project = lab.project(CONCURRENT.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    assert lab.wait_pipeline(project, pipeline.id).status == "success"
    jobs = lab.jobs(project, pipeline.id).values()
    starts = [_stamp(j.started_at) for j in jobs]
    ends = [_stamp(j.finished_at) for j in jobs]
    assert len(starts) == 4
    # Every job started before any job finished: all four ran at the same time (GitLab's own
    # timestamps, and the runner's, agree).
    assert max(starts) < min(ends)
    results = handle.results
    assert max(r.started_at for r in results) < min(r.finished_at for r in results)


@pytest.mark.parametrize(
    ("globals_", "runner"),
    [({"concurrent": 1}, {}), ({"concurrent": 4}, {"limit": 1, "request_concurrency": 2})],
    ids=["concurrent-1", "limit-1"],
)
def test_one_job_at_a_time_with_concurrent_1_or_limit_1(
    lab: Lab, runner_of: Start, globals_: dict[str, int], runner: dict[str, int]
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("shell-serial")
    lab.register(config, tags=(tag,), globals_=globals_, runner=runner)
    ci = "\n".join(f"s-{n}:\n  tags: [{tag}]\n  script: [sleep 1]\n" for n in range(2))
    project = lab.project(ci)
    lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    first, second = sorted(handle.results, key=lambda r: r.started_at)
    assert first.finished_at <= second.started_at


def test_jobs_run_as_the_configured_user_with_pre_and_post_build_scripts(
    lab: Lab, runner_of: Start
) -> None:
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    user = "nobody"
    assert pwd.getpwnam(user)
    # builds_dir must be reachable by that user, as with gitlab-runner run --user.
    builds = Path(tempfile.mkdtemp(prefix="runnerctl-builds-"))
    builds.chmod(0o755)
    try:
        config = lab.config()
        tag = lab.sandbox.unique("as-user")
        lab.register(
            config,
            tags=(tag,),
            runner={
                "builds_dir": str(builds),
                "pre_build_script": "echo pre-build as $(id -un)",
                "post_build_script": "echo post-build",
            },
        )
        ci = f"""
who:
  tags: [{tag}]
  services: [postgres:16]
  script:
    - id -un
    - echo written > by-user.txt && ls -l by-user.txt
"""
        project = lab.project(ci)
        pipeline = lab.run_pipeline(project)
        handle = runner_of(config, once=True, user=user)
        assert handle.wait(60)
        job = lab.jobs(project, pipeline.id)["who"]
        log = lab.trace(project, job)
        assert job.status == "success", log
        assert f"pre-build as {user}" in log
        assert f"\n{user}\n" in log
        assert f" {user} " in log.split("ls -l by-user.txt")[-1]  # the file belongs to the user
        assert log.index("pre-build as") < log.index("$ id -un") < log.index("post-build")
        assert "services are not started by the stand-in runner: postgres:16" in log
        assert str(builds) in log

        # The next job fetches into the same build dir, which now belongs to the job's user.
        again = lab.run_pipeline(project)
        handle = runner_of(config, once=True, user=user)
        assert handle.wait(60)
        second = lab.jobs(project, again.id)["who"]
        log = lab.trace(project, second)
        assert second.status == "success", log
        assert "dubious ownership" not in log
    finally:
        shutil.rmtree(builds, ignore_errors=True)


def test_output_limit_truncates_the_trace_in_patches(lab: Lab, runner_of: Start) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("limit")
    lab.register(config, tags=(tag,), runner={"output_limit": 300})  # KiB
    ci = f"""
chatty:
  tags: [{tag}]
  script:
    - for i in $(seq 1 12000); do echo "line $i of a chatty job that logs a lot"; done
    - echo "still running after the limit"
"""
    project = lab.project(ci)
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["chatty"]
    assert job.status == "success"  # the job goes on; only its log stops
    raw = bytes(project.jobs.get(job.id).trace())
    limit = 300 * 1024
    assert limit < len(raw) < limit + 300
    log = raw.decode("utf-8", "replace")
    assert "line 1 of a chatty job" in log
    assert f"Job's log exceeded limit of {limit} bytes." in log
    assert "still running after the limit" not in log
