"""Helm chart values (and the token Secret) for a kubernetes runner registered by runnerctl.

The values carry what the chart needs and nothing it deprecates:

- ``gitlabUrl``; ``concurrent`` and ``checkInterval`` from config.toml's global section;
- ``runners.config``: the TOML of the runner's ``[[runners]]`` entry without its token, id and
  token dates (the chart's register step fills those in from the Secret);
- ``runners.secret`` naming the Secret with ``runner-token``, so no token is in the values;
- ``runners.jobNamespace``: the entry's namespace, so the chart's Role lands where jobs run;
- ``rbac.create`` with explicit least-privilege ``rbac.rules`` (see :mod:`provisioner.k8s.rbac`);
  an empty list would make the chart grant every verb on every core resource;
- ``serviceAccount`` created under a fixed name, and a restricted pod and container security
  context and resources for the runner manager.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, UsageError
from provisioner.k8s import rbac, secret
from provisioner.k8s.chart import chart_keys
from provisioner.runner_config import ConfigDocument

TEMPLATE_DROPPED = ("id", "token", "token_obtained_at", "token_expires_at")
DEFAULT_SERVICE_ACCOUNT = "gitlab-runner"
# gitlab-runner's own defaults when the global section leaves them out.
DEFAULT_CONCURRENT = 1
DEFAULT_CHECK_INTERVAL = 3
# The chart's alpine image runs as uid 100 with group 65533 (values.yaml podSecurityContext).
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": 100, "fsGroup": 65533}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": False,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}
MANAGER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}


@dataclass(frozen=True)
class ChartBundle:
    """What ``helm install`` needs for one runner: values and the Secret they name."""

    runner: str
    namespace: str
    values: dict[str, Any]
    secret: dict[str, Any]
    features: frozenset[rbac.Feature]
    rules: tuple[rbac.Rule, ...]


@dataclass(frozen=True)
class WrittenBundle:
    """Where the values and the Secret were written (or already held the same text)."""

    runner: str
    namespace: str
    values_path: Path
    secret_path: Path
    values_changed: bool
    secret_changed: bool
    features: tuple[str, ...]
    rules: tuple[rbac.Rule, ...]
    chart: str
    chart_version: str


def find_entry(document: ConfigDocument, name: str) -> dict[str, Any]:
    """The ``[[runners]]`` entry called ``name``.

    Raises:
        UsageError: no such runner, several of them, or not a kubernetes runner.
    """
    entries = list(document.iter_runner_plain())
    hits = [e for e in entries if e.get("name") == name]
    known = ", ".join(repr(str(e.get("name"))) for e in entries) or "none"
    if not hits:
        raise UsageError(
            f"No runner named {name!r} in {document.source}.",
            hint=f"Configured runners: {known}. Register one with "
            "`runnerctl register --executor kubernetes ...`.",
        )
    if len(hits) > 1:
        raise UsageError(
            f"{len(hits)} runners are named {name!r} in {document.source}.",
            hint="Remove the duplicates with `runnerctl unregister --id ID`.",
        )
    entry = hits[0]
    if entry.get("executor") != "kubernetes":
        raise UsageError(
            f"Runner {name!r} uses the {entry.get('executor') or 'default'} executor, not "
            "kubernetes.",
            hint="Chart values are for kubernetes runners: register one with "
            "`runnerctl register --executor kubernetes ...`.",
        )
    return entry


def template_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as ``runners.config`` carries it: without token, id and token dates."""
    return {k: v for k, v in entry.items() if k not in TEMPLATE_DROPPED}


def runner_config_toml(entry: Mapping[str, Any]) -> str:
    """The ``[[runners]]`` TOML for ``runners.config``."""
    doc = ConfigDocument.empty()
    for key in list(doc.document):  # the template holds the runner only, no global section
        del doc.document[key]
    doc.add_runner(template_entry(entry))
    return doc.dumps().lstrip("\n")


def _dns_label(text: str) -> str:
    value = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")
    return value or "runner"


