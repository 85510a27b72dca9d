"""The pipeline: jobs built from the resolved configuration, stages and ``needs`` linked."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from provisioner.sandbox.ci.entries import (
    check_keys,
    parse_allow_failure,
    parse_artifacts,
    parse_caches,
    parse_commands,
    parse_id_tokens,
    parse_image,
    parse_needs,
    parse_retry,
    parse_services,
    parse_timeout,
    string_list,
    string_map,
)
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.extends import resolve_extends, resolve_references
from provisioner.sandbox.ci.include import ProjectFiles, expand_includes
from provisioner.sandbox.ci.inputs import has_header, load_with_inputs
from provisioner.sandbox.ci.keys import (
    DEFAULT_KEYS,
    DEFAULT_STAGES,
    EDGE_STAGES,
    FILTERED_OUT,
    JOB_KEYS,
    JOB_WHEN,
    LEGACY_GLOBAL_KEYS,
    RESERVED_ROOT_KEYS,
    RULE_KEYS,
    RULE_WHEN,
    WORKFLOW_RULE_KEYS,
    WORKFLOW_WHEN,
)
from provisioner.sandbox.ci.loading import load_root
from provisioner.sandbox.ci.rules import evaluate_rules, flatten_rules, only_except
from provisioner.sandbox.ci.spec import JobSpec, PipelineSpec


@dataclass(frozen=True)
class _Context:
    ref: str
    base_env: Mapping[str, str]
    default: Mapping[str, Any]
    global_variables: Mapping[str, str]
    stages: tuple[str, ...]


def _inherit(job: Mapping[str, Any], kind: str, name: str, where: str) -> bool:
    inherit = job.get("inherit")
    if inherit is None:
        return True
    if not isinstance(inherit, dict):
        raise CiConfigError(f"{where}:inherit config should be a hash")
    setting = inherit.get(kind, True)
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, list):
        return name in setting
    raise CiConfigError(f"{where}:inherit:{kind} config should be a boolean or an array")


def _validate_job_entry(name: str, job: Any) -> dict[str, Any]:
    where = f"jobs:{name}"
    if not isinstance(job, dict) or not ("script" in job or "trigger" in job or "run" in job):
        raise CiConfigError(
            f"{where} config should implement the script:, run:, or trigger: keyword"
        )
    check_keys(job, JOB_KEYS, where)
    if "rules" in job:
        clashing = [key for key in ("only", "except") if key in job]
        if clashing:
            raise CiConfigError(f"{where} config key may not be used with `rules`: {clashing[0]}")
    if "script" in job and not job["script"]:
        raise CiConfigError(f"{where} script can't be blank")
    when = job.get("when")
    if when is not None and when not in JOB_WHEN:
        raise CiConfigError(f"{where} when should be one of: {', '.join(JOB_WHEN)}")
    stage = job.get("stage")
    if stage is not None and not isinstance(stage, str):
        raise CiConfigError(f"{where}:stage config should be a string")
    # A key with a null value is unspecified (GitLab's Entry::Unspecified), except script.
    return {key: value for key, value in job.items() if value is not None or key == "script"}


def _job_variables(
    job: Mapping[str, Any], ctx: _Context, where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (effective YAML variables, the job's own variables)."""
    own = string_map(job.get("variables"), f"{where}:variables")
    inherited = {
        key: value
        for key, value in ctx.global_variables.items()
        if _inherit(job, "variables", key, where)
    }
    return {**inherited, **own}, own


def _from_default(job: Mapping[str, Any], key: str, ctx: _Context, where: str) -> Any:
    if key in job:
        return job[key]
    if key in ctx.default and _inherit(job, "default", key, where):
        return ctx.default[key]
    return None


