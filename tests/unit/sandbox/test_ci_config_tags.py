"""GitLab expands CI/CD variables in job tags (since 14.1); so does the sandbox's processor."""

from __future__ import annotations

from provisioner.sandbox.ci import load_pipeline

CI = """
variables:
  YAML_TAG: from-yaml
a:
  tags: [$RUNNER_TAG, "${YAML_TAG}", literal, $UNSET]
  script: ["true"]
"""


def test_tags_expand_pipeline_and_yaml_variables_and_drop_empty_ones() -> None:
    spec = load_pipeline(
        CI, ref="main", variables={"RUNNER_TAG": "docker-1"}, read_file=lambda _n: None
    )
    assert spec.job("a").tags == ("docker-1", "from-yaml", "literal")
