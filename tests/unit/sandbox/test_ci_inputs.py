"""``spec:inputs``, ``$[[ inputs.NAME ]]`` and ``include: project``/``component`` in the
sandbox's `.gitlab-ci.yml` processor, with GitLab's error wording."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import pytest

from provisioner.sandbox.ci import CiConfigError, PipelineSpec, load_pipeline

COMPONENT = textwrap.dedent(
    """\
    spec:
      inputs:
        stage:
          default: test
        mode:
          options: [fast, slow]
          default: fast
        retries:
          type: number
          default: 1
        strict:
          type: boolean
          default: false
        tags:
          type: array
          default: [shared]
        name:
          description: required, no default
          regex: ^[a-z]+$
    ---
    stages: [$[[ inputs.stage ]]]
    $[[ inputs.name ]]-job:
      stage: $[[ inputs.stage ]]
      tags: $[[ inputs.tags ]]
      retry: $[[ inputs.retries ]]
      variables:
        STRICT: "$[[ inputs.strict ]]"
      script: echo $[[ inputs.mode ]] $[[ inputs.name ]]
    """
)


class Projects:
    """Two sandbox projects with branches and tags, as ``ProjectFiles``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, str]]] = {
            "tools/ci": {
                "main": {"templates/release.yml": COMPONENT, "ci/job.yml": "j:\n  script: a\n"},
                "1.0.0": {"templates/release.yml": COMPONENT.replace("echo", "echo v1")},
                "1.2.0": {"templates/release.yml": COMPONENT.replace("echo", "echo v12")},
                "beta": {"templates/release.yml": COMPONENT.replace("echo", "echo beta")},
            }
        }

    def exists(self, project: str) -> bool:
        return project in self.repos

    def commit(self, project: str, ref: str | None) -> str | None:
        refs = self.repos.get(project, {})
        ref = ref or "main"
        return ref if ref in refs else None

    def tags(self, project: str) -> list[str]:
        return [ref for ref in self.repos.get(project, {}) if ref != "main"]

    def read(self, project: str, commit: str, path: str) -> str | None:
        return self.repos.get(project, {}).get(commit, {}).get(path)


def load(
    text: str,
    *,
    files: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
) -> PipelineSpec:
    return load_pipeline(
        textwrap.dedent(text),
        ref="main",
        variables={"CI_SERVER_FQDN": "gitlab.example", **(variables or {})},
        read_file=dict(files or {}).get,
        project_files=Projects(),
    )


def error_of(text: str, **kwargs: object) -> str:
    with pytest.raises(CiConfigError) as caught:
        load(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.message


LOCAL = {"templates/release.yml": COMPONENT}


def test_inputs_are_interpolated_with_their_types_and_defaults() -> None:
    spec = load(
        """
        include:
          - local: templates/release.yml
            inputs: {name: pkg, mode: slow, retries: 2, strict: true, tags: [a, b]}
        """,
        files=LOCAL,
    )
    job = spec.job("pkg-job")
    assert job.stage == "test"
    assert job.tags == ("a", "b")  # an array input becomes a YAML sequence
    assert job.retry == 2
    assert job.variables["STRICT"] == "true"  # quoted in the file: a string
    assert job.script == ("echo slow pkg",)
    defaults = load(
        "include:\n  - local: templates/release.yml\n    inputs: {name: pkg}\n", files=LOCAL
    ).job("pkg-job")
    assert defaults.tags == ("shared",)
    assert defaults.script == ("echo fast pkg",)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("{}", "`name` input: required value has not been provided"),
        (
            "{name: pkg, mode: turbo}",
            "`mode` input: `turbo` cannot be used because it is not in the list of allowed options",
        ),
        ("{name: pkg, retries: many}", "`retries` input: provided value is not a number"),
        ("{name: pkg, strict: 'yes'}", "`strict` input: provided value is not a boolean"),
        ("{name: pkg, tags: a}", "`tags` input: provided value is not a array"),
        ("{name: Pkg1}", "`name` input: provided value does not match required RegEx pattern"),
        ("{name: pkg, color: red}", "unknown input arguments: color"),
    ],
)
def test_bad_inputs_are_refused_in_gitlabs_words(inputs: str, message: str) -> None:
    text = f"include:\n  - local: templates/release.yml\n    inputs: {inputs}\n"
    assert error_of(text, files=LOCAL) == f"`templates/release.yml`: {message}"


