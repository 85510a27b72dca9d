"""``k8s lint``: every documented misconfiguration is caught with a fix; correct files pass."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from provisioner.errors import ConfigError
from provisioner.k8s import values as chart_values
from provisioner.k8s.lint import lint_text
from provisioner.runner_config import ConfigDocument, Finding
from tests.unit.k8s.conftest import TOKEN

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def good(document: ConfigDocument) -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = chart_values.build_bundle(document, runner="k8s-plain")
    return copy.deepcopy(bundle.values), copy.deepcopy(bundle.secret)


def _lint(*docs: dict[str, Any]) -> tuple[Finding, ...]:
    text = yaml.safe_dump_all(list(docs), sort_keys=False)
    return lint_text(text, source="file.yaml").findings


def _config(values: dict[str, Any], old: str, new: str) -> None:
    assert old in values["runners"]["config"]
    values["runners"]["config"] = values["runners"]["config"].replace(old, new)


def test_correct_values_and_secret_pass(good: tuple[dict[str, Any], dict[str, Any]]) -> None:
    values, secret = good
    report = lint_text(yaml.safe_dump_all([values, secret]), source="bundle.yaml")
    assert report.documents == ("values", "Secret")
    assert report.findings == ()
    assert report.kubernetes_version == "1.34"


CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "misspelled kubernetes table",
        lambda v: _config(v, "[runners.kubernetes]", "[runners.kuberentes]"),
        "K8S004",
        "did you mean runners.kubernetes?",
    ),
    (
        "misspelled kubernetes key",
        lambda v: _config(v, "namespace = ", "namepsace = "),
        "K8S004",
        "did you mean runners.kubernetes.namespace?",
    ),
    (
        "tags in runners.config",
        lambda v: _config(
            v, 'executor = "kubernetes"', 'executor = "kubernetes"\n  tags = ["k8s"]'
        ),
        "K8S005",
        "runners.config sets tags",
    ),
    (
        "locked and run_untagged in runners.config",
        lambda v: _config(
            v,
            'executor = "kubernetes"',
            'executor = "kubernetes"\n  locked = true\n  run_untagged = true',
        ),
        "K8S005",
        "locked, run_untagged",
    ),
    ("runners.tags", lambda v: v["runners"].update(tags="k8s,linux"), "K8S002", "runners.tags"),
    ("runners.locked", lambda v: v["runners"].update(locked=False), "K8S002", "runners.locked"),
    (
        "runners.runUntagged",
        lambda v: v["runners"].update(runUntagged=True),
        "K8S002",
        "runUntagged",
    ),
    (
        "registration token",
        lambda v: v.update(runnerRegistrationToken="GR1348941x"),
        "K8S002",
        "runnerRegistrationToken",
    ),
    ("token in values", lambda v: v.update(runnerToken=TOKEN), "K8S001", "runnerToken"),
    ("unknown key", lambda v: v["rbac"].update(creat=True), "K8S003", "did you mean rbac.create?"),
    (
        "empty rules",
        lambda v: v["rbac"].update(rules=[]),
        "K8S006",
        "every verb on every resource",
    ),
    (
        "star verbs",
        lambda v: v["rbac"]["rules"].append(
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}
        ),
        "K8S006",
        "grants '*' in verbs",
    ),
    (
        "rule without resources",
        lambda v: v["rbac"]["rules"].append({"verbs": ["get"]}),
        "K8S006",
        "no resources",
    ),
    ("cluster-wide", lambda v: v["rbac"].update(clusterWideAccess=True), "K8S006", "ClusterRole"),
    (
        "missing exec",
        lambda v: v["rbac"].update(
            rules=[r for r in v["rbac"]["rules"] if r["resources"] != ["pods/exec"]]
        ),
        "K8S007",
        "pods/exec: create, delete, get, patch",
    ),
    (
        "services used, not granted",
        lambda v: _config(
            v, "[runners.kubernetes]", '[runners.kubernetes]\n    allowed_services = ["redis:*"]'
        ),
        "K8S007",
        "services: create, get",
    ),
    (
        "default service account",
        lambda v: (v["rbac"].update(create=False), v.pop("serviceAccount")),
        "K8S007",
        "system:serviceaccount:NS:default",
    ),
    (
        "namespace override",
        lambda v: _config(
            v, 'namespace_overwrite_allowed = ""', 'namespace_overwrite_allowed = ".*"'
        ),
        "K8S008",
        "namespace_overwrite_allowed",
    ),
    (
        "service account override",
        lambda v: _config(
            v,
            'service_account_overwrite_allowed = ""',
            'service_account_overwrite_allowed = "ci-.*"',
        ),
        "K8S008",
        "service_account_overwrite_allowed",
    ),
    (
        "bearer token override",
        lambda v: _config(
            v, "bearer_token_overwrite_allowed = false", "bearer_token_overwrite_allowed = true"
        ),
        "K8S008",
        "bearer_token_overwrite_allowed",
    ),
    (
        "privileged jobs",
        lambda v: _config(v, "privileged = false", "privileged = true"),
        "K8S009",
        "privileged = true",
    ),
    (
        "privilege escalation",
        lambda v: _config(
            v, "allow_privilege_escalation = false", "allow_privilege_escalation = true"
        ),
        "K8S009",
        "allow_privilege_escalation is true",
    ),
    (
        "manager escalation",
        lambda v: v["securityContext"].update(allowPrivilegeEscalation=True),
        "K8S009",
        "runner manager",
    ),
    (
        "no job limits",
        lambda v: _config(v, 'cpu_limit = "2"\n', ""),
        "K8S010",
        "no cpu_limit",
    ),
    ("no manager limits", lambda v: v["resources"].pop("limits"), "K8S010", "no limits"),
    ("bad TOML", lambda v: _config(v, "[[runners]]", "[[runners]"), "K8S004", "not valid TOML"),
]


@pytest.mark.parametrize(("what", "mutate", "rule", "needle"), CASES, ids=[c[0] for c in CASES])
def test_each_misconfiguration_in_values_is_caught_with_a_fix(
    good: tuple[dict[str, Any], dict[str, Any]], what: str, mutate: Mutation, rule: str, needle: str
) -> None:
    values, _secret = good
    mutate(values)
    findings = _lint(values)
    hits = [f for f in findings if f.rule == rule and needle in f.message]
    assert hits, f"{what}: {[(f.rule, f.message) for f in findings]}"
    assert all(f.fix for f in findings)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


SECRET_CASES: list[tuple[str, Mutation, str]] = [
    (
        "token with newline",
        lambda s: s["data"].update({"runner-token": _b64(TOKEN.encode() + b"\n")}),
        "ends with a newline",
    ),
    (
        "stringData with newline",
        lambda s: (
            s.pop("data"),
            s.update(stringData={"runner-token": TOKEN + "\n", "runner-registration-token": ""}),
        ),
        "ends with a newline",
    ),
    (
        "not base64",
        lambda s: s["data"].update({"runner-token": "glrt-not-base64!"}),
        "not valid base64",
    ),
    ("no registration key", lambda s: s["data"].pop("runner-registration-token"), "chart#527"),
    ("empty token", lambda s: s["data"].update({"runner-token": ""}), "is empty"),
]


@pytest.mark.parametrize(
    ("what", "mutate", "needle"), SECRET_CASES, ids=[c[0] for c in SECRET_CASES]
)
def test_secret_mistakes_are_caught(
    good: tuple[dict[str, Any], dict[str, Any]], what: str, mutate: Mutation, needle: str
) -> None:
    _values, secret = good
    mutate(secret)
    findings = _lint(secret)
    [hit] = [f for f in findings if needle in f.message]
    assert hit.rule == "K8S011", what
    assert hit.runner == "Secret/k8s-plain-runner-token"
    assert hit.fix
    if "newline" in needle:
        assert "printf %s" in hit.fix


def test_manifests_are_checked_against_the_schemas_and_by_kind() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "runner"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["*"]}],
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job"},
        "spec": {
            "containers": [
                {"name": "build", "image": "alpine", "securityContext": {"privileged": True}}
            ]
        },
    }
    broken = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sa"},
        "automount": True,
    }
    findings = _lint(role, pod, broken)
    rules = {(f.rule, f.runner) for f in findings}
    assert ("K8S006", "ClusterRole/runner") in rules
    assert ("K8S009", "Pod/job") in rules
    assert ("K8S010", "Pod/job") in rules
    assert ("K8S012", "ServiceAccount/sa") in rules
    schema = next(f for f in findings if f.rule == "K8S012")
    assert "automount" in schema.message
    assert "Kubernetes 1.34" in schema.message


def test_a_role_missing_what_the_executor_needs() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "runner", "namespace": "ci"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["create", "get"]}
        ],
    }
    [finding] = _lint(role)
    assert finding.rule == "K8S007"
    assert "secrets: create, delete, get, update" in finding.message


def test_register_rbac_file_passes(tmp_path: Any) -> None:
    from provisioner.registration.executors import (
        KubernetesOptions,
        rbac_manifests,
        render_manifests,
    )

    text = render_manifests(rbac_manifests(KubernetesOptions(), runner_name="r"))
    assert lint_text(text, source="rbac.yaml").findings == ()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("rbac: [create\n", "not valid YAML"),
        ("- just\n- a list\n", "not a mapping"),
        ("", "holds no YAML document"),
    ],
)
def test_malformed_files_are_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        lint_text(text, source="v.yaml")
    assert info.value.exit_code == 3
    assert info.value.hint