def build_bundle(
    document: ConfigDocument,
    *,
    runner: str,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    secret_name: str | None = None,
) -> ChartBundle:
    """Values and Secret for the runner called ``runner`` in ``document``.

    Raises:
        UsageError: unknown or non-kubernetes runner.
        ConfigError: the entry has no token or no URL.
    """
    entry = find_entry(document, runner)
    token = str(entry.get("token") or "")
    url = str(entry.get("url") or "")
    if not token or not url:
        raise ConfigError(
            f"Runner {runner!r} in {document.source} has no {'token' if not token else 'url'}.",
            hint=f"Register it again: `runnerctl register --executor kubernetes --name {runner} "
            "...` (an existing runner whose token still works is reused).",
        )
    kube = entry.get("kubernetes")
    namespace = str(kube.get("namespace") or "") if isinstance(kube, Mapping) else ""
    if not namespace:
        raise ConfigError(
            f"Runner {runner!r} has no [runners.kubernetes] namespace.",
            hint="Re-run `runnerctl register --executor kubernetes --k8s-namespace NS ...`.",
        )
    features = rbac.features_of(entry)
    rules = rbac.rules_for(features)
    settings = document.plain()
    label = _dns_label(runner)
    name = secret_name or f"{label}-runner-token"
    values: dict[str, Any] = {
        "gitlabUrl": url,
        "concurrent": int(settings.get("concurrent", DEFAULT_CONCURRENT)),
        # gitlab-runner reads check_interval <= 0 as its default of 3 seconds.
        "checkInterval": int(settings.get("check_interval", 0)) or DEFAULT_CHECK_INTERVAL,
        "rbac": {
            "create": True,
            "clusterWideAccess": False,
            "rules": [rule.as_dict() for rule in rules],
        },
        "serviceAccount": {"create": True, "name": service_account},
        "runners": {
            "name": runner,
            "secret": name,
            "jobNamespace": namespace,
            "config": runner_config_toml(entry),
        },
        "podSecurityContext": dict(POD_SECURITY_CONTEXT),
        "securityContext": {**CONTAINER_SECURITY_CONTEXT},
        "resources": {k: dict(v) for k, v in MANAGER_RESOURCES.items()},
    }
    labels = {
        "app.kubernetes.io/name": "gitlab-runner",
        "app.kubernetes.io/managed-by": "runnerctl",
        "app.kubernetes.io/instance": label,
    }
    token_secret = secret.token_secret(name=name, namespace=namespace, token=token, labels=labels)
    return ChartBundle(runner, namespace, values, token_secret, features, rules)


def render_values(bundle: ChartBundle) -> str:
    """values.yaml text, with a header naming the chart version it was checked against."""
    from provisioner.k8s.yaml_io import dump_values

    keys = chart_keys()
    header = (
        f"# Helm values for runner {bundle.runner!r}; written by runnerctl.\n"
        f"# Checked against the keys of chart {keys.chart} {keys.version} "
        f"(app {keys.app_version}).\n"
        f"# The runner token is not here: it is in the Secret {bundle.secret['metadata']['name']}"
        f" (runners.secret).\n"
    )
    return header + dump_values(bundle.values)


def render_secret(bundle: ChartBundle) -> str:
    """The Secret manifest, for ``kubectl apply -f``."""
    from provisioner.k8s.yaml_io import dump_manifest

    header = "# Runner token for the gitlab-runner chart (runners.secret); keep this file 0600.\n"
    return header + dump_manifest(bundle.secret)


def chart_objects(values: Mapping[str, Any], *, release: str = "gitlab-runner") -> list[Any]:
    """The RBAC objects and the Deployment skeleton the chart renders from ``values``.

    This follows ``templates/role.yaml``, ``role-binding.yaml``, ``service-account.yaml`` and
    the security/resources part of ``deployment.yaml`` of the targeted chart version, so that
    the values can be proven against Kubernetes' schemas without Helm or a cluster.
    """
    rbac_values = values.get("rbac") if isinstance(values.get("rbac"), Mapping) else {}
    assert isinstance(rbac_values, Mapping)
    runners = values.get("runners") if isinstance(values.get("runners"), Mapping) else {}
    assert isinstance(runners, Mapping)
    account_values = values.get("serviceAccount")
    account_values = account_values if isinstance(account_values, Mapping) else {}
    account = str(account_values.get("name") or release)
    namespace = str(values.get("namespace") or "default")
    job_namespace = str(runners.get("jobNamespace") or namespace)
    objects: list[Any] = []
    if rbac_values.get("create"):
        rules = [
            {
                "apiGroups": list(rule.get("apiGroups") or [""]),
                "resources": list(rule.get("resources") or ["*"]),
                "verbs": list(rule.get("verbs") or ["*"]),
            }
            for rule in (rbac_values.get("rules") or [{}])
            if isinstance(rule, Mapping)
        ]
        meta = {"name": release, "namespace": job_namespace}
        objects += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": release,
                },
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
            },
        ]
    container: dict[str, Any] = {"name": release, "image": "registry.gitlab.com/gitlab-runner"}
    for key in ("securityContext", "resources"):
        if isinstance(values.get(key), Mapping) and values.get(key):
            container[key] = dict(values[key])
    pod: dict[str, Any] = {"serviceAccountName": account, "containers": [container]}
    if isinstance(values.get("podSecurityContext"), Mapping):
        pod["securityContext"] = dict(values["podSecurityContext"])
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": release},
            "spec": {
                "selector": {"matchLabels": {"app": release}},
                "template": {"metadata": {"labels": {"app": release}}, "spec": pod},
            },
        }
    )
    return objects


