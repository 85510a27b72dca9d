"""The python-release CI/CD component: every combination of its closed inputs, interpolated
by the sandbox as GitLab does, validates against GitLab's CI schema and yields the jobs the
inputs ask for."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from provisioner.sandbox.ci import CiConfigError, load_pipeline
from provisioner.sandbox.ci.inputs import load_with_inputs, split_header

ROOT = Path(__file__).resolve().parents[3]
COMPONENT = ROOT / "templates" / "python-release.yml"
SCHEMA = ROOT / ".." / "shared" / "reference" / "gitlab-ci-schema" / "gitlab-ci.schema.json"
CLOSED = {
    "signing": ["keypair", "keyless", "none"],
    "attest": ["pep740", "none"],
    "publish": ["gitlab", "pypi", "none"],
    "verify_as_consumer": [True, False],
}
COMBINATIONS = [
    dict(zip(CLOSED, values, strict=True)) for values in itertools.product(*CLOSED.values())
]
WHERE = "`templates/python-release.yml`"


def _plain(node: Any) -> Any:
    """!reference tags as the lists GitLab's schema expects."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if type(node).__name__ == "Reference":
        return list(node.path)
    return node


def _ids(combo: dict[str, Any]) -> str:
    return "-".join(f"{key}={value}" for key, value in combo.items())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def test_every_closed_input_declares_its_options_and_every_input_is_described() -> None:
    declared, _ = split_header(COMPONENT.read_text(), WHERE)
    assert declared is not None
    assert set(CLOSED) <= set(declared)
    for name, values in CLOSED.items():
        spec = declared[name]
        if spec.type == "boolean":
            assert values == [True, False]
        else:
            assert spec.options == tuple(values)
    assert all(spec.description for spec in declared.values())
    assert not [spec.name for spec in declared.values() if spec.required]  # all have defaults
    assert declared["signing"].default == "keypair"  # offline, self-managed: the default
    assert declared["image"].default == "runnerctl/python:3.11"


@pytest.mark.parametrize("combo", COMBINATIONS, ids=_ids)
def test_each_combination_validates_against_the_schema(
    combo: dict[str, Any], validator: jsonschema.Draft7Validator
) -> None:
    # runner_tags is open: the schema wants at least one tag when `tags:` is present.
    doc = load_with_inputs(COMPONENT.read_text(), {**combo, "runner_tags": ["docker"]}, WHERE)
    errors = [error.message for error in validator.iter_errors(_plain(doc))]
    assert errors == []


def _jobs(combo: dict[str, Any], **variables: str) -> set[str]:
    consumer = yaml.safe_dump(
        {"include": [{"local": "templates/python-release.yml", "inputs": combo}]}
    )
    spec = load_pipeline(
        consumer,
        ref="main",
        variables=variables,
        read_file={"templates/python-release.yml": COMPONENT.read_text()}.get,
    )
    return {job.name for job in spec.jobs}


@pytest.mark.parametrize("combo", COMBINATIONS, ids=_ids)
def test_each_combination_creates_the_jobs_it_asks_for(combo: dict[str, Any]) -> None:
    signing, attest, publish = combo["signing"], combo["attest"], combo["publish"]
    expected = {"test", "build"}
    expected |= {"sign"} if signing == "keypair" else set()
    expected |= {"sign-keyless"} if signing == "keyless" else set()
    expected |= {"attest"} if attest == "pep740" else set()
    signed = signing != "none" or attest == "pep740"
    expected |= {"verify"} if signed else set()
    expected |= {"publish"} if publish == "gitlab" else set()
    expected |= {"publish-pypi"} if publish == "pypi" else set()
    expected |= {"publish_signatures"} if signed and publish != "none" else set()
    if combo["verify_as_consumer"] and publish != "none":
        expected.add("consumer_verify")
    assert _jobs(combo) == expected


def test_keyless_jobs_ask_for_their_oidc_tokens_and_fail_early_with_the_hint() -> None:
    combo = {"signing": "keyless", "attest": "pep740", "publish": "pypi"}
    consumer = yaml.safe_dump(
        {"include": [{"local": "templates/python-release.yml", "inputs": combo}]}
    )
    spec = load_pipeline(
        consumer,
        ref="main",
        variables={},
        read_file={"templates/python-release.yml": COMPONENT.read_text()}.get,
    )
    for name in ("sign-keyless", "attest"):
        job = spec.job(name)
        assert dict(job.id_tokens["SIGSTORE_ID_TOKEN"]) == {"aud": "sigstore"}
        first = job.script[0]
        assert 'if [ -z "${SIGSTORE_ID_TOKEN:-}" ]' in first
        assert "SIGSTORE_ID_TOKEN: {aud: sigstore}" in first
        assert "exit 1" in first
    pypi = spec.job("publish-pypi")
    assert dict(pypi.id_tokens["PYPI_ID_TOKEN"]) == {"aud": "pypi"}
    assert any("--attestations" in line for line in pypi.script)
    assert any("pypi_attestations sign" in line for line in spec.job("attest").script)
    # The identity GitLab documents: instance, project, //, CI config path, @, ref path.
    identity = "\n".join(spec.job("sign-keyless").before_script)
    assert "//${CI_CONFIG_PATH:-.gitlab-ci.yml}@${REF_PATH}" in identity


def test_a_tag_pipeline_publishes_the_tag_and_a_branch_a_unique_dev_version() -> None:
    text = COMPONENT.read_text()
    doc = load_with_inputs(text, {}, WHERE)
    before = "\n".join(str(line) for line in doc[".python-job"]["before_script"])
    assert 'RELEASE_VERSION="${CI_COMMIT_TAG#v}"' in before
    assert 'RELEASE_VERSION="${base}.dev${CI_PIPELINE_IID}"' in before


def test_stage_prefix_and_package_dir_reach_every_job() -> None:
    combo = {"stage_prefix": "release-", "package_dir": "pkg"}
    doc = load_with_inputs(COMPONENT.read_text(), combo, WHERE)
    assert doc["stages"][0] == "release-test"
    assert doc["build"]["stage"] == "release-build"
    assert doc["build"]["artifacts"]["paths"] == ["pkg/dist/"]
    assert doc["test"]["artifacts"]["reports"]["junit"] == "pkg/report.xml"


def test_a_closed_input_outside_its_options_is_refused() -> None:
    with pytest.raises(CiConfigError, match="`signing` input: `gpg` cannot be used"):
        load_with_inputs(COMPONENT.read_text(), {"signing": "gpg"}, WHERE)