def _build_job(name: str, job: dict[str, Any], ctx: _Context) -> list[JobSpec]:
    """Turn one validated job hash into JobSpecs (several for ``parallel``), or none."""
    where = f"jobs:{name}"
    yaml_vars, _ = _job_variables(job, ctx, where)
    env = {**yaml_vars, **ctx.base_env}
    explicit_when = job.get("when")
    when = explicit_when or "on_success"
    allow_failure, exit_codes = parse_allow_failure(
        job.get("allow_failure"), f"{where}:allow_failure"
    )
    start_in = job.get("start_in")
    rule_variables: Mapping[str, str] = {}
    if "rules" in job:
        outcome = evaluate_rules(
            flatten_rules(job["rules"], f"{where}:rules"),
            env,
            f"{where}:rules",
            allowed_keys=RULE_KEYS,
            allowed_when=RULE_WHEN,
        )
        if not outcome.included:
            return []
        when = outcome.when or when
        if outcome.allow_failure is not None:
            allow_failure = outcome.allow_failure
        rule_variables = outcome.variables
        start_in = outcome.start_in or start_in
        if allow_failure is None:
            allow_failure = False  # a manual job from rules blocks the pipeline, as in GitLab
    elif not only_except(job, ctx.ref, env, where):
        return []
    if allow_failure is None:
        allow_failure = when == "manual"
    image, entrypoint = parse_image(_from_default(job, "image", ctx, where), f"{where}:image")
    timeout = parse_timeout(_from_default(job, "timeout", ctx, where), f"{where}:timeout")
    needs = parse_needs(job.get("needs"), f"{where}:needs")
    dependencies = (
        string_list(job["dependencies"], f"{where}:dependencies")
        if job.get("dependencies") is not None
        else None
    )
    if dependencies is None and needs is not None:
        dependencies = tuple(need.job for need in needs if need.artifacts)
    trigger = job.get("trigger")
    script = () if "script" not in job else parse_commands(job["script"], f"{where}:script")
    if "script" in job and not script:
        raise CiConfigError(f"{where} script can't be blank")
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    coverage = job.get("coverage")
    resource_group = job.get("resource_group")
    if resource_group is not None and not isinstance(resource_group, str):
        raise CiConfigError(f"{where}:resource_group config should be a string")
    base = JobSpec(
        name=name,
        stage=str(job.get("stage", "test")),
        image=image,
        services=parse_services(_from_default(job, "services", ctx, where), f"{where}:services"),
        before_script=_optional_commands(job, "before_script", ctx, where),
        script=script,
        after_script=_optional_commands(job, "after_script", ctx, where),
        variables=MappingProxyType({**yaml_vars, **rule_variables}),
        artifacts=parse_artifacts(
            _from_default(job, "artifacts", ctx, where), f"{where}:artifacts"
        ),
        dependencies=dependencies,
        needs=None if needs is None else tuple(need.job for need in needs),
        tags=_expand_tags(
            _tags(_from_default(job, "tags", ctx, where), f"{where}:tags"),
            {**env, **rule_variables},
        ),
        allow_failure=allow_failure,
        when=str(when),
        timeout_seconds=timeout,
        id_tokens=parse_id_tokens(
            _from_default(job, "id_tokens", ctx, where), f"{where}:id_tokens"
        ),
        cache=parse_caches(_from_default(job, "cache", ctx, where), f"{where}:cache"),
        retry=parse_retry(_from_default(job, "retry", ctx, where), f"{where}:retry"),
        allow_failure_exit_codes=exit_codes,
        interruptible=bool(_from_default(job, "interruptible", ctx, where) or False),
        start_in=None if start_in is None else str(start_in),
        coverage=None if coverage is None else str(coverage),
        image_entrypoint=entrypoint,
        trigger=MappingProxyType(_trigger(trigger)) if trigger is not None else None,
        environment=None if environment is None else str(environment),
        # GitLab expands CI/CD variables in the group's name.
        resource_group=_expand_tags((resource_group,), {**env, **rule_variables})[0]
        if resource_group
        else None,
    )
    return _expand_parallel(base, job.get("parallel"), where)


def _trigger(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"project": value}
    if isinstance(value, dict):
        return dict(value)
    raise CiConfigError("trigger config should be a hash or a string")


def _optional_commands(
    job: Mapping[str, Any], key: str, ctx: _Context, where: str
) -> tuple[str, ...]:
    value = _from_default(job, key, ctx, where)
    return () if value is None else parse_commands(value, f"{where}:{key}")


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(tag) for tag in string_list(value, where))


_TAG_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_tags(tags: tuple[str, ...], env: Mapping[str, str]) -> tuple[str, ...]:
    """GitLab expands CI/CD variables in ``tags`` (since 14.1).

    An undefined variable stays as written: GitLab keeps ``$SMOKE_RUNNER_TAG`` literally, and
    the job then waits for a runner with that very tag. A variable set to "" drops the tag.
    """
    expanded = (
        _TAG_VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), tag)
        for tag in tags
    )
    return tuple(tag for tag in expanded if tag)


