"""The smoke template: GitLab's CI schema, the sandbox's processor, stamping, package data."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from provisioner.sandbox.ci import load_pipeline
from provisioner.smoke.service import STAGES
from provisioner.smoke.template import template_digest, template_files

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference"
TEMPLATE = Path(__file__).resolve().parents[3] / "provisioner" / "smoke" / "template"


class _GitLabLoader(yaml.SafeLoader):
    """YAML loader that knows GitLab's !reference tag (a list of strings, as the schema wants)."""


_GitLabLoader.add_constructor(
    "!reference",
    lambda loader, node: loader.construct_sequence(node),  # type: ignore[arg-type]
)


def _ci_text() -> str:
    return template_files()[".gitlab-ci.yml"]


def _ci() -> dict[str, Any]:
    doc = yaml.load(_ci_text(), Loader=_GitLabLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(doc, dict)
    return doc


def _pipeline(**variables: str) -> Any:
    return load_pipeline(
        _ci_text(),
        ref="main",
        variables={"SMOKE_RUNNER_TAG": "rt-1", **variables},
        read_file=lambda _name: None,
    )


def _stamp_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke_stamp", TEMPLATE / "ci" / "stamp.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_template_ships_package_tests_readme_and_ci_scripts() -> None:
    files = template_files()
    assert {
        ".gitlab-ci.yml",
        "pyproject.toml",
        "README.md",
        "src/runnerctl_smoke/__init__.py",
        "tests/test_smoke_package.py",
        "ci/stamp.py",
        "ci/pyverify.py",
    } <= set(files)
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    project = tomllib.loads(files["pyproject.toml"])["project"]
    assert project["urls"]["Homepage"].startswith("https://")
    assert project["version"] == "0.0.0"


def test_digest_changes_with_any_file() -> None:
    files = template_files()
    changed = {**files, "README.md": files["README.md"] + "x"}
    assert template_digest(files) == template_digest(dict(files))
    assert template_digest(files) != template_digest(changed)


def test_gitlab_ci_validates_against_gitlab_ci_schema() -> None:
    schema = json.loads((REFERENCE / "gitlab-ci-schema" / "gitlab-ci.schema.json").read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(_ci()))
    assert errors == []


def test_schema_catches_a_broken_copy() -> None:
    # The schema check above can fail: a job with an unknown keyword does not validate.
    schema = json.loads((REFERENCE / "gitlab-ci-schema" / "gitlab-ci.schema.json").read_text())
    broken = _ci()
    broken["build"]["scirpt"] = ["true"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_stages_and_hidden_templates() -> None:
    doc = _ci()
    assert tuple(doc["stages"]) == STAGES
    assert doc[".python-job"]["image"] == "$PYTHON_IMAGE"
    assert doc[".python+cosign-job"]["extends"] == ".python-job"
    assert "cache" in doc[".python-job"]
    assert any("PIP_CACHE_DIR" in line for line in doc[".python-job"]["before_script"])
    assert any("NORMALIZED_NAME" in line for line in doc[".python-job"]["before_script"])


def test_every_job_lands_on_the_runner_under_test_in_key_mode() -> None:
    pipeline = _pipeline()
    assert [job.stage for job in pipeline.jobs] == list(STAGES)
    assert {job.tags for job in pipeline.jobs} == {("rt-1",)}
    assert "sign-keyless" not in {job.name for job in pipeline.jobs}
    sign = pipeline.job("sign")
    assert not sign.id_tokens
    assert any("--key" in line and "$COSIGN_SIGN_FLAGS" in line for line in sign.script)
    assert pipeline.job("consumer_verify").dependencies == ()


def test_keyless_mode_uses_a_sigstore_id_token_and_pins_the_identity() -> None:
    pipeline = _pipeline(SMOKE_SIGNING="keyless")
    names = [job.name for job in pipeline.jobs]
    assert "sign" not in names
    assert "sign-keyless" in names
    job = pipeline.job("sign-keyless")
    assert dict(job.id_tokens["SIGSTORE_ID_TOKEN"]) == {"aud": "sigstore"}
    identity = "\n".join(job.before_script)
    assert (
        'CERTIFICATE_IDENTITY="https://${CI_SERVER_HOST}/${CI_PROJECT_PATH}//'
        '${CI_CONFIG_PATH:-.gitlab-ci.yml}@${REF_PATH}"' in identity
    )
    assert 'CERTIFICATE_OIDC_ISSUER="$CI_SERVER_URL"' in identity


def test_cosign_flags_are_portable_between_2x_and_3x() -> None:
    before = "\n".join(_pipeline().job("sign").before_script)
    assert "--tlog-upload=false --new-bundle-format=false" in before
    assert "--use-signing-config=false" in before  # added only when cosign knows it (3.x)
    verify = "\n".join(_pipeline().job("verify").script)
    assert verify.count("--insecure-ignore-tlog") == 2


def test_no_job_puts_the_job_token_on_a_command_line() -> None:
    for job in _pipeline().jobs:
        for line in (*job.before_script, *job.script):
            if "CI_JOB_TOKEN" in line and "curl" in line:
                assert "-H @-" in line
                assert "printf 'JOB-TOKEN: %s" in line


def test_stamp_changes_exactly_three_keys_and_keeps_the_authors() -> None:
    stamp = _stamp_module()
    text = (TEMPLATE / "pyproject.toml").read_text()
    result = stamp.stamp(text, "my-pkg", "0.1.0.dev7", "https://gl.example/grp/my-pkg")
    data = tomllib.loads(result)
    assert data["project"]["name"] == "my-pkg"
    assert data["project"]["version"] == "0.1.0.dev7"
    assert data["project"]["urls"]["Homepage"] == "https://gl.example/grp/my-pkg"
    # sed's greedy name = ".*" would have rewritten the authors' name and dropped the email.
    assert data["project"]["authors"] == [
        {"name": "runnerctl smoke", "email": "smoke@example.invalid"}
    ]
    assert result.count("\n") == text.count("\n")


def test_stamp_refuses_a_pyproject_without_the_keys() -> None:
    stamp = _stamp_module()
    with pytest.raises(ValueError, match=r"project\.urls\.Homepage"):
        stamp.stamp('[project]\nname = "x"\nversion = "1"\n', "a", "1.0", "https://h")


def test_stamp_main_leaves_the_file_alone_on_error(tmp_path: Path) -> None:
    stamp = _stamp_module()
    target = tmp_path / "pyproject.toml"
    target.write_text('[project]\nname = "x"\n')
    assert stamp.main(["stamp", str(target), "a", "1.0", "https://h"]) == 1
    assert target.read_text() == '[project]\nname = "x"\n'


def test_template_tests_are_not_collected_by_the_project() -> None:
    pyproject = tomllib.loads((TEMPLATE.parents[2] / "pyproject.toml").read_text())
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert "provisioner/smoke/template" in pyproject["tool"]["ruff"]["extend-exclude"]
    assert sys.modules.get("runnerctl_smoke") is None
