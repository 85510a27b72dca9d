"""Least-privilege rules: exactly gitlab-runner's permission table for the features in use."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.k8s import rbac
from provisioner.k8s.rbac import Feature
from tests.unit.k8s.conftest import TOKEN, kube_entry

# gitlab-runner docs/executors/kubernetes/_index.md, "Configure runner API permissions", for a
# runner with the default feature flags (attach strategy, print_pod_warning_events = true).
DEFAULT_RUNNER_RULES = [
    ("", "events", ["list"]),
    ("", "pods", ["create", "delete", "get", "list", "watch"]),
    ("", "pods/attach", ["create", "delete", "get", "patch"]),
    ("", "pods/exec", ["create", "delete", "get", "patch"]),
    ("", "pods/log", ["get", "list"]),
    ("", "secrets", ["create", "delete", "get", "update"]),
    ("", "serviceaccounts", ["get"]),
]
SERVICES_RULE = ("", "services", ["create", "get"])


def _triples(rules: tuple[rbac.Rule, ...]) -> list[tuple[str, str, list[str]]]:
    return [(r.api_group, r.resource, list(r.verbs)) for r in rules]


def test_a_default_runner_gets_exactly_the_documented_rules() -> None:
    features = rbac.features_of(kube_entry("k", TOKEN))
    assert features == {Feature.BASE, Feature.INFORMERS, Feature.ATTACH, Feature.WARNING_EVENTS}
    assert _triples(rbac.rules_for(features)) == DEFAULT_RUNNER_RULES


def test_services_add_only_the_services_rule() -> None:
    entry = kube_entry("k", TOKEN, allowed_services=("postgres:*",))
    rules = _triples(rbac.rules_for(rbac.features_of(entry)))
    assert rules == sorted([*DEFAULT_RUNNER_RULES, SERVICES_RULE])


def test_configured_services_also_count_as_services() -> None:
    entry = kube_entry("k", TOKEN)
    entry["kubernetes"]["services"] = [{"name": "redis:7"}]
    assert Feature.SERVICES in rbac.features_of(entry)


@pytest.mark.parametrize(
    ("change", "feature", "rule"),
    [
        (
            {"feature_flags": {"FF_SUSPENDABLE_ENVIRONMENTS": True}},
            Feature.SUSPENDABLE,
            ("", "configmaps", ("create", "delete", "get", "update")),
        ),
        (
            {"feature_flags": {"FF_PRINT_POD_EVENTS": True}},
            Feature.POD_EVENTS,
            ("", "events", ("list", "watch")),
        ),
        (
            {"kubernetes": {"namespace_per_job": True}},
            Feature.NAMESPACE_PER_JOB,
            ("", "namespaces", ("create", "delete")),
        ),
        (
            {"kubernetes": {"pod_disruption_budget": True}},
            Feature.PDB,
            ("policy", "poddisruptionbudgets", ("create", "get")),
        ),
        (
            {"kubernetes": {"autoscaler": {}}},
            Feature.AUTOSCALER,
            ("scheduling.k8s.io", "priorityclasses", ("create", "get")),
        ),
    ],
)
def test_optional_features_grant_their_row(
    change: dict[str, Any], feature: Feature, rule: tuple[str, str, tuple[str, ...]]
) -> None:
    entry = kube_entry("k", TOKEN)
    for key, value in change.items():
        entry[key] = {**entry.get(key, {}), **value}
    assert feature in rbac.features_of(entry)
    assert rbac.Rule(*rule) in rbac.rules_for(rbac.features_of(entry))


def test_the_legacy_exec_strategy_needs_no_attach_and_no_events_when_turned_off() -> None:
    entry = kube_entry("k", TOKEN)
    entry["feature_flags"] = {"FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY": True}
    entry["kubernetes"]["print_pod_warning_events"] = False
    resources = [r.resource for r in rbac.rules_for(rbac.features_of(entry))]
    assert "pods/attach" not in resources
    assert "events" not in resources
    assert "pods/exec" in resources


def test_missing_reports_what_a_role_lacks_and_accepts_wildcards() -> None:
    features = rbac.features_of(kube_entry("k", TOKEN))
    full = [r.as_dict() for r in rbac.rules_for(features)]
    assert rbac.missing(full, features) == ()
    without_exec = [r for r in full if r["resources"] != ["pods/exec"]]
    assert rbac.missing(without_exec, features) == (
        rbac.Rule("", "pods/exec", ("create", "delete", "get", "patch")),
    )
    assert rbac.missing([{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}], features) == ()


def test_wildcards_include_what_the_chart_fills_in() -> None:
    problems = rbac.wildcards(
        [{"resources": ["pods"], "verbs": ["*"]}, {"apiGroups": ["*"], "resources": ["pods"]}]
    )
    assert problems == [
        "rule 1 grants '*' in verbs",
        "rule 2 grants '*' in apiGroups",
        "rule 2 has no verbs (the chart fills in '*')",
    ]
