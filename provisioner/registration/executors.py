"""Executor sections for ``[[runners]]`` entries, with secure defaults, and Kubernetes RBAC.

Defaults follow GitLab's security guidance (``config_toml.md`` section 4):

- docker: ``privileged = false``; no docker socket unless asked; ``allowed_images`` pinned to
  the job image; a pull policy that cannot run another user's cached private image on a shared
  runner (``never`` for runnerctl's locally built image, which no registry serves; ``always``
  otherwise); a named volume at ``/cache`` with ``PIP_CACHE_DIR=/cache/pip`` so pip reuses
  downloads between jobs.
- kubernetes: no privileged pods, no privilege escalation, no ``*_overwrite_allowed`` knobs,
  resource requests and limits set; the runner manager's ServiceAccount gets a namespaced Role
  with only what the executor uses.
- shell: ``bash`` and an explicit ``builds_dir`` when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from provisioner.errors import UsageError

DEFAULT_JOB_IMAGE = "runnerctl/python:3.11"
DEFAULT_PIP_CACHE_VOLUME = "runnerctl-pip-cache"
CACHE_MOUNT = "/cache"
PIP_CACHE_DIR = "/cache/pip"
PULL_POLICIES = ("always", "if-not-present", "never")
SHELLS = ("bash", "sh", "pwsh")
DOCKER_SOCKET = "/var/run/docker.sock"


class Executor(StrEnum):
    """The executors ``register`` knows how to configure."""

    SHELL = "shell"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class Shell(StrEnum):
    """Shells for the shell executor on Linux."""

    BASH = "bash"
    SH = "sh"
    PWSH = "pwsh"


class PullPolicy(StrEnum):
    """Docker/Kubernetes image pull policies."""

    ALWAYS = "always"
    IF_NOT_PRESENT = "if-not-present"
    NEVER = "never"


@dataclass(frozen=True)
class ShellOptions:
    """``--shell`` and ``--builds-dir``."""

    shell: Shell = Shell.BASH
    builds_dir: str | None = None


@dataclass(frozen=True)
class DockerOptions:
    """``--docker-*`` options."""

    image: str = DEFAULT_JOB_IMAGE
    volumes: tuple[str, ...] = ()
    pip_cache_volume: str | None = DEFAULT_PIP_CACHE_VOLUME
    pull_policy: PullPolicy | None = None
    allowed_images: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubernetesOptions:
    """``--k8s-*`` options."""

    namespace: str = "gitlab-runner"
    service_account: str = "gitlab-runner"
    image: str = DEFAULT_JOB_IMAGE
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"
    pull_policy: PullPolicy | None = None
    allowed_services: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutorConfig:
    """One executor and its options."""

    executor: Executor
    shell: ShellOptions = field(default_factory=ShellOptions)
    docker: DockerOptions = field(default_factory=DockerOptions)
    kubernetes: KubernetesOptions = field(default_factory=KubernetesOptions)


def is_local_image(image: str) -> bool:
    """True for runnerctl's own job images, which are built locally and never pulled."""
    return image.startswith("runnerctl/")


def default_pull_policy(image: str) -> PullPolicy:
    """``never`` for runnerctl's local images, ``always`` for registry images.

    ``if-not-present`` is avoided on purpose: on a shared runner it lets one project run another
    project's private image from the host cache (GitLab runner security docs).
    """
    return PullPolicy.NEVER if is_local_image(image) else PullPolicy.ALWAYS


def _allowed_image_pattern(image: str) -> str:
    # Doublestar: "runnerctl/*" matches runnerctl/python:3.11 and every other local tag.
    return "runnerctl/*" if is_local_image(image) else image


def executor_settings(config: ExecutorConfig) -> dict[str, Any]:
    """The keys of a ``[[runners]]`` entry that depend on the executor.

    Returns:
        A mapping of plain values and nested mappings (sub-tables), in the order written.

    Raises:
        UsageError: for a volume or value that cannot work.
    """
    if config.executor is Executor.SHELL:
        entry: dict[str, Any] = {"executor": "shell", "shell": config.shell.shell.value}
        if config.shell.builds_dir:
            if not config.shell.builds_dir.startswith("/"):
                raise UsageError(
                    f"--builds-dir {config.shell.builds_dir!r} is not an absolute path.",
                    hint="Use an absolute directory owned by the runner's user, e.g. "
                    "/var/lib/gitlab-runner/builds.",
                )
            entry["builds_dir"] = config.shell.builds_dir
        return entry
    if config.executor is Executor.DOCKER:
        return _docker_settings(config.docker)
    return _kubernetes_settings(config.kubernetes)


