"""The docker executor: jobs in the locally built job image, reaching the sandbox on loopback.

Job containers use ``network_mode = "host"`` (set in the registered config.toml), so a job
reaches the sandbox at the same 127.0.0.1 URL GitLab hands out in ``CI_SERVER_URL``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.docker_api import DockerAPI
from provisioner.sandbox_runner import RunnerHandle
from tests.helpers import wait_until
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox_runner.conftest import Lab

pytestmark = [pytest.mark.sandbox, pytest.mark.docker]

Start = Callable[..., RunnerHandle]


@pytest.fixture
def docker_api() -> DockerAPI:
    return DockerAPI.from_env()


@pytest.fixture
def cache_volume(lab: Lab, docker_api: DockerAPI) -> Iterator[str]:
    """A named volume only this test uses (removed afterwards)."""
    name = f"runnerctl-runnertest-{lab.sandbox.unique('cache')}-{int(time.time())}"
    yield name
    docker_api.remove_volume(name)


def _docker(cache_volume: str, **extra: object) -> dict[str, object]:
    return {"network_mode": "host", "volumes": [f"{cache_volume}:/cache"], **extra}


PIPELINE = """
stages: [build, test, publish]
build:
  stage: build
  tags: [@TAG@]
  script:
    - python3 --version
    - mkdir -p dist && python3 -c "print('wheel-ish')" > dist/pkg.txt
    - echo "from build $CI_JOB_ID" > /cache/seen-by-build
  artifacts:
    paths: [dist/]
test:
  stage: test
  tags: [@TAG@]
  script:
    - cat dist/pkg.txt
    - cat /cache/seen-by-build
    - getent hosts sandbox.example.test
    - df -k /dev/shm | tail -1
    - cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes
    - >
      python3 -c "import os, json, urllib.request as u;
      env = os.environ;
      r = u.Request(env['CI_API_V4_URL'] + '/job', headers={'JOB-TOKEN': env['CI_JOB_TOKEN']});
      print('api says job', json.load(u.urlopen(r))['name'])"
    - echo ok > tested.txt
  artifacts:
    paths: [tested.txt]
publish:
  stage: publish
  tags: [@TAG@]
  image: runnerctl/python:3.11
  script:
    - test -f dist/pkg.txt && cat tested.txt
    - echo "in $CI_PROJECT_DIR as $(id -un)"
"""


def test_three_stages_in_the_job_image(
    lab: Lab, runner_of: Start, job_image: str, cache_volume: str, docker_api: DockerAPI
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("docker-3")
    lab.register(
        config,
        executor="docker",
        tags=(tag,),
        docker=_docker(
            cache_volume,
            extra_hosts=["sandbox.example.test:127.0.0.1"],
            shm_size=96 * 1024 * 1024,
            memory="512m",
            cpus="1",
        ),
    )
    project = lab.project(PIPELINE.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(180)
    done = lab.wait_pipeline(project, pipeline.id)
    jobs = lab.jobs(project, pipeline.id)
    assert done.status == "success", {n: lab.trace(project, j)[-600:] for n, j in jobs.items()}
    build_log = lab.trace(project, jobs["build"])
    assert f"Using Docker executor with image {job_image}" in build_log
    assert "Python 3.11." in build_log
    test_log = lab.trace(project, jobs["test"])
    assert "wheel-ish" in test_log
    assert f"from build {jobs['build'].id}" in test_log  # the named volume is shared
    assert "127.0.0.1       sandbox.example.test" in test_log  # extra_hosts
    assert "98304" in test_log  # shm_size = 96m, in KiB as df shows it
    assert str(512 * 1024 * 1024) in test_log  # memory limit
    assert "api says job test" in test_log  # the job reached the sandbox with its token
    publish_log = lab.trace(project, jobs["publish"])
    assert f"in /builds/{project.path_with_namespace} as root" in publish_log
    # Every job container is gone.
    for job in jobs.values():
        assert (
            docker_api.containers_with_label(f"com.gitlab.gitlab-runner.job.url={job.web_url}")
            == ()
        )


TOOLS = """
stages: [test]
missing-tool:
  tags: [@TAG@]
  script:
    - echo "looking for a tool"
    - terraform version