def _expand_parallel(job: JobSpec, parallel: Any, where: str) -> list[JobSpec]:
    if parallel is None:
        return [job]
    if isinstance(parallel, int) and not isinstance(parallel, bool):
        if not 1 <= parallel <= 200:
            raise CiConfigError(f"{where}:parallel config must be less than or equal to 200")
        return [
            replace(
                job,
                name=f"{job.name} {index}/{parallel}",
                variables=MappingProxyType(
                    {
                        **job.variables,
                        "CI_NODE_INDEX": str(index),
                        "CI_NODE_TOTAL": str(parallel),
                    }
                ),
            )
            for index in range(1, parallel + 1)
        ]
    matrix = parallel.get("matrix") if isinstance(parallel, dict) else None
    if not isinstance(matrix, list) or not all(isinstance(entry, dict) for entry in matrix):
        raise CiConfigError(f"{where}:parallel config should be an integer or a hash")
    combinations: list[dict[str, str]] = []
    for entry in matrix:
        keys = [str(key) for key in entry]
        values = [
            [str(v) for v in (entry[key] if isinstance(entry[key], list) else [entry[key]])]
            for key in entry
        ]
        combinations.extend(
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)
        )
    total = len(combinations)
    return [
        replace(
            job,
            name=f"{job.name}: [{', '.join(combo.values())}]",
            variables=MappingProxyType(
                {**job.variables, **combo, "CI_NODE_INDEX": str(i), "CI_NODE_TOTAL": str(total)}
            ),
        )
        for i, combo in enumerate(combinations, start=1)
    ]


def _stages(config: Mapping[str, Any]) -> tuple[str, ...]:
    raw = config.get("stages", config.get("types"))
    if raw is None:
        user: tuple[str, ...] = DEFAULT_STAGES
    elif isinstance(raw, list) and all(isinstance(stage, str) for stage in raw):
        flat: list[str] = []
        for stage in raw:
            if stage not in flat:
                flat.append(stage)
        user = tuple(flat)
    else:
        raise CiConfigError("stages config should be an array of strings")
    middle = tuple(stage for stage in user if stage not in EDGE_STAGES)
    return (EDGE_STAGES[0], *middle, EDGE_STAGES[1])


def _default_section(config: Mapping[str, Any]) -> dict[str, Any]:
    default = config.get("default") or {}
    if not isinstance(default, dict):
        raise CiConfigError("default config should be a hash")
    check_keys(default, DEFAULT_KEYS, "default")
    merged = {key: config[key] for key in LEGACY_GLOBAL_KEYS if key in config}
    merged.update(default)
    return merged


def _check_cross_job(jobs: Mapping[str, dict[str, Any]], stages: tuple[str, ...]) -> None:
    """``YamlProcessor`` validations: stages exist, needs/dependencies name earlier jobs."""
    for name, job in jobs.items():
        stage = job.get("stage", "test")
        if stage not in stages:
            raise CiConfigError(
                f"{name} job: chosen stage {stage} does not exist; available stages are "
                f"{', '.join(stages)}"
            )
    index = {name: stages.index(job.get("stage", "test")) for name, job in jobs.items()}
    for name, job in jobs.items():
        needs = parse_needs(job.get("needs"), f"jobs:{name}:needs") or ()
        for need in needs:
            if need.job not in jobs:
                if need.optional:
                    continue
                raise CiConfigError(f"{name} job: undefined need: {need.job}")
            if index[need.job] > index[name]:
                raise CiConfigError(
                    f"{name} job: need {need.job} is not defined in current or prior stages"
                )
        dependencies = job.get("dependencies")
        if dependencies is None:
            continue
        for dependency in string_list(dependencies, f"jobs:{name}:dependencies"):
            if dependency not in jobs:
                raise CiConfigError(f"{name} job: undefined dependency: {dependency}")
            if index[dependency] > index[name]:
                raise CiConfigError(
                    f"{name} job: dependency {dependency} is not defined in current or prior stages"
                )
        if job.get("needs") is not None:
            need_names = {need.job for need in needs}
            missing = [dep for dep in dependencies if dep not in need_names]
            if missing:
                raise CiConfigError(
                    f"jobs:{name} dependencies the {', '.join(missing)} should be part of needs"
                )