def default_paths(runner: str, directory: Path) -> tuple[Path, Path]:
    """``<dir>/<runner>-values.yaml`` and ``<dir>/<runner>-token-secret.yaml``."""
    label = _dns_label(runner)
    return directory / f"{label}-values.yaml", directory / f"{label}-token-secret.yaml"


def secret_path_for(values_path: Path) -> Path:
    """The Secret file written beside a values file: ``<stem>-token-secret.yaml``."""
    stem = values_path.name.removesuffix(".yaml").removesuffix(".yml")
    return values_path.with_name(f"{stem}-token-secret.yaml")


def schema_problems(bundle: ChartBundle) -> list[str]:
    """Schema errors in the Secret and in what the chart renders from the values."""
    from provisioner.k8s.schemas import schema_errors

    problems: list[str] = []
    for manifest in [bundle.secret, *chart_objects(bundle.values)]:
        problems += [f"{manifest['kind']}: {e}" for e in schema_errors(manifest)]
    return problems


def write_bundle(bundle: ChartBundle, *, values_path: Path, secret_path: Path) -> WrittenBundle:
    """Prove the bundle against Kubernetes' schemas, then write both files (Secret 0600).

    Raises:
        UsageError: a target is a directory or in a missing directory.
        ConfigError: the manifests do not validate or a file cannot be written; nothing
            is written then.
    """
    from provisioner.k8s.files import check_target, write_files

    check_target(values_path, option="values file")
    check_target(secret_path, option="secret file")
    problems = schema_problems(bundle)
    if problems:
        raise ConfigError(
            f"The manifests for runner {bundle.runner!r} are not valid Kubernetes objects: "
            f"{problems[0]}",
            hint="Check the runner's [runners.kubernetes] settings; nothing was written.",
        )
    values_changed, secret_changed = write_files(
        [(secret_path, render_secret(bundle), 0o600), (values_path, render_values(bundle), 0o644)]
    )[::-1]
    keys = chart_keys()
    return WrittenBundle(
        runner=bundle.runner,
        namespace=bundle.namespace,
        values_path=values_path,
        secret_path=secret_path,
        values_changed=values_changed,
        secret_changed=secret_changed,
        features=tuple(sorted(f.value for f in bundle.features)),
        rules=bundle.rules,
        chart=keys.chart,
        chart_version=keys.version,
    )


def write_for_document(
    document: ConfigDocument,
    *,
    runner: str,
    directory: Path,
    values_path: Path | None = None,
    secret_path: Path | None = None,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
) -> WrittenBundle:
    """Build and write the chart files for ``runner`` (defaults: in ``directory``)."""
    default_values, default_secret = default_paths(runner, directory)
    target = values_path or default_values
    secret_target = secret_path or (secret_path_for(target) if values_path else default_secret)
    if target.resolve() == secret_target.resolve():
        raise UsageError(
            f"The values file and the Secret file are both {target}.",
            hint="Give them different names (--values-file, --secret-file).",
        )
    from provisioner.k8s.files import check_target

    check_target(target, option="values file")
    check_target(secret_target, option="secret file")
    bundle = build_bundle(document, runner=runner, service_account=service_account)
    return write_bundle(bundle, values_path=target, secret_path=secret_target)


def write_chart_files(
    config_path: Path,
    *,
    runner: str,
    values_path: Path | None = None,
    secret_path: Path | None = None,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    on_read: Callable[[str], None] | None = None,
) -> WrittenBundle:
    """``runnerctl k8s values``: read config.toml, write values and Secret beside it by default.

    ``on_read`` receives the text of config.toml first, so that the caller's redactor learns its
    tokens before any error could quote them.

    Raises:
        ConfigError: config.toml unreadable or malformed, or a file cannot be written.
        UsageError: unknown runner, not a kubernetes runner, or a target that is a directory.
    """
    from provisioner.runner_config import load_config

    document = load_config(config_path)
    if on_read is not None:
        on_read(document.dumps())
    return write_for_document(
        document,
        runner=runner,
        directory=config_path.parent,
        values_path=values_path,
        secret_path=secret_path,
        service_account=service_account,
    )
