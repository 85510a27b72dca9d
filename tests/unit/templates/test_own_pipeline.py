"""runnerctl's own `.gitlab-ci.yml`: GitLab's CI schema, the component it is built on, and the
README's make targets in every script it adds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from provisioner.sandbox.ci import load_pipeline
from provisioner.sandbox.ci.inputs import load_with_inputs
from provisioner.sandbox.ci.loading import CiLoader

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / ".." / "shared" / "reference" / "gitlab-ci-schema" / "gitlab-ci.schema.json"
OWN_JOBS = {"lint", "integration", "e2e"}


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if type(node).__name__ == "Reference":
        return list(node.path)
    return node


def _own() -> dict[str, Any]:
    doc = yaml.load((ROOT / ".gitlab-ci.yml").read_text(), Loader=CiLoader)  # noqa: S506
    assert isinstance(doc, dict)
    return doc


def _read(name: str) -> str | None:
    path = ROOT / name
    return path.read_text() if path.is_file() else None


def _pipeline(**variables: str) -> Any:
    return load_pipeline(
        (ROOT / ".gitlab-ci.yml").read_text(), ref="main", variables=variables, read_file=_read
    )


def test_the_file_and_the_merged_configuration_validate_against_the_schema() -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    own = _own()
    assert [e.message for e in validator.iter_errors(_plain(own))] == []
    include = own["include"][0]
    component = load_with_inputs(
        (ROOT / include["local"]).read_text(), include["inputs"], "`component`"
    )
    merged = {**component, **{k: v for k, v in own.items() if k != "include"}}
    assert [e.message for e in validator.iter_errors(_plain(merged))] == []


def test_lint_and_unit_tests_then_the_component_builds_signs_verifies_and_publishes() -> None:
    pipeline = _pipeline()
    stages = [job.stage for job in pipeline.jobs]
    order = list(pipeline.stages)
    names = {job.name for job in pipeline.jobs}
    assert {"lint", "test", "build", "sign", "verify", "publish", "consumer_verify"} <= names
    assert order.index("lint") < order.index("test") < order.index("build")
    assert order.index("verify") < order.index("integration") < order.index("publish")
    assert set(stages) <= set(order)
    assert pipeline.job("build").tags == ("runnerctl",)
    assert dict(pipeline.job("build").variables)["RELEASE_PACKAGE_NAME"] == "runnerctl"
    test = pipeline.job("test")
    assert test.artifacts is not None
    assert set(test.artifacts.reports) >= {"junit", "coverage_report"}


def test_docker_jobs_are_tagged_and_can_be_left_out() -> None:
    pipeline = _pipeline()
    for name in ("integration", "e2e"):
        assert pipeline.job(name).tags == ("docker-host",)
        assert pipeline.job(name).variables["RUNNERCTL_SETUP"] == "all"
    skipped = {job.name for job in _pipeline(RUNNERCTL_INTEGRATION="skip").jobs}
    assert not skipped & {"integration", "e2e"}


def test_scripts_call_the_make_targets_the_readme_gives() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    pipeline = _pipeline()
    commands = [line for name in OWN_JOBS for line in pipeline.job(name).script]
    commands.append(pipeline.job("test").script[0])
    for command in commands:
        match = re.match(r"^make (\w+)", command.strip())
        assert match, command
        target = match.group(1)
        assert f"`make {target}`" in readme, target
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