def _link_needs(
    specs: Sequence[tuple[str, JobSpec]], raw: Mapping[str, dict[str, Any]]
) -> list[JobSpec]:
    """Point needs/dependencies at the jobs that exist (``parallel`` instances expanded).

    A job excluded by rules cannot be needed unless the need is optional, as in GitLab.
    """
    instances: dict[str, list[str]] = {}
    for origin, spec in specs:
        instances.setdefault(origin, []).append(spec.name)
    linked: list[JobSpec] = []
    for origin, spec in specs:
        needs = parse_needs(raw[origin].get("needs"), "needs")
        for need in needs or ():
            if need.job not in instances and not need.optional:
                raise CiConfigError(
                    f"'{spec.name}' job needs '{need.job}' job, but '{need.job}' does not exist "
                    "in the pipeline. This might be because of the only, except, or rules "
                    "keywords. To need a job that sometimes does not exist in the pipeline, "
                    "use needs:optional."
                )

        def expand(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
            if names is None:
                return None
            result: list[str] = []
            for name in names:
                result.extend(instances.get(name, ()))
            return tuple(result)

        linked.append(
            replace(spec, needs=expand(spec.needs), dependencies=expand(spec.dependencies))
        )
    return linked


def load_pipeline(
    text: str,
    *,
    ref: str,
    variables: Mapping[str, str],
    read_file: Callable[[str], str | None],
    project_files: ProjectFiles | None = None,
) -> PipelineSpec:
    """Process a `.gitlab-ci.yml` for ``ref`` into the pipeline GitLab would create.

    Args:
        text: the `.gitlab-ci.yml` content at ``ref``.
        ref: the branch (or tag, when ``CI_COMMIT_TAG`` is among ``variables``) of the pipeline.
        variables: variables visible to ``rules``/``workflow`` (pipeline, project and predefined
            ones such as ``CI_PIPELINE_SOURCE`` or ``CI_DEFAULT_BRANCH``); they take precedence
            over YAML variables in expressions.
        read_file: returns a repository file's content at ``ref`` (None when it does not exist),
            for ``include: local``.
        project_files: other projects' repositories, for ``include: project`` and
            ``include: component`` (none by default).

    Raises:
        CiConfigError: the configuration is invalid, or ``workflow:rules`` filter it out;
            the message is worded as GitLab words it.
    """
    base_env: dict[str, str] = dict(variables)
    base_env.setdefault("CI_COMMIT_REF_NAME", ref)
    if not base_env.get("CI_COMMIT_TAG"):
        base_env.setdefault("CI_COMMIT_BRANCH", ref)

    if has_header(text):
        # A root file with a `spec:inputs` header: pipeline inputs take their defaults.
        body = load_with_inputs(text, None, "`.gitlab-ci.yml`")
        if not isinstance(body, dict):
            raise CiConfigError("Invalid configuration format")
        config = {str(key): value for key, value in body.items()}
    else:
        config = load_root(text)
    config = expand_includes(config, read_file, set(), base_env, project_files)
    config = resolve_extends(config)
    resolved = resolve_references(config, config)
    assert isinstance(resolved, dict)
    config = resolved

    stages = _stages(config)
    default = _default_section(config)
    global_variables = string_map(config.get("variables"), "variables")
    raw_jobs: dict[str, dict[str, Any]] = {}
    for name, value in config.items():
        if name in RESERVED_ROOT_KEYS or name.startswith("."):
            continue
        raw_jobs[name] = _validate_job_entry(name, value)
    if not raw_jobs:
        raise CiConfigError("jobs config should contain at least one visible job")
    _check_cross_job(raw_jobs, stages)

    workflow = config.get("workflow")
    if workflow is not None:
        if not isinstance(workflow, dict):
            raise CiConfigError("workflow config should be a hash")
        if "rules" in workflow:
            outcome = evaluate_rules(
                flatten_rules(workflow["rules"], "workflow:rules"),
                {**global_variables, **base_env},
                "workflow:rules",
                allowed_keys=WORKFLOW_RULE_KEYS,
                allowed_when=WORKFLOW_WHEN,
            )
            if not outcome.included:
                raise CiConfigError(FILTERED_OUT)
            global_variables = {**global_variables, **outcome.variables}

    ctx = _Context(
        ref=ref,
        base_env=MappingProxyType(base_env),
        default=MappingProxyType(default),
        global_variables=MappingProxyType(global_variables),
        stages=stages,
    )
    built = [(name, spec) for name, job in raw_jobs.items() for spec in _build_job(name, job, ctx)]
    return PipelineSpec(
        stages=stages,
        variables=MappingProxyType(dict(global_variables)),
        jobs=tuple(_link_needs(built, raw_jobs)),
    )
