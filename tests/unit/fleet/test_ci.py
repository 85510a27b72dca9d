"""``fleet ci``: the generated .gitlab-ci.yml is valid for GitLab and for the sandbox's parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from provisioner.errors import UsageError
from provisioner.fleet.ci import CiOptions, ci_config
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.pipeline import load_pipeline

SCHEMA = (
    Path(__file__).resolve().parents[3].parent
    / "shared"
    / "reference"
    / "gitlab-ci-schema"
    / "gitlab-ci.schema.json"
)


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


OPTIONS = [
    CiOptions(),
    CiOptions(
        fleet_file="ops/fleet/prod.toml",
        image="registry.example/ops/runnerctl:1",
        tags=("fleet", "linux"),
    ),
]


@pytest.mark.parametrize("options", OPTIONS)
def test_output_validates_against_gitlabs_ci_schema(options: CiOptions, validator: Any) -> None:
    document = yaml.safe_load(ci_config(options))
    errors = sorted(validator.iter_errors(document), key=str)
    assert errors == []
    assert document["variables"]["FLEET_FILE"] == options.fleet_file
    apply_job = document["fleet-apply"]
    assert apply_job["resource_group"] == "fleet"
    assert apply_job["artifacts"]["reports"]["junit"] == "fleet-junit.xml"
    assert apply_job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    assert document["fleet-plan"]["rules"] == [
        {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}
    ]
    if options.image:
        assert document["default"] == {"image": options.image, "tags": list(options.tags)}
    else:
        assert "default" not in document


def test_secrets_come_from_variables_never_from_the_file() -> None:
    text = ci_config(CiOptions())
    (apply_line,) = yaml.safe_load(text)["fleet-apply"]["script"]
    assert apply_line == (
        'runnerctl fleet apply "$FLEET_FILE" --key-file "$FLEET_SSH_KEY" '
        '--known-hosts "$FLEET_KNOWN_HOSTS" --auto-approve --junit fleet-junit.xml'
    )
    (plan_line,) = yaml.safe_load(text)["fleet-plan"]["script"]
    assert plan_line.endswith("--detailed-exitcode --out fleet-plan.json || test $? -eq 2")
    assert "glpat-" not in text
    assert "GITLAB_TOKEN" in text  # only in the comment saying where it comes from


@pytest.mark.parametrize(
    ("source", "jobs"),
    [("schedule", ["fleet-apply"]), ("merge_request_event", ["fleet-plan"]), ("push", None)],
)
def test_the_sandbox_parser_picks_the_job_of_each_pipeline_source(
    source: str, jobs: list[str] | None
) -> None:
    text = ci_config(CiOptions(tags=("fleet",)))
    variables = {"CI_PIPELINE_SOURCE": source, "CI_DEFAULT_BRANCH": "main"}
    if jobs is None:
        with pytest.raises(CiConfigError, match="workflow"):
            load_pipeline(text, ref="main", variables=variables, read_file=lambda _p: None)
        return
    spec = load_pipeline(text, ref="main", variables=variables, read_file=lambda _p: None)
    assert [job.name for job in spec.jobs] == jobs
    (job,) = spec.jobs
    assert job.tags == ("fleet",)
    assert job.resource_group == ("fleet" if source == "schedule" else None)


@pytest.mark.parametrize(
    "bad", [CiOptions(image=""), CiOptions(tags=("a\nb",)), CiOptions(fleet_file=" ")]
)
def test_bad_values_are_usage_errors(bad: CiOptions) -> None:
    with pytest.raises(UsageError):
        ci_config(bad)