def test_header_and_interpolation_errors() -> None:
    bad_type = COMPONENT.replace("type: number", "type: integer")
    assert (
        error_of("include:\n  - local: c.yml\n    inputs: {name: pkg}\n", files={"c.yml": bad_type})
        == "`c.yml`: header:spec:inputs:retries input type unknown value: integer"
    )
    unknown_key = "spec:\n  inputs:\n    a:\n      defualt: 1\n---\nj:\n  script: x\n"
    assert error_of("include: c.yml\n", files={"c.yml": unknown_key}) == (
        "`c.yml`: header:spec:inputs:a config contains unknown keys: defualt"
    )
    typo = "spec:\n  inputs:\n    a:\n      default: x\n---\nj:\n  script: $[[ inputs.b ]]\n"
    assert error_of("include: c.yml\n", files={"c.yml": typo}) == (
        "`c.yml`: unknown interpolation key: `b`"
    )
    bad_default = (
        "spec:\n  inputs:\n    a:\n      type: boolean\n      default: x\n---\nj:\n  script: y\n"
    )
    assert error_of("include: c.yml\n", files={"c.yml": bad_default}) == (
        "`c.yml`: `a` input: default value is not a boolean"
    )
    no_header = {"c.yml": "j:\n  script: x\n"}
    assert error_of("include:\n  - local: c.yml\n    inputs: {a: 1}\n", files=no_header) == (
        "`c.yml`: Given inputs not defined in the `spec` section of the included configuration file"
    )


def test_include_project_with_ref_and_file_list() -> None:
    spec = load(
        """
        include:
          - project: tools/ci
            ref: 1.2.0
            file: [templates/release.yml]
            inputs: {name: rel}
          - project: tools/ci
            file: ci/job.yml
        """
    )
    assert spec.job("rel-job").script == ("echo v12 fast rel",)
    assert spec.job("j").script == ("a",)


@pytest.mark.parametrize(
    ("include", "message"),
    [
        (
            "{project: tools/nope, file: a.yml}",
            "Project `tools/nope` not found or access denied! "
            "Make sure any includes in the pipeline configuration are correctly defined.",
        ),
        (
            "{project: tools/ci, ref: v9, file: a.yml}",
            "Project `tools/ci` reference `v9` does not exist!",
        ),
        (
            "{project: tools/ci, file: nope.yml}",
            "Project `tools/ci` file `nope.yml` does not exist!",
        ),
    ],
)
def test_include_project_errors(include: str, message: str) -> None:
    assert error_of(f"include:\n  - {include}\n") == message


def test_include_component_by_version_and_latest() -> None:
    def script(version: str) -> tuple[str, ...]:
        text = (
            "include:\n"
            f"  - component: $CI_SERVER_FQDN/tools/ci/release@{version}\n"
            "    inputs: {name: c}\n"
        )
        return load(text).job("c-job").script

    assert script("1.0.0") == ("echo v1 fast c",)
    assert script("~latest") == ("echo v12 fast c",)  # the highest semantic version tag
    assert script("main") == ("echo fast c",)


@pytest.mark.parametrize(
    ("component", "message"),
    [
        (
            "gitlab.example/tools/ci/release@9.9.9",
            "Component 'gitlab.example/tools/ci/release@9.9.9' - content not found",
        ),
        (
            "gitlab.example/tools/ci/missing@1.0.0",
            "Component 'gitlab.example/tools/ci/missing@1.0.0' - content not found",
        ),
        (
            "other.example/tools/ci/release@1.0.0",
            "Component 'other.example/tools/ci/release@1.0.0' - content not found",
        ),
        (
            "gitlab.example/tools/none/release@1.0.0",
            "Component 'gitlab.example/tools/none/release@1.0.0' - project does not exist or "
            "you don't have sufficient permissions",
        ),
    ],
)
def test_include_component_errors(component: str, message: str) -> None:
    assert error_of(f"include:\n  - component: {component}\n    inputs: {{name: c}}\n") == message


def test_the_same_file_with_other_inputs_is_included_again_and_rules_choose() -> None:
    text = """
    include:
      - local: templates/release.yml
        inputs: {name: one}
      - local: templates/release.yml
        inputs: {name: two}
      - local: templates/release.yml
        rules:
          - if: $MODE == "three"
        inputs: {name: three}
    """
    names = {job.name for job in load(text, files=LOCAL).jobs}
    assert names == {"one-job", "two-job"}
    names = {job.name for job in load(text, files=LOCAL, variables={"MODE": "three"}).jobs}
    assert names == {"one-job", "two-job", "three-job"}


def test_a_root_file_with_a_header_uses_the_defaults() -> None:
    text = (
        "spec:\n  inputs:\n    who:\n      default: world\n"
        "---\nhello:\n  script: echo $[[ inputs.who ]]\n"
    )
    assert load(text).job("hello").script == ("echo world",)
