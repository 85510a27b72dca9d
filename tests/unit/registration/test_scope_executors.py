"""Scope parsing, executor sections and the Kubernetes RBAC manifests."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from provisioner.errors import UsageError
from provisioner.gitlab.models import Runner, RunnerStatus, RunnerType
from provisioner.registration import (
    DockerOptions,
    Executor,
    ExecutorConfig,
    KubernetesOptions,
    PullPolicy,
    Shell,
    ShellOptions,
    parse_scope,
)
from provisioner.registration.executors import (
    executor_settings,
    rbac_manifests,
    render_manifests,
)


@pytest.mark.parametrize(
    ("text", "kind", "ref"),
    [
        ("instance", RunnerType.INSTANCE, None),
        ("group:platform", RunnerType.GROUP, "platform"),
        ("group:platform/ci/", RunnerType.GROUP, "platform/ci"),
        ("group:42", RunnerType.GROUP, "42"),
        ("project:platform/ci/app", RunnerType.PROJECT, "platform/ci/app"),
        ("project:42", RunnerType.PROJECT, "42"),
    ],
)
def test_scopes_parse(text: str, kind: RunnerType, ref: str | None) -> None:
    scope = parse_scope(text)
    assert scope.runner_type is kind
    assert scope.ref == ref
    assert str(scope) == text.rstrip("/")


@pytest.mark.parametrize(
    "text", ["", "global", "group:", "group", "team:x", "group:a b", "project:app", "group:../x"]
)
def test_bad_scopes_are_usage_errors_listing_the_choices(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_scope(text)
    assert info.value.exit_code == 2
    assert "--scope" in (info.value.hint or "")


def _runner(**kw: object) -> Runner:
    base: dict[str, object] = {
        "id": 1,
        "description": "x",
        "runner_type": RunnerType.GROUP,
        "status": RunnerStatus.ONLINE,
        "paused": False,
        "group_ids": (7,),
        "group_paths": ("Platform/CI",),
        "detailed": True,
    }
    base.update(kw)
    return Runner(**base)  # type: ignore[arg-type]


def test_scope_matching_uses_ids_or_paths_without_extra_requests() -> None:
    assert parse_scope("group:platform/ci").matches(_runner())
    assert parse_scope("group:7").matches(_runner())
    assert not parse_scope("group:8").matches(_runner())
    assert not parse_scope("group:platform").matches(_runner())
    assert not parse_scope("instance").matches(_runner())
    assert parse_scope("instance").matches(_runner(runner_type=RunnerType.INSTANCE))


def test_docker_defaults_are_secure_and_wire_the_pip_cache() -> None:
    entry = executor_settings(ExecutorConfig(Executor.DOCKER))
    docker = entry["docker"]
    assert docker["privileged"] is False
    assert docker["image"] == "runnerctl/python:3.11"
    assert docker["volumes"] == ["runnerctl-pip-cache:/cache"]
    assert entry["environment"] == ["PIP_CACHE_DIR=/cache/pip"]
    assert docker["pull_policy"] == ["never"]
    assert docker["allowed_images"] == ["runnerctl/*"]


def test_docker_registry_image_pulls_always_and_extra_volumes_keep_cache() -> None:
    opts = DockerOptions(
        image="python:3.12",
        volumes=("/srv/data:/data:ro",),
        allowed_images=("alpine:*",),
        pip_cache_volume=None,
    )
    docker = executor_settings(ExecutorConfig(Executor.DOCKER, docker=opts))["docker"]
    assert docker["pull_policy"] == ["always"]
    assert docker["volumes"] == ["/srv/data:/data:ro", "/cache"]
    assert docker["allowed_images"] == ["python:3.12", "alpine:*"]
    explicit = DockerOptions(pull_policy=PullPolicy.IF_NOT_PRESENT)
    section = executor_settings(ExecutorConfig(Executor.DOCKER, docker=explicit))["docker"]
    assert section["pull_policy"] == ["if-not-present"]


def test_bad_docker_volume_is_refused() -> None:
    with pytest.raises(UsageError):
        executor_settings(ExecutorConfig(Executor.DOCKER, docker=DockerOptions(volumes=(":/x",))))


def test_shell_section() -> None:
    entry = executor_settings(
        ExecutorConfig(Executor.SHELL, shell=ShellOptions(Shell.SH, "/srv/builds"))
    )
    assert entry == {"executor": "shell", "shell": "sh", "builds_dir": "/srv/builds"}
    with pytest.raises(UsageError):
        executor_settings(ExecutorConfig(Executor.SHELL, shell=ShellOptions(builds_dir="rel")))


def test_kubernetes_section_and_name_checks() -> None:
    kube = executor_settings(ExecutorConfig(Executor.KUBERNETES))["kubernetes"]
    assert kube["privileged"] is False
    assert kube["allow_privilege_escalation"] is False
    assert kube["bearer_token_overwrite_allowed"] is False
    assert kube["cpu_request"] == "500m"
    assert kube["memory_limit"] == "2Gi"
    with pytest.raises(UsageError):
        executor_settings(
            ExecutorConfig(Executor.KUBERNETES, kubernetes=KubernetesOptions(namespace="Bad_NS"))
        )


def test_rbac_manifests_validate_against_kubernetes_schemas() -> None:
    opts = KubernetesOptions(namespace="ci", service_account="runner")
    text = render_manifests(rbac_manifests(opts, runner_name="k8s runner #1"))
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    role = docs[1]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"pods", "pods/exec", "secrets"} <= resources
    assert "nodes" not in resources  # namespaced only, nothing cluster-wide
    assert docs[0]["metadata"]["labels"]["app.kubernetes.io/instance"] == "k8s-runner-1"


def test_a_broken_manifest_is_caught_by_the_validator() -> None:
    # Guard that the validator really checks: a RoleBinding without roleRef must fail.
    doc = rbac_manifests(KubernetesOptions(), runner_name="x")[2]
    del doc["roleRef"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.30", strict=True)