def _docker_settings(opts: DockerOptions) -> dict[str, Any]:
    volumes: list[str] = []
    for volume in opts.volumes:
        parts = volume.split(":")
        if not parts[0] or len(parts) > 3:
            raise UsageError(
                f"--docker-volume {volume!r} is not SOURCE:TARGET[:ro] or /TARGET.",
                hint="Examples: --docker-volume /srv/data:/data:ro, --docker-volume /scratch.",
            )
        volumes.append(volume)
    targets = {v.split(":")[1] if ":" in v else v for v in volumes}
    environment: list[str] = []
    if opts.pip_cache_volume:
        if CACHE_MOUNT not in targets:
            volumes.append(f"{opts.pip_cache_volume}:{CACHE_MOUNT}")
        environment.append(f"PIP_CACHE_DIR={PIP_CACHE_DIR}")
    elif CACHE_MOUNT not in targets:
        volumes.append(CACHE_MOUNT)  # what gitlab-runner register adds by default
    policy = opts.pull_policy or default_pull_policy(opts.image)
    allowed = [_allowed_image_pattern(opts.image)]
    allowed += [a for a in opts.allowed_images if a not in allowed]
    entry: dict[str, Any] = {"executor": "docker"}
    if environment:
        entry["environment"] = environment
    entry["docker"] = {
        "tls_verify": False,
        "image": opts.image,
        "privileged": False,
        "disable_entrypoint_overwrite": False,
        "oom_kill_disable": False,
        "disable_cache": False,
        "volumes": volumes,
        "pull_policy": [policy.value],
        "allowed_pull_policies": [policy.value],
        "allowed_images": allowed,
        "shm_size": 0,
    }
    return entry


def _kubernetes_settings(opts: KubernetesOptions) -> dict[str, Any]:
    _check_k8s_name(opts.namespace, "--k8s-namespace")
    _check_k8s_name(opts.service_account, "--k8s-service-account")
    policy = opts.pull_policy or default_pull_policy(opts.image)
    settings: dict[str, Any] = {
        "executor": "kubernetes",
        "kubernetes": {
            "host": "",
            "bearer_token_overwrite_allowed": False,
            "image": opts.image,
            "namespace": opts.namespace,
            "namespace_overwrite_allowed": "",
            "privileged": False,
            "allow_privilege_escalation": False,
            "cpu_request": opts.cpu_request,
            "cpu_limit": opts.cpu_limit,
            "memory_request": opts.memory_request,
            "memory_limit": opts.memory_limit,
            "pull_policy": [policy.value],
            "allowed_pull_policies": [policy.value],
            "allowed_images": [_allowed_image_pattern(opts.image)],
            "node_selector_overwrite_allowed": "",
            "pod_labels_overwrite_allowed": "",
            "service_account_overwrite_allowed": "",
            "pod_annotations_overwrite_allowed": "",
        },
    }
    if opts.allowed_services:
        # Job services need the `services` RBAC rule (provisioner/k8s/rbac.py); a runner
        # without allowed services gets no such rule.
        settings["kubernetes"]["allowed_services"] = list(opts.allowed_services)
    return settings


def _check_k8s_name(value: str, option: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) or len(value) > 63:
        raise UsageError(
            f"{option} {value!r} is not a valid Kubernetes name.",
            hint="Use lower-case letters, digits and '-', starting and ending with an "
            "alphanumeric (at most 63 characters).",
        )


def rbac_manifests(opts: KubernetesOptions, *, runner_name: str) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding for the runner manager in ``opts.namespace``.

    The Role holds only what the runner's features need (gitlab-runner's permission table,
    :mod:`provisioner.k8s.rbac`); nothing cluster-wide.
    """
    from provisioner.k8s.rbac import features_of, rules_for

    rules = [rule.as_dict() for rule in rules_for(features_of(_kubernetes_settings(opts)))]
    labels = {
        "app.kubernetes.io/name": "gitlab-runner",
        "app.kubernetes.io/managed-by": "runnerctl",
        "app.kubernetes.io/instance": _label_value(runner_name),
    }
    meta = {"namespace": opts.namespace, "labels": labels}
    role_name = f"{opts.service_account}-executor"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": opts.service_account, **meta},
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role_name, **meta},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": role_name, **meta},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role_name,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": opts.service_account,
                    "namespace": opts.namespace,
                }
            ],
        },
    ]


def render_manifests(manifests: list[dict[str, Any]]) -> str:
    """Multi-document YAML, ready for ``kubectl apply -f``."""
    import yaml

    header = "# RBAC for the gitlab-runner kubernetes executor; written by runnerctl register.\n"
    return header + yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True)


def _label_value(text: str) -> str:
    import re

    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "runner"
