"""The sandbox's `.gitlab-ci.yml` processor against realistic pipelines and GitLab's errors."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path

import jsonschema
import pytest
import yaml

from provisioner.sandbox.ci import (
    CiConfigError,
    PipelineSpec,
    evaluate_expression,
    load_pipeline,
    parse_duration,
)


def load(
    text: str,
    *,
    ref: str = "main",
    variables: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
) -> PipelineSpec:
    repo = dict(files or {})
    return load_pipeline(
        textwrap.dedent(text), ref=ref, variables=variables or {}, read_file=repo.get
    )


def error_of(text: str, **kwargs: object) -> str:
    with pytest.raises(CiConfigError) as caught:
        load(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.message


THREE_STAGES = """
stages: [build, test, deploy]

variables:
  PIP_CACHE_DIR: "$CI_PROJECT_DIR/.cache/pip"
  PYTHON_VERSION:
    value: "3.12"
    description: Interpreter used by every job

default:
  image: python:3.12-slim
  tags: [docker, linux]
  before_script:
    - python -V
  retry: 1
  timeout: 30 minutes

build:
  stage: build
  script:
    - pip wheel --no-deps -w dist .
    - [ls -l dist, sha256sum dist/*]
  artifacts:
    paths: [dist/]
    expire_in: 1 week
    name: "wheels-$CI_COMMIT_REF_SLUG"

unit:
  stage: test
  script: pytest --junitxml=report.xml --cov --cov-report=xml
  artifacts:
    when: always
    reports:
      junit: report.xml
      coverage_report:
        coverage_format: cobertura
        path: coverage.xml
  coverage: '/TOTAL.*\\s+(\\d+%)$/'

deploy:
  stage: deploy
  image:
    name: alpine/curl:8
    entrypoint: [""]
  inherit:
    default: [tags, timeout]
    variables: false
  dependencies: [build]
  script: curl --upload-file dist/*.whl "$URL"
  when: manual
  environment: production
"""


def test_three_stage_pipeline_with_artifacts_and_defaults() -> None:
    spec = load(THREE_STAGES)
    assert spec.stages == (".pre", "build", "test", "deploy", ".post")
    assert dict(spec.variables) == {
        "PIP_CACHE_DIR": "$CI_PROJECT_DIR/.cache/pip",
        "PYTHON_VERSION": "3.12",
    }
    assert [job.name for job in spec.jobs] == ["build", "unit", "deploy"]

    build = spec.job("build")
    assert build.stage == "build"
    assert build.image == "python:3.12-slim"
    assert build.before_script == ("python -V",)
    assert build.script == ("pip wheel --no-deps -w dist .", "ls -l dist", "sha256sum dist/*")
    assert build.tags == ("docker", "linux")
    assert build.retry == 1
    assert build.timeout_seconds == 1800
    assert build.artifacts is not None
    assert build.artifacts.paths == ("dist/",)
    assert build.artifacts.expire_in == "1 week"
    assert build.artifacts.when == "on_success"
    assert build.artifacts.name == "wheels-$CI_COMMIT_REF_SLUG"
    assert build.dependencies is None
    assert build.needs is None
    assert build.when == "on_success"
    assert build.allow_failure is False
    assert build.variables["PYTHON_VERSION"] == "3.12"

    unit = spec.job("unit")
    assert unit.script == ("pytest --junitxml=report.xml --cov --cov-report=xml",)
    assert unit.artifacts is not None
    assert unit.artifacts.when == "always"
    assert dict(unit.artifacts.reports) == {
        "junit": ("report.xml",),
        "coverage_report": ("coverage.xml",),
    }
    assert unit.artifacts.coverage_format == "cobertura"
    assert unit.coverage == r"/TOTAL.*\s+(\d+%)$/"

    deploy = spec.job("deploy")
    assert deploy.image == "alpine/curl:8"
    assert deploy.image_entrypoint == ("",)
    assert deploy.before_script == ()  # inherit:default lists only tags and timeout
    assert deploy.tags == ("docker", "linux")
    assert deploy.timeout_seconds == 1800
    assert deploy.retry == 0
    assert dict(deploy.variables) == {}  # inherit:variables: false
    assert deploy.dependencies == ("build",)
    assert deploy.when == "manual"
    assert deploy.allow_failure is True  # manual jobs without rules do not block
    assert deploy.environment == "production"


EXTENDS = """
.python:
  image: python:3.12
  variables:
    PIP_NO_CACHE_DIR: "1"
    LEVEL: base
  before_script: [pip install -e .]
  artifacts:
    reports:
      junit: junit.xml
  tags: [docker]

.python+cosign:
  extends: .python
  variables:
    LEVEL: cosign
    COSIGN_YES: "true"
  before_script: [cosign version]

.slow:
  timeout: 2h 30m
  tags: [big]
  retry:
    max: 2
    when: runner_system_failure

sign:
  extends: [.python+cosign, .slow]
  stage: deploy
  variables:
    LEVEL: job
  script: cosign sign-blob dist/x.whl
"""


def test_extends_multi_level_deep_merge() -> None:
    sign = load(EXTENDS).job("sign")
    assert sign.image == "python:3.12"
    # arrays are replaced, never concatenated; later bases win
    assert sign.before_script == ("cosign version",)
    assert sign.tags == ("big",)
    # hashes are merged recursively; the job's own keys win
    assert dict(sign.variables) == {"PIP_NO_CACHE_DIR": "1", "LEVEL": "job", "COSIGN_YES": "true"}
    assert sign.artifacts is not None
    assert dict(sign.artifacts.reports) == {"junit": ("junit.xml",)}
    assert sign.timeout_seconds == 9000
    assert sign.retry == 2
    assert sign.stage == "deploy"


def test_hidden_jobs_are_not_created() -> None:
    assert [job.name for job in load(EXTENDS).jobs] == ["sign"]


def test_inherit_false_and_variable_lists() -> None:
    spec = load(
        """
        variables:
          A: "1"
          B: "2"
        default:
          image: python:3.12
          before_script: [setup]
        plain:
          inherit:
            default: false
            variables: [B]
          script: x
        """
    )
    job = spec.job("plain")
    assert job.image is None
    assert job.before_script == ()
    assert dict(job.variables) == {"B": "2"}


def test_reference_tag_reuses_sections() -> None:
    spec = load(
        """
        .setup:
          script:
            - echo setup
            - echo more
          variables:
            URL: http://example.invalid
        test:
          variables:
            URL: !reference [.setup, variables, URL]
          script:
            - !reference [.setup, script]
            - echo test
        """
    )
    job = spec.job("test")
    assert job.script == ("echo setup", "echo more", "echo test")
    assert job.variables["URL"] == "http://example.invalid"


def test_reference_to_missing_key() -> None:
    message = error_of(
        """
        test:
          script: [!reference [.setup, script]]
        """
    )
    assert message == '!reference [".setup", "script"] could not be found'


RULES = """
workflow:
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
    - if: $CI_COMMIT_TAG
      variables:
        RELEASE: "yes"
    - if: $CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS
      when: never
    - if: $CI_COMMIT_BRANCH

lint:
  script: ruff check
  rules:
    - if: $CI_PIPELINE_SOURCE == "schedule"
      when: never
    - when: on_success

publish:
  stage: deploy
  script: twine upload dist/*
  rules:
    - if: $CI_COMMIT_TAG =~ /^v\\d+\\.\\d+/
      variables:
        CHANNEL: stable
    - if: '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && ($FORCE == "1" || $NIGHTLY)'
      when: manual
    - if: $CI_COMMIT_BRANCH =~ /^release\\//i
      allow_failure: true
      when: delayed
      start_in: 10 minutes

docs:
  stage: deploy
  script: make docs
  rules:
    - if: $CI_COMMIT_BRANCH != "main" && $SKIP_DOCS == null
"""


@pytest.mark.parametrize(
    ("ref", "variables", "expected"),
    [
        (
            "main",
            {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main"},
            {"lint": "on_success"},
        ),
        (
            "main",
            {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main", "FORCE": "1"},
            {"lint": "on_success", "publish": "manual"},
        ),
        (
            "main",
            {"CI_PIPELINE_SOURCE": "schedule", "CI_DEFAULT_BRANCH": "main", "NIGHTLY": "true"},
            {"publish": "manual"},
        ),
        (
            "feature",
            {"CI_PIPELINE_SOURCE": "push", "CI_DEFAULT_BRANCH": "main"},
            {"lint": "on_success", "docs": "on_success"},
        ),
        (
            "feature",
            {"CI_PIPELINE_SOURCE": "push", "SKIP_DOCS": ""},
            {"lint": "on_success"},
        ),
        (
            "Release/2.0",
            {"CI_PIPELINE_SOURCE": "push"},
            {"lint": "on_success", "publish": "delayed", "docs": "on_success"},
        ),
        (
            "v1.2.0",
            {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "v1.2.0"},
            # no CI_COMMIT_BRANCH on a tag: `null != "main"` is true, as in GitLab
            {"lint": "on_success", "publish": "on_success", "docs": "on_success"},
        ),
    ],
)
def test_rules_matrix(ref: str, variables: dict[str, str], expected: dict[str, str]) -> None:
    spec = load(RULES, ref=ref, variables=variables)
    assert {job.name: job.when for job in spec.jobs} == expected


def test_rule_attributes_override_job() -> None:
    spec = load(RULES, ref="release/2.0", variables={"CI_PIPELINE_SOURCE": "push"})
    publish = spec.job("publish")
    assert publish.allow_failure is True
    assert publish.start_in == "10 minutes"
    tagged = load(RULES, ref="v1.0", variables={"CI_COMMIT_TAG": "v1.0"})
    assert tagged.job("publish").variables["CHANNEL"] == "stable"
    assert tagged.variables["RELEASE"] == "yes"  # workflow:rules:variables become global
    forced = load(RULES, variables={"CI_DEFAULT_BRANCH": "main", "FORCE": "1"})
    assert forced.job("publish").allow_failure is False  # manual from rules blocks


def test_workflow_rules_filter_the_pipeline_out() -> None:
    message = error_of(RULES, variables={"CI_OPEN_MERGE_REQUESTS": "grp/p!1"})
    assert message == "Pipeline filtered out by workflow rules."


def test_only_except_refs() -> None:
    text = """
    a:
      script: a
      only: [main, /^release-.*$/]
    b:
      script: b
      except: [tags]
    c:
      script: c
      only:
        refs: [tags]
    """
    assert [j.name for j in load(text).jobs] == ["a", "b"]
    assert [j.name for j in load(text, ref="release-1").jobs] == ["a", "b"]
    assert [j.name for j in load(text, ref="topic").jobs] == ["b"]
    assert [j.name for j in load(text, ref="v1", variables={"CI_COMMIT_TAG": "v1"}).jobs] == ["c"]


def test_needs_and_dependencies() -> None:
    spec = load(
        """
        stages: [build, test]
        build:
          stage: build
          script: make
        lint:
          stage: build
          script: lint
        test:
          stage: test
          needs: [build, {job: lint, artifacts: false}]
          script: make test
        report:
          stage: test
          needs: []
          script: report
        """
    )
    test = spec.job("test")
    assert test.needs == ("build", "lint")
    assert test.dependencies == ("build",)  # needs:artifacts false skips lint's artifacts
    report = spec.job("report")
    assert report.needs == ()
    assert report.dependencies == ()


def test_optional_need_on_a_filtered_job_is_dropped() -> None:
    text = """
    build:
      stage: build
      script: make
      rules:
        - if: $BUILD
    test:
      needs: [{job: build, optional: true}]
      script: make test
    """
    assert load(text).job("test").needs == ()
    assert load(text, variables={"BUILD": "1"}).job("test").needs == ("build",)


def test_need_on_a_filtered_job_is_an_error() -> None:
    message = error_of(
        """
        build:
          stage: build
          script: make
          rules:
            - if: $BUILD
        test:
          needs: [build]
          script: make test
        """
    )
    assert message == (
        "'test' job needs 'build' job, but 'build' does not exist in the pipeline. This might be "
        "because of the only, except, or rules keywords. To need a job that sometimes does not "
        "exist in the pipeline, use needs:optional."
    )


def test_parallel_instances() -> None:
    spec = load(
        """
        build:
          stage: build
          script: make
          parallel: 2
        test:
          parallel:
            matrix:
              - PY: ["3.11", "3.12"]
                OS: linux
          needs: [build]
          script: tox
        """
    )
    assert [job.name for job in spec.jobs] == [
        "build 1/2",
        "build 2/2",
        "test: [3.11, linux]",
        "test: [3.12, linux]",
    ]
    test = spec.jobs[3]
    assert test.needs == ("build 1/2", "build 2/2")
    assert test.variables["PY"] == "3.12"
    assert test.variables["CI_NODE_TOTAL"] == "2"


def test_include_local_is_merged_under_the_main_file() -> None:
    files = {
        "ci/templates.yml": "include: ci/base.yml\n.python:\n  image: python:3.11\n  script: [x]\n",
        "ci/base.yml": "variables:\n  FROM_BASE: 'yes'\n  OVERRIDE: base\n",
    }
    spec = load(
        """
        include:
          - local: /ci/templates.yml
        variables:
          OVERRIDE: main
        test:
          extends: .python
          script: [pytest]
        """,
        files=files,
    )
    assert dict(spec.variables) == {"FROM_BASE": "yes", "OVERRIDE": "main"}
    assert spec.job("test").image == "python:3.11"
    assert spec.job("test").script == ("pytest",)


def test_include_rules_use_pipeline_variables() -> None:
    text = """
    include:
      - local: ci/release.yml
        rules:
          - if: $CI_COMMIT_TAG
      - local: ci/never.yml
        rules:
          - if: $CI_COMMIT_BRANCH
            when: never
          - when: always
    test:
      script: pytest
    """
    files = {
        "ci/release.yml": "release:\n  stage: deploy\n  script: twine upload\n",
        "ci/never.yml": "never:\n  script: x\n",
    }
    assert [j.name for j in load(text, files=files).jobs] == ["test"]
    tagged = load(text, ref="v1", variables={"CI_COMMIT_TAG": "v1"}, files=files)
    assert [j.name for j in tagged.jobs] == ["release", "never", "test"]


def test_id_tokens_cache_services_and_allow_failure_exit_codes() -> None:
    job = load(
        """
        default:
          id_tokens:
            SIGSTORE_ID_TOKEN:
              aud: sigstore
          cache:
            key: pip
            paths: [.cache/pip]
        test:
          services: [postgres:16, {name: "redis:7", alias: cache}]
          allow_failure:
            exit_codes: [137, 255]
          interruptible: true
          script: pytest
        """
    ).job("test")
    assert dict(job.id_tokens["SIGSTORE_ID_TOKEN"]) == {"aud": "sigstore"}
    assert [dict(c) for c in job.cache] == [
        {
            "key": "pip",
            "paths": [".cache/pip"],
            "policy": "pull-push",
            "untracked": False,
            "when": "on_success",
        }
    ]
    assert job.services == ("postgres:16", "redis:7")
    assert job.allow_failure is False
    assert job.allow_failure_exit_codes == (137, 255)
    assert job.interruptible is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("build:\n  script: make\n  foo: 1\n", "jobs:build config contains unknown keys: foo"),
        ("test:\n  script: []\n", "jobs:test script can't be blank"),
        (
            "test:\n  image: python\n",
            "jobs:test config should implement the script:, run:, or trigger: keyword",
        ),
        (".hidden:\n  script: x\n", "jobs config should contain at least one visible job"),
        (
            "stages: [build]\ntest:\n  script: x\n",
            "test job: chosen stage test does not exist; available stages are .pre, build, .post",
        ),
        ("test:\n  script: x\n  needs: [build]\n", "test job: undefined need: build"),
        ("test:\n  script: x\n  dependencies: [nope]\n", "test job: undefined dependency: nope"),
        (
            "build:\n  stage: build\n  script: x\n  needs: [test]\ntest:\n  script: y\n",
            "build job: need test is not defined in current or prior stages",
        ),
        (
            "test:\n  script: x\n  when: sometimes\n",
            "jobs:test when should be one of: on_success, on_failure, always, manual, delayed",
        ),
        ("test:\n  script: x\n  timeout: soon\n", "jobs:test:timeout config should be a duration"),
        (
            "test:\n  script: x\n  artifacts:\n    path: [a]\n",
            "jobs:test:artifacts config contains unknown keys: path",
        ),
        ("test:\n  extends: .base\n  script: x\n", "test: unknown keys in `extends` (.base)"),
        (
            ".a:\n  extends: .b\n.b:\n  extends: .a\ntest:\n  extends: .a\n  script: x\n",
            ".a: circular dependency detected in `extends`",
        ),
        (
            "test:\n  script: x\n  rules:\n    - if: $A ==\n",
            "jobs:test:rules:rule if invalid expression syntax",
        ),
        (
            "test:\n  script: x\n  rules:\n    - when: later\n",
            "jobs:test:rules:rule when unknown value: later",
        ),
        (
            "test:\n  script: x\n  only: [main]\n  rules:\n    - when: always\n",
            "jobs:test config key may not be used with `rules`: only",
        ),
        ("stages: build\ntest:\n  script: x\n", "stages config should be an array of strings"),
        (
            "default:\n  stage: build\ntest:\n  script: x\n",
            "default config contains unknown keys: stage",
        ),
        (
            "include: ci/missing.yml\ntest:\n  script: x\n",
            "Local file `ci/missing.yml` does not exist!",
        ),
        (
            "include: ci/file.txt\ntest:\n  script: x\n",
            "Included file `ci/file.txt` does not have YAML extension!",
        ),
        ("just a string\n", "Invalid configuration format"),
        ("", "Please provide content of .gitlab-ci.yml"),
        (
            "test:\n  script: x\n  retry: 3\n",
            "jobs:test:retry config must be less than or equal to 2",
        ),
        (
            "test:\n  script: [echo, {a: b}]\n",
            "jobs:test:script config should be a string or a nested array of strings up to 10 "
            "levels deep",
        ),
    ],
)
def test_errors_are_worded_as_gitlab(text: str, message: str) -> None:
    assert error_of(text) == message


def test_nesting_too_deep_in_extends() -> None:
    chain = "".join(f".l{i}:\n  extends: .l{i + 1}\n" for i in range(12))
    chain += ".l12:\n  script: x\ntest:\n  extends: .l0\n"
    assert error_of(chain) == ".l11: nesting too deep in `extends`"  # .l0 is expanded first


def test_invalid_yaml_is_reported_with_psych_wording() -> None:
    assert error_of("a: b: c\n") == (
        "(<unknown>): mapping values are not allowed in this context at line 1 column 5"
    )
    message = error_of("test:\n  script: [a\n  b: c\n")
    assert message.startswith("(<unknown>): ")
    assert " at line " in message
    assert " column " in message
    assert error_of("test:\n\tscript: x\n") == (
        "(<unknown>): found character that cannot start any token while scanning for the next "
        "token at line 2 column 1"
    )
    mapping = error_of("test:\n  script: x\n bad: y\n")
    assert mapping.startswith(
        "(<unknown>): did not find expected key while parsing a block mapping"
    )


def test_error_carries_a_hint() -> None:
    with pytest.raises(CiConfigError) as caught:
        load("x: 1\n")
    assert caught.value.hint
    assert caught.value.exit_code == 8


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h 30m", 5400),
        ("10 minutes", 600),
        ("3600", 3600),
        ("2 hours and 15 minutes", 8100),
        ("1d", 86400),
        ("1 week", 604800),
        ("45s", 45),
        ("1:02:03", 3723),
        (90, 90),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "1 fortnight", "h", "-5"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$A", True),
        ("$EMPTY", False),
        ("$MISSING", False),
        ("$A == 'x'", True),
        ('$A != "x"', False),
        ("$MISSING == null", True),
        ("$EMPTY == null", False),
        ("$A =~ /^X$/i", True),
        ("$A !~ /y/", True),
        ("$MISSING =~ /.*/", False),
        ("$A == 'x' && $B == 'y' || $C", True),
        ("$A == 'nope' && ($B == 'y' || $A)", False),
        ("$A == 'nope' && $B == 'y' || $A", True),
        ("$B =~ $PATTERN", True),
        ("${A} == $A", True),
        ('"x" == $A', True),
    ],
)
def test_expressions(expression: str, expected: bool) -> None:
    env = {"A": "x", "B": "y", "EMPTY": "", "PATTERN": "/^y$/"}
    assert evaluate_expression(expression, env) is expected


