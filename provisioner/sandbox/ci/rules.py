"""``rules``, ``workflow:rules`` and ``only``/``except`` evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.sandbox.ci.entries import check_keys, string_list, string_map
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.expressions import ExpressionError, as_pattern, evaluate_expression


@dataclass(frozen=True)
class _RuleOutcome:
    included: bool
    when: str | None = None
    allow_failure: bool | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    start_in: str | None = None


def flatten_rules(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise CiConfigError(f"{where} config should be an array of hashes")
    rules: list[dict[str, Any]] = []
    for item in value:
        # `- !reference [.rules, rules]` inserts a nested array; GitLab flattens one level.
        for rule in item if isinstance(item, list) else [item]:
            if not isinstance(rule, dict):
                raise CiConfigError(f"{where} config should be an array of hashes")
            rules.append(rule)
    return rules


def evaluate_rules(
    rules: list[dict[str, Any]],
    env: Mapping[str, str],
    where: str,
    *,
    allowed_keys: frozenset[str],
    allowed_when: tuple[str, ...],
) -> _RuleOutcome:
    for rule in rules:
        check_keys(rule, allowed_keys, f"{where}:rule")
        when = rule.get("when")
        if when is not None and when not in allowed_when:
            raise CiConfigError(f"{where}:rule when unknown value: {when}")
        condition = rule.get("if")
        if condition is not None:
            if not isinstance(condition, str):
                raise CiConfigError(f"{where}:rule if should be a string")
            try:
                matched = evaluate_expression(condition, env)
            except ValueError:
                raise CiConfigError(f"{where}:rule if invalid expression syntax") from None
            if not matched:
                continue
        # changes: and exists: need a diff or a tree walk; the sandbox treats them as true.
        if when == "never":
            return _RuleOutcome(included=False)
        allow_failure = rule.get("allow_failure")
        if allow_failure is not None and not isinstance(allow_failure, bool):
            raise CiConfigError(f"{where}:rule allow_failure should be a boolean value")
        start_in = rule.get("start_in")
        return _RuleOutcome(
            included=True,
            when=when,
            allow_failure=allow_failure,
            variables=string_map(rule.get("variables"), f"{where}:rule:variables"),
            start_in=None if start_in is None else str(start_in),
        )
    return _RuleOutcome(included=False)


_SOURCE_KEYWORDS = {
    "api": "api",
    "chat": "chats",
    "external": "external",
    "external_pull_request_event": "external_pull_requests",
    "merge_request_event": "merge_requests",
    "pipeline": "pipelines",
    "push": "pushes",
    "schedule": "schedules",
    "trigger": "triggers",
    "web": "web",
}


def _ref_policy_matches(refs: Sequence[str], ref: str, env: Mapping[str, str]) -> bool:
    is_tag = bool(env.get("CI_COMMIT_TAG"))
    source_keyword = _SOURCE_KEYWORDS.get(env.get("CI_PIPELINE_SOURCE", ""), "")
    for pattern in refs:
        if pattern == "branches" and not is_tag:
            return True
        if pattern == "tags" and is_tag:
            return True
        if source_keyword and pattern == source_keyword:
            return True
        compiled = as_pattern(pattern) if pattern.startswith("/") else None
        if compiled is not None:
            try:
                if compiled.search(ref):
                    return True
            except ExpressionError:
                continue
        elif pattern == ref:
            return True
    return False


def _policy(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (refs, variables expressions) of an ``only``/``except`` entry."""
    if isinstance(value, list):
        return string_list(value, where), ()
    if isinstance(value, str):
        return (value,), ()
    if isinstance(value, dict):
        refs = string_list(value.get("refs", []), f"{where}:refs")
        expressions = string_list(value.get("variables", []), f"{where}:variables")
        return refs, expressions
    raise CiConfigError(f"{where} config should be an array of strings or regular expressions")


def only_except(job: Mapping[str, Any], ref: str, env: Mapping[str, str], where: str) -> bool:
    only_refs, only_vars = _policy(job.get("only", ["branches", "tags"]), f"{where}:only")
    if only_refs and not _ref_policy_matches(only_refs, ref, env):
        return False
    if only_vars and not any(_safe_eval(expr, env, f"{where}:only") for expr in only_vars):
        return False
    if "except" in job:
        except_refs, except_vars = _policy(job["except"], f"{where}:except")
        if except_refs and _ref_policy_matches(except_refs, ref, env):
            return False
        if except_vars and any(_safe_eval(expr, env, f"{where}:except") for expr in except_vars):
            return False
    return True


def _safe_eval(expression: str, env: Mapping[str, str], where: str) -> bool:
    try:
        return evaluate_expression(expression, env)
    except ValueError:
        raise CiConfigError(f"{where} variables invalid expression syntax") from None