apt-as-user:
  tags: [@TAG@]
  script:
    - id -un
    - apt-get install -y jq
"""


def test_missing_tool_and_apt_as_non_root_fail_with_the_real_messages(
    lab: Lab, runner_of: Start, job_image: str, cache_volume: str
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("docker-user")
    lab.register(config, executor="docker", tags=(tag,), docker=_docker(cache_volume, user="ci"))
    project = lab.project(TOOLS.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(120)
    jobs = lab.jobs(project, pipeline.id)
    missing = jobs["missing-tool"]
    assert missing.status == "failed"
    assert missing.failure_reason == "script_failure"
    log = lab.trace(project, missing)
    assert "terraform: command not found" in log
    assert "ERROR: Job failed: exit code 127" in log
    apt = jobs["apt-as-user"]
    assert apt.status == "failed"
    log = lab.trace(project, apt)
    assert "\nci\n" in log
    assert (
        "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)"
        in log
    )
    assert "are you root?" in log
    assert "ERROR: Job failed: exit code 100" in log


ONE_JOB = """
job:
  tags: [@TAG@]
  image: @IMAGE@
  script: [echo should not run]
"""


@pytest.mark.parametrize(
    ("policy", "image", "reason", "text"),
    [
        (
            "never",
            "runnerctl/not-built-here:1",
            "image_pull_failure",
            'failed to pull image "runnerctl/not-built-here:1" with specified policies [never]: '
            "Error response from daemon: No such image: runnerctl/not-built-here:1",
        ),
        (
            "if-not-present",
            "runnerctl/not-built-here:2",
            "image_pull_failure",
            'failed to pull image "runnerctl/not-built-here:2" with specified policies '
            "[if-not-present]",
        ),
        (
            "never",
            "alpine:3.20",
            "script_failure",  # runner_configuration_error, mapped as gitlab-runner maps it
            'The "alpine:3.20" image is not present on list of allowed images:\n- runnerctl/*',
        ),
    ],
)
def test_image_problems_fail_before_the_script(  # noqa: PLR0917
    lab: Lab,
    runner_of: Start,
    job_image: str,
    cache_volume: str,
    policy: str,
    image: str,
    reason: str,
    text: str,
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("docker-img")
    lab.register(
        config,
        executor="docker",
        tags=(tag,),
        docker=_docker(cache_volume, pull_policy=[policy], allowed_pull_policies=[policy]),
    )
    project = lab.project(ONE_JOB.replace("@TAG@", tag).replace("@IMAGE@", image))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(120)
    job = lab.jobs(project, pipeline.id)["job"]
    assert job.status == "failed"
    assert job.failure_reason == reason
    log = lab.trace(project, job)
    assert text in log
    assert "should not run" not in log.replace("$ echo should not run", "")


def test_missing_docker_socket_is_a_system_failure(
    lab: Lab, runner_of: Start, cache_volume: str
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("docker-nosock")
    socket = f"unix://{lab.tmp}/no-such-docker.sock"
    lab.register(config, executor="docker", tags=(tag,), docker=_docker(cache_volume, host=socket))
    project = lab.project(ONE_JOB.replace("@TAG@", tag).replace("@IMAGE@", "runnerctl/python:3.11"))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config, once=True)
    assert handle.wait(60)
    job = lab.jobs(project, pipeline.id)["job"]
    assert job.status == "failed"
    assert job.failure_reason == "runner_system_failure"
    log = lab.trace(project, job)
    expected = f"Cannot connect to the Docker daemon at {socket}. Is the docker daemon running?"
    assert f"ERROR: Job failed (system failure): {expected}" in log


SLEEPER = """
sleeper:
  tags: [@TAG@]
  script:
    - echo "sleeping"
    - for i in $(seq 1 120); do echo "tick $i"; sleep 1; done