@pytest.mark.parametrize("expression", ["$A ==", "($A", "A == 1", "$A === 'x'", "&& $A"])
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the syntax error type is internal
        evaluate_expression(expression, {"A": "x"})


def test_every_schema_job_keyword_is_accepted(reference_dir: Path) -> None:
    """Keys GitLab's own schema allows in a job must not be 'unknown keys' here."""
    schema = json.loads((reference_dir / "gitlab-ci-schema" / "gitlab-ci.schema.json").read_text())
    keys = set(schema["definitions"]["job_template"]["properties"]) - {"script", "run"}
    job = {"script": "x", **dict.fromkeys(sorted(keys))}
    # None-valued keys are ignored by normalisation; only key validation is exercised here.
    for key in ("only", "except", "rules", "trigger", "parallel", "needs", "inherit", "extends"):
        job.pop(key, None)
    text = yaml.safe_dump({"job": job})
    spec = load(text)
    assert spec.job("job").script == ("x",)


@pytest.mark.parametrize("text", [THREE_STAGES, EXTENDS, RULES], ids=["stages", "extends", "rules"])
def test_fixtures_are_valid_for_gitlabs_own_schema(reference_dir: Path, text: str) -> None:
    """The pipelines above are real GitLab configuration, per the schema GitLab's editor uses."""
    schema = json.loads((reference_dir / "gitlab-ci-schema" / "gitlab-ci.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(textwrap.dedent(text)))
