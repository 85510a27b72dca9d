"""The smoke template: GitLab's CI schema, the sandbox's processor, stamping, package data."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from provisioner.sandbox.ci import load_pipeline
from provisioner.sandbox.ci.inputs import load_with_inputs
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
        read_file=template_files().get,
    )


def _component(signing: str = "keypair") -> dict[str, Any]:
    """The python-release component as the smoke file includes it, inputs interpolated."""
    include = _ci()["include"][0]
    inputs = {**include["inputs"], "signing": signing}
    text = template_files()["templates/python-release.yml"]
    doc = load_with_inputs(text, inputs, "`templates/python-release.yml`")
    assert isinstance(doc, dict)
    return dict(_plain(doc))


def _plain(node: Any) -> Any:
    """!reference tags as the lists GitLab's schema expects."""
    if isinstance(node, dict):
        return {key: _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if type(node).__name__ == "Reference":
        return list(node.path)
    return node


def _stamp_module() -> ModuleType:
    # The stamp step ships inside the component, as the build job's RELEASE_STAMP_PY.
    source = _component()[".python-job"]["variables"]["RELEASE_STAMP_PY"]
    module = ModuleType("release_stamp")
    exec(compile(source, "release_stamp", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def test_template_ships_package_tests_readme_and_ci_scripts() -> None:
    files = template_files()
    assert {
        ".gitlab-ci.yml",
        "pyproject.toml",
        "README.md",
        "src/runnerctl_smoke/__init__.py",
        "tests/test_smoke_package.py",
        "templates/python-release.yml",
    } <= set(files)
    assert not [p for p in files if p.startswith("ci/")]  # the helpers live in the component
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
    broken = _component()
    broken["build"]["scirpt"] = ["true"]
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_component_validates_against_gitlab_ci_schema_as_the_smoke_file_includes_it() -> None:
    schema = json.loads((REFERENCE / "gitlab-ci-schema" / "gitlab-ci.schema.json").read_text())
    for signing in ("keypair", "keyless"):
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(_component(signing)))
        assert errors == []


def test_stages_and_hidden_templates() -> None:
    assert tuple(_ci()["stages"]) == STAGES
    doc = _component()
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
                # The token reaches curl on stdin: as a header (-H @-) or as Basic-auth
                # credentials in a config read from stdin (-K -).
                header = "-H @-" in line and "printf 'JOB-TOKEN: %s" in line
                config = "-K -" in line and "printf 'user = \"gitlab-ci-token:%s" in line
                assert header or config, line
                assert not re.search(r"(-u|--user|-H|--header) [\"']?[^@ -]*CI_JOB_TOKEN", line)


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
        stamp.stamp(
            '[project]\nname = "x"\nversion = "1"\n[project.urls]\nSource = "s"\n',
            "a",
            "1.0",
            "https://h",
        )
    with pytest.raises(ValueError, match=r"project\.name"):
        stamp.stamp('[project]\nversion = "1"\n[project.urls]\nHomepage = "h"\n', "a", "1", "h")


def test_stamp_adds_a_missing_urls_table_and_stamps_a_dynamic_version(tmp_path: Path) -> None:
    # runnerctl's own pyproject: no [project.urls], version from provisioner.__version__.
    stamp = _stamp_module()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""doc"""\n\n__version__ = "1.2.0"\n')
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "pkg"\ndynamic = ["version"]\n\n'
        '[tool.setuptools.dynamic]\nversion = { attr = "pkg.__version__" }\n'
    )
    assert stamp.main(["stamp", "--base", str(pyproject)]) == 0
    assert stamp.main(["stamp", str(pyproject), "pkg", "1.2.0.dev9", "https://h/p"]) == 0
    data = tomllib.loads(pyproject.read_text())
    assert data["project"]["urls"] == {"Homepage": "https://h/p"}
    assert data["project"]["dynamic"] == ["version"]
    assert '__version__ = "1.2.0.dev9"' in (tmp_path / "pkg" / "__init__.py").read_text()


def test_stamp_main_leaves_the_file_alone_on_error(tmp_path: Path) -> None:
    stamp = _stamp_module()
    target = tmp_path / "pyproject.toml"
    target.write_text('[project]\nname = "x"\n')
    assert stamp.main(["stamp", str(target), "a", "1.0", "https://h"]) == 1
    assert target.read_text() == '[project]\nname = "x"\n'


def test_only_the_pipeline_runnerctl_creates_runs() -> None:
    # Committing the template makes GitLab start a push pipeline; it must not be created.
    with pytest.raises(Exception, match="filtered out by workflow rules"):
        _pipeline(CI_PIPELINE_SOURCE="push")
    with pytest.raises(Exception, match="filtered out by workflow rules"):
        load_pipeline(
            _ci_text(),
            ref="main",
            variables={"CI_PIPELINE_SOURCE": "api"},
            read_file=template_files().get,
        )
    assert _pipeline(CI_PIPELINE_SOURCE="api").jobs


def test_template_ships_the_component_file_itself() -> None:
    # One source of truth: the package's copy is a link to templates/python-release.yml.
    shipped = TEMPLATE / "templates" / "python-release.yml"
    top = TEMPLATE.parents[2] / "templates" / "python-release.yml"
    assert shipped.is_symlink()
    assert shipped.resolve() == top.resolve()
    assert template_files()["templates/python-release.yml"] == top.read_text()


def test_template_tests_are_not_collected_by_the_project() -> None:
    pyproject = tomllib.loads((TEMPLATE.parents[2] / "pyproject.toml").read_text())
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert "provisioner/smoke/template" in pyproject["tool"]["ruff"]["extend-exclude"]
    assert sys.modules.get("runnerctl_smoke") is None