"""


def test_canceled_job_container_is_killed_and_removed(
    lab: Lab, runner_of: Start, job_image: str, cache_volume: str, docker_api: DockerAPI
) -> None:
    config = lab.config()
    tag = lab.sandbox.unique("docker-cancel")
    lab.register(config, executor="docker", tags=(tag,), docker=_docker(cache_volume))
    project = lab.project(SLEEPER.replace("@TAG@", tag))
    pipeline = lab.run_pipeline(project)
    handle = runner_of(config)
    deadline = time.monotonic() + 60
    job = lab.jobs(project, pipeline.id)["sleeper"]
    wait_until(
        lambda: "sleeping" in lab.trace(project, job),
        timeout=60,
        interval=0.3,
        message="the job never started sleeping",
    )
    assert docker_api.containers_with_label(f"com.gitlab.gitlab-runner.job.url={job.web_url}") != ()
    job.cancel()
    wait_until(
        lambda: handle.results,
        timeout=max(deadline - time.monotonic(), 0),
        interval=0.2,
        message="the canceled job never ended",
    )
    assert [r.state.value for r in handle.results] == ["canceled"]
    assert docker_api.containers_with_label(f"com.gitlab.gitlab-runner.job.url={job.web_url}") == ()
    assert project.jobs.get(job.id).status == "canceled"


def test_adapter_long_lived_container_lifecycle(
    lab: Lab, job_image: str, docker_api: DockerAPI
) -> None:
    from provisioner.docker_api import ContainerSpec, DockerError

    label = f"io.runnerctl.adaptertest={lab.sandbox.unique('adapter')}-{int(time.time())}"
    key, _, value = label.partition("=")
    container = docker_api.create_container(
        ContainerSpec(
            image=job_image,
            command=["bash", "-c", "echo up; echo err >&2; sleep 60"],
            labels={key: value},
            shm_size=32 * 1024 * 1024,
            mem_limit=128 * 1024 * 1024,
            nano_cpus=500_000_000,
        )
    )
    try:
        docker_api.start_container(container)
        assert docker_api.wait_container(container, timeout=0.5) is None  # still running
        assert docker_api.containers_with_label(label) == (container,)
        assert docker_api.kill_container(container) is True
        assert docker_api.wait_container(container, timeout=10) == 137
        assert docker_api.kill_container(container) is False  # not running any more
        # stdout and stderr are separate streams: their relative order is not kept.
        assert sorted("".join(docker_api.follow_output(container)).splitlines()) == ["err", "up"]
    finally:
        assert docker_api.remove_container(container) is True
    assert docker_api.remove_container(container) is False
    assert docker_api.containers_with_label(label) == ()
    with pytest.raises(DockerError, match="Cannot reach the Docker daemon at unix:///"):
        DockerAPI.from_host(f"unix://{lab.tmp}/absent.sock")


BRIDGE = """
on-bridge:
  tags: [@TAG@]
  script:
    - >
      python3 -c "import os, json, urllib.request as u;
      env = os.environ;
      r = u.Request(env['CI_API_V4_URL'] + '/job', headers={'JOB-TOKEN': env['CI_JOB_TOKEN']});
      print('reached', env['CI_SERVER_HOST'], 'as job', json.load(u.urlopen(r))['name'])"
"""


def test_bridge_network_reaches_a_sandbox_bound_to_the_bridge_gateway(
    tmp_path: Path, job_image: str, docker_api: DockerAPI
) -> None:
    """The other set-up: no host network; the sandbox listens on the docker bridge gateway."""
    from provisioner.sandbox import start_background

    gateway = docker_api.bridge_gateway()
    handle = start_background(tmp_path / "gitlab", host=gateway, port=0)
    try:
        lab = Lab(
            sandbox=RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle),
            tmp=tmp_path,
        )
        config = lab.config()
        lab.register(config, executor="docker", tags=("bridge",), docker={"volumes": []})
        assert "network_mode" not in config.read_text()  # docker's default bridge network
        project = lab.project(BRIDGE.replace("@TAG@", "bridge"))
        pipeline = lab.run_pipeline(project)
        runner = lab.start(config, once=True)
        try:
            assert runner.wait(120)
        finally:
            runner.stop(force=True, timeout=5)
        job = lab.jobs(project, pipeline.id)["on-bridge"]
        log = lab.trace(project, job)
        assert job.status == "success", log
        assert f"reached {gateway} as job on-bridge" in log
    finally:
        handle.stop()
