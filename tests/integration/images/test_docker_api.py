"""The docker adapter against the real engine: run (streamed, timed out, env, volumes, network)."""

from __future__ import annotations

import uuid

import pytest

from provisioner.docker_api import DockerAPI, DockerError, Mount
from provisioner.images import BaseResult

pytestmark = [pytest.mark.docker]


def test_run_streams_output_and_passes_environment(
    docker_api: DockerAPI, bases: dict[str, BaseResult]
) -> None:
    lines: list[str] = []
    result = docker_api.run(
        bases["bookworm"].tag,
        [
            "sh",
            "-c",
            'echo one; sleep 0.3; echo "two $GREETING" >&2; sleep 0.3; printf three; exit 3',
        ],
        environment={"GREETING": "hello"},
        on_output=lines.append,
    )
    assert result.exit_code == 3
    assert not result.ok
    assert lines == ["one", "two hello", "three"]
    assert result.output == "one\ntwo hello\nthree"


def test_run_times_out_and_kills(docker_api: DockerAPI, bases: dict[str, BaseResult]) -> None:
    result = docker_api.run(bases["bookworm"].tag, ["sleep", "60"], timeout=1)
    assert result.timed_out
    assert not result.ok


def test_run_network_modes_and_volumes(docker_api: DockerAPI, bases: dict[str, BaseResult]) -> None:
    image = bases["bookworm"].tag
    offline = docker_api.run(image, ["ls", "/sys/class/net"])
    assert offline.output.split() == ["lo"]
    bridged = docker_api.run(image, ["ls", "/sys/class/net"], network_mode="bridge")
    assert "eth0" in bridged.output.split()
    name = f"runnerctl-test-{uuid.uuid4().hex[:8]}"
    docker_api.create_volume(name)
    try:
        wrote = docker_api.run(image, ["sh", "-c", "echo kept > /v/f"], mounts=[Mount(name, "/v")])
        assert wrote.ok
        read = docker_api.run(image, ["cat", "/v/f"], mounts=[Mount(name, "/v", read_only=True)])
        assert read.output.strip() == "kept"
        denied = docker_api.run(
            image, ["sh", "-c", "echo x > /v/f"], mounts=[Mount(name, "/v", read_only=True)]
        )
        assert denied.exit_code != 0
    finally:
        assert docker_api.remove_volume(name)
    assert not docker_api.remove_volume(name)


def test_missing_things(docker_api: DockerAPI, bases: dict[str, BaseResult]) -> None:
    assert docker_api.run(bases["bookworm"].tag, ["no-such-command"]).exit_code == 127
    assert docker_api.inspect_image("runnerctl-test/absent:1") is None
    assert not docker_api.remove_image("runnerctl-test/absent:1")
    with pytest.raises(DockerError) as raised:
        docker_api.run("runnerctl-test/absent:1", ["true"])
    assert raised.value.exit_code == 6
    assert raised.value.hint
