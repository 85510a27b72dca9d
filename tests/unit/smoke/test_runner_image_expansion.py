"""The stand-in runner expands variables in the job's image name, as gitlab-runner does.

The smoke template's jobs say ``image: $PYTHON_IMAGE``; without the expansion the docker
executor would look for an image literally called ``$PYTHON_IMAGE``.
"""

from __future__ import annotations

from provisioner.sandbox_runner.executors import expand_variables
from provisioner.sandbox_runner.job import GitInfo, Job, Variable


def _job(*variables: Variable) -> Job:
    return Job(
        id=1,
        token="t",
        name="test",
        stage="test",
        project_id=1,
        project_path="root/p",
        git=GitInfo("http://x/root/p.git", "main", "0" * 40, "branch", (), 0),
        timeout=60,
        variables=variables,
        steps=(),
        image="$PYTHON_IMAGE",
        image_entrypoint=None,
        image_pull_policy=(),
        artifacts=(),
        dependencies=(),
        failure_reasons=frozenset(),
        token_mask_prefixes=(),
    )


def test_image_name_expands_job_variables_later_definitions_win() -> None:
    job = _job(
        Variable("PYTHON_IMAGE", "python:3.9"),
        Variable("PYTHON_IMAGE", "runnerctl/python:3.11"),
        Variable("TAG", "3.11"),
    )
    assert expand_variables("$PYTHON_IMAGE", job) == "runnerctl/python:3.11"
    assert expand_variables("runnerctl/python:${TAG}", job) == "runnerctl/python:3.11"
    assert expand_variables("plain:1", job) == "plain:1"


def test_unknown_variable_expands_to_nothing_so_the_runner_default_applies() -> None:
    assert expand_variables("$NOT_SET", _job()) == ""
