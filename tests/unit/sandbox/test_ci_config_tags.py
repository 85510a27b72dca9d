"""GitLab expands CI/CD variables in job tags (since 14.1); so does the sandbox's processor."""

from __future__ import annotations

from provisioner.sandbox.ci import load_pipeline

CI = """
variables:
  YAML_TAG: from-yaml
a:
  tags: [$RUNNER_TAG, "${YAML_TAG}", literal, $UNSET, "${UNSET_TOO}", $EMPTY]
  script: ["true"]
"""


def test_tags_expand_variables_keep_undefined_ones_literally_and_drop_empty_ones() -> None:
    spec = load_pipeline(
        CI,
        ref="main",
        variables={"RUNNER_TAG": "docker-1", "EMPTY": ""},
        read_file=lambda _n: None,
    )
    # GitLab keeps an undefined variable as written: the job waits for that literal tag.
    assert spec.job("a").tags == ("docker-1", "from-yaml", "literal", "$UNSET", "${UNSET_TOO}")
