"""Least-privilege RBAC rules for the kubernetes executor, derived from what a runner uses.

The permission table is gitlab-runner's own ("Configure runner API permissions",
``docs/executors/kubernetes/_index.md``, the list between ``k8s_api_permissions_list_start``
and ``..._end``), which the Helm chart's ``values.yaml`` points to from ``rbac.rules``. Each
verb is granted only when the feature that needs it is on in the runner's ``[[runners]]`` entry
(see :data:`PERMISSIONS` for the verbs):

- base (always): pods create/delete/get, pods/exec, secrets, serviceaccounts get;
- informers (always; 17.9+ watches the build pod when it may): pods list/watch;
- attach (``FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY`` false, the default): pods/attach,
  pods/log get/list, pods watch;
- logs (``FF_CONCRETE``, ``FF_KUBERNETES_HONOR_ENTRYPOINT``, ``FF_WAIT_FOR_POD_TO_BE_REACHABLE``):
  pods/log get;
- warning_events (``print_pod_warning_events``, true by default): events list;
- pod_events (``FF_PRINT_POD_EVENTS``): events watch;
- services (``[[runners.kubernetes.services]]`` or ``allowed_services``): services create/get;
- suspendable (``FF_SUSPENDABLE_ENVIRONMENTS``): configmaps, persistentvolumeclaims,
  namespaces get;
- namespace_per_job (``namespace_per_job = true``): namespaces create/delete;
- pdb (``pod_disruption_budget = true``): policy/poddisruptionbudgets create/get;
- autoscaler (``[runners.kubernetes.autoscaler]``): apps/deployments,
  scheduling.k8s.io/priorityclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Feature(StrEnum):
    """A runner feature that needs Kubernetes API permissions."""

    BASE = "base"
    INFORMERS = "informers"
    ATTACH = "attach"
    LOGS = "logs"
    WARNING_EVENTS = "warning_events"
    POD_EVENTS = "pod_events"
    SERVICES = "services"
    SUSPENDABLE = "suspendable"
    NAMESPACE_PER_JOB = "namespace_per_job"
    PDB = "pdb"
    AUTOSCALER = "autoscaler"


# (apiGroup, resource) -> verbs, per feature. "" is the core API group.
PERMISSIONS: Mapping[Feature, Mapping[tuple[str, str], tuple[str, ...]]] = {
    Feature.BASE: {
        ("", "pods"): ("create", "delete", "get"),
        ("", "pods/exec"): ("create", "delete", "get", "patch"),
        ("", "secrets"): ("create", "delete", "get", "update"),
        ("", "serviceaccounts"): ("get",),
    },
    Feature.INFORMERS: {("", "pods"): ("list", "watch")},
    Feature.ATTACH: {
        ("", "pods"): ("watch",),
        ("", "pods/attach"): ("create", "delete", "get", "patch"),
        ("", "pods/log"): ("get", "list"),
    },
    Feature.LOGS: {("", "pods/log"): ("get",)},
    Feature.WARNING_EVENTS: {("", "events"): ("list",)},
    Feature.POD_EVENTS: {("", "events"): ("watch",)},
    Feature.SERVICES: {("", "services"): ("create", "get")},
    Feature.SUSPENDABLE: {
        ("", "configmaps"): ("create", "delete", "get", "update"),
        ("", "persistentvolumeclaims"): ("create", "delete"),
        ("", "namespaces"): ("get",),
    },
    Feature.NAMESPACE_PER_JOB: {("", "namespaces"): ("create", "delete")},
    Feature.PDB: {("policy", "poddisruptionbudgets"): ("create", "get")},
    Feature.AUTOSCALER: {
        ("apps", "deployments"): ("create", "delete", "get", "list", "update"),
        ("scheduling.k8s.io", "priorityclasses"): ("create", "get"),
    },
}

_LEGACY_EXEC = "FF_USE_LEGACY_KUBERNETES_EXECUTION_STRATEGY"
_LOG_FLAGS = ("FF_CONCRETE", "FF_KUBERNETES_HONOR_ENTRYPOINT", "FF_WAIT_FOR_POD_TO_BE_REACHABLE")


@dataclass(frozen=True)
class Rule:
    """One RBAC policy rule: an API group, one resource, its verbs (sorted)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The rule as Kubernetes (and the chart's ``rbac.rules``) spell it."""
        return {
            "apiGroups": [self.api_group],
            "resources": [self.resource],
            "verbs": list(self.verbs),
        }


def _flag(flags: Mapping[str, Any], name: str) -> bool | None:
    for key, value in flags.items():
        if str(key).upper() == name and isinstance(value, bool):
            return value
    return None


def features_of(entry: Mapping[str, Any]) -> frozenset[Feature]:
    """The features a ``[[runners]]`` entry (plain mapping) uses, per the table above."""
    kube = entry.get("kubernetes")
    kube = kube if isinstance(kube, Mapping) else {}
    raw_flags = entry.get("feature_flags")
    flags: Mapping[str, Any] = raw_flags if isinstance(raw_flags, Mapping) else {}
    found = {Feature.BASE, Feature.INFORMERS}
    if not _flag(flags, _LEGACY_EXEC):
        found.add(Feature.ATTACH)
    if any(_flag(flags, name) for name in _LOG_FLAGS):
        found.add(Feature.LOGS)
    if kube.get("print_pod_warning_events", True) is not False:
        found.add(Feature.WARNING_EVENTS)
    if _flag(flags, "FF_PRINT_POD_EVENTS"):
        found.add(Feature.POD_EVENTS)
    if kube.get("services") or kube.get("allowed_services"):
        found.add(Feature.SERVICES)
    if _flag(flags, "FF_SUSPENDABLE_ENVIRONMENTS"):
        found.add(Feature.SUSPENDABLE)
    if kube.get("namespace_per_job") is True:
        found.add(Feature.NAMESPACE_PER_JOB)
    if kube.get("pod_disruption_budget") is True:
        found.add(Feature.PDB)
    if isinstance(kube.get("autoscaler"), Mapping):
        found.add(Feature.AUTOSCALER)
    return frozenset(found)


def rules_for(features: Iterable[Feature]) -> tuple[Rule, ...]:
    """Exactly the rules ``features`` need: one rule per resource, sorted, verbs sorted."""
    merged: dict[tuple[str, str], set[str]] = {}
    for feature in features:
        for key, verbs in PERMISSIONS[feature].items():
            merged.setdefault(key, set()).update(verbs)
    return tuple(
        Rule(group, resource, tuple(sorted(verbs)))
        for (group, resource), verbs in sorted(merged.items())
    )


def granted(rules: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs that ``rules`` grant; ``*`` entries are kept as ``*``.

    Missing or empty keys are read the way the chart renders them: ``apiGroups`` defaults to
    the core group, ``resources`` and ``verbs`` to ``*`` (``templates/role.yaml``).
    """
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        groups = [str(g) for g in (rule.get("apiGroups") or [""])]
        resources = [str(r) for r in (rule.get("resources") or ["*"])]
        verbs = {str(v) for v in (rule.get("verbs") or ["*"])}
        for group in groups:
            for resource in resources:
                out.setdefault((group, resource), set()).update(verbs)
    return out


def missing(rules: Iterable[Mapping[str, Any]], features: Iterable[Feature]) -> tuple[Rule, ...]:
    """What ``rules`` lack for ``features`` (empty when every needed verb is granted)."""
    have = granted(rules)

    def allowed(group: str, resource: str, verb: str) -> bool:
        for (g, r), verbs in have.items():
            if g in (group, "*") and r in (resource, "*") and (verb in verbs or "*" in verbs):
                return True
        return False

    out: list[Rule] = []
    for rule in rules_for(features):
        lacking = tuple(v for v in rule.verbs if not allowed(rule.api_group, rule.resource, v))
        if lacking:
            out.append(Rule(rule.api_group, rule.resource, lacking))
    return tuple(out)


def wildcards(rules: Iterable[Mapping[str, Any]]) -> list[str]:
    """Human descriptions of rules that grant ``*`` (explicitly or by a missing key)."""
    out: list[str] = []
    for index, rule in enumerate(rules):
        for key in ("apiGroups", "resources", "verbs"):
            values = rule.get(key)
            if key != "apiGroups" and not values:
                out.append(f"rule {index + 1} has no {key} (the chart fills in '*')")
            elif isinstance(values, list) and "*" in values:
                out.append(f"rule {index + 1} grants '*' in {key}")
    return out
