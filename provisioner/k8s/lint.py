"""``runnerctl k8s lint``: the mistakes users of the gitlab-runner Helm chart make, caught offline.

A file is a YAML stream. A document with ``apiVersion`` and ``kind`` is a manifest (validated
against Kubernetes' schemas, then checked by kind); any other mapping is chart values (checked
against the chart's documented keys, then its ``runners.config`` TOML like config.toml).

=======  ========  ==========================================================================
rule     severity  fires when
=======  ========  ==========================================================================
K8S001   high      a runner token is written in the values (``runnerToken``)
K8S002   medium    a key the chart deprecates (``runnerRegistrationToken``, ``runners.tags``,
                   ``runners.locked``, ``runners.runUntagged``...)
K8S003   medium    a key the targeted chart version does not document (ignored by Helm)
K8S004   high      ``runners.config`` is not valid TOML, or has a misspelled table or key
                   (``[runners.kuberentes]``: gitlab-runner ignores it silently)
K8S005   medium    ``tags``/``locked``/``run_untagged`` in ``runners.config`` (reserved with a
                   ``glrt-`` token)
K8S006   high      RBAC grants ``*`` (explicitly, by an empty ``rbac.rules``, or by a rule
                   without resources or verbs) or cluster-wide access
K8S007   high      the service account lacks a permission the runner's features need, or the
                   runner manager runs as the namespace's ``default`` service account
K8S008   high      jobs may override the namespace, the service account or the bearer token
K8S009   high      privileged containers or privilege escalation allowed (jobs or manager)
K8S010   medium    no CPU or memory limit for job pods (or the runner manager)
K8S011   high      a Secret's ``runner-token`` is not clean base64 of a token (a newline,
                   whitespace), or the Secret lacks ``runner-token``/``runner-registration-token``
K8S012   high      a manifest is not valid for the pinned Kubernetes version
=======  ========  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, UsageError
from provisioner.k8s import rbac, secret
from provisioner.k8s.chart import chart_keys, key_problems
from provisioner.k8s.schemas import KUBERNETES_VERSION, schema_errors
from provisioner.runner_config import ConfigDocument, ConfigSyntaxError, Finding, Severity
from provisioner.runner_config.lint import misspelled_keys, reserved_keys

_OVERWRITES = ("namespace_overwrite_allowed", "service_account_overwrite_allowed")
_RBAC_KINDS = ("Role", "ClusterRole")
_POD_KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet")


@dataclass(frozen=True)
class LintReport:
    """What ``lint_text`` found in one file: its documents, by kind, and the findings."""

    source: str
    documents: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default=())
    kubernetes_version: str = KUBERNETES_VERSION
    chart_version: str = ""


def read_lint_file(path: Path) -> str:
    """The text of FILE for ``k8s lint``.

    Raises:
        UsageError: FILE is a directory or does not exist.
        ConfigError: FILE cannot be read or is not UTF-8.
    """
    if path.is_dir():
        raise UsageError(
            f"{path} is a directory.",
            hint="Pass a values file or a manifest file: `runnerctl k8s lint values.yaml`.",
        )
    if not path.exists():
        raise UsageError(
            f"{path} does not exist.",
            hint="Write one with `runnerctl k8s values --runner NAME`.",
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"Cannot read {path}: {reason}.",
            hint="Check the file's permissions and that it is a YAML file.",
        ) from None


def parse_documents(text: str, *, source: str) -> list[Any]:
    """The YAML documents of ``text`` (empty ones dropped).

    Raises:
        ConfigError: malformed YAML, with its line and column; or a document that is not a
            mapping.
    """
    from provisioner.k8s.yaml_io import YamlSyntaxError, load_all

    try:
        docs = load_all(text)
    except YamlSyntaxError as exc:
        where = f":{exc.line}:{exc.column}" if exc.line is not None else ""
        raise ConfigError(
            f"{source}{where}: not valid YAML: {exc.problem}.",
            hint="Fix the YAML (indentation, quotes), or regenerate the file with "
            "`runnerctl k8s values --runner NAME`.",
        ) from None
    for index, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            raise ConfigError(
                f"{source}: document {index + 1} is a {type(doc).__name__}, not a mapping.",
                hint="A values file and a manifest are YAML mappings (key: value).",
            )
    if not docs:
        raise ConfigError(
            f"{source} holds no YAML document.",
            hint="Pass a values file or a manifest file.",
        )
    return docs


def lint_text(text: str, *, source: str) -> LintReport:
    """Lint every document of a values or manifest file."""
    docs = parse_documents(text, source=source)
    findings: list[Finding] = []
    kinds: list[str] = []
    for doc in docs:
        if "apiVersion" in doc and "kind" in doc:
            kinds.append(str(doc["kind"]))
            findings.extend(lint_manifest(doc))
        else:
            kinds.append("values")
            findings.extend(lint_values(doc))
    order = {s: -s.rank for s in Severity}
    ranked = sorted(findings, key=lambda f: (order[f.severity], f.rule))
    return LintReport(source, tuple(kinds), tuple(ranked), chart_version=chart_keys().version)


def _finding(rule: str, severity: Severity, where: str | None, message: str, fix: str) -> Finding:
    return Finding(rule, severity, where, message, fix)


# --------------------------------------------------------------------------- values


def lint_values(values: Mapping[str, Any]) -> list[Finding]:
    """Findings for one chart values mapping."""
    keys = chart_keys()
    out: list[Finding] = []
    for problem in key_problems(values):
        if problem.deprecated:
            out.append(
                _finding(
                    "K8S002",
                    Severity.MEDIUM,
                    None,
                    f"{problem.path} is a deprecated or legacy key of chart {keys.chart} "
                    f"{keys.version}",
                    problem.fix,
                )
            )
        else:
            out.append(
                _finding(
                    "K8S003",
                    Severity.MEDIUM,
                    None,
                    f"{problem.path} is not a key of chart {keys.chart} {keys.version}: the "
                    "chart ignores it"
                    + (f" (did you mean {problem.suggestion}?)" if problem.suggestion else ""),
                    problem.fix,
                )
            )
    if values.get("runnerToken"):
        out.append(
            _finding(
                "K8S001",
                Severity.HIGH,
                None,
                "runnerToken holds the runner token in the values file (and in Helm's release "
                "history)",
                "Remove it; put the token in a Secret named by runners.secret "
                "(`runnerctl k8s values --runner NAME` writes one).",
            )
        )
    runners = values.get("runners")
    runners = runners if isinstance(runners, Mapping) else {}
    entry = _template_entry(runners.get("config"), out)
    out.extend(_rbac_values(values, entry))
    if entry is not None:
        out.extend(_entry_findings(entry))
    out.extend(_manager_findings(values))
    return out


def _template_entry(config: Any, out: list[Finding]) -> dict[str, Any] | None:
    if not config:
        return None
    if not isinstance(config, str):
        out.append(
            _finding(
                "K8S004",
                Severity.HIGH,
                None,
                "runners.config is not a string",
                "Write runners.config as a TOML block string (runners.config: |).",
            )
        )
        return None
    # Helm renders runners.config through `tpl`; `{{ ... }}` only appears inside strings in
    # valid templates, so parsing the raw text as TOML is faithful.
    try:
        doc = ConfigDocument.parse(config, source="runners.config")
    except ConfigSyntaxError as exc:
        out.append(
            _finding(
                "K8S004",
                Severity.HIGH,
                None,
                f"runners.config is not valid TOML: {exc.message}",
                "Fix the TOML; gitlab-runner refuses a template it cannot parse.",
            )
        )
        return None
    entries = list(doc.iter_runner_plain())
    if len(entries) != 1:
        out.append(
            _finding(
                "K8S004",
                Severity.HIGH,
                None,
                f"runners.config has {len(entries)} [[runners]] entries; the chart's "
                "register step uses exactly one",
                "Keep one [[runners]] entry per chart release.",
            )
        )
        return entries[0] if entries else None
    for key in doc.plain():
        if key != "runners":
            out.append(
                _finding(
                    "K8S004",
                    Severity.HIGH,
                    None,
                    f"runners.config sets the global key {key!r}, which the template ignores",
                    "Set global settings through the chart's values (concurrent, "
                    "checkInterval, logLevel...).",
                )
            )
    return entries[0]


def _entry_findings(entry: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for path, close in misspelled_keys(entry):
        out.append(
            _finding(
                "K8S004",
                Severity.HIGH,
                None,
                f"runners.config: unknown key {path}"
                + (f" (did you mean {close}?)" if close else "")
                + ": gitlab-runner ignores it silently",
                f"Rename it to {close}." if close else "Remove it, or fix its spelling.",
            )
        )
    found = reserved_keys(entry)
    if found:
        out.append(
            _finding(
                "K8S005",
                Severity.MEDIUM,
                None,
                f"runners.config sets {', '.join(found)}: with a glrt- token GitLab owns these "
                'and register fails with "FATAL: Runner configuration other than name and '
                'executor configuration is reserved"',
                "Remove them; set tags and flags in GitLab (`runnerctl register --tag T ...`).",
            )
        )
    kube = entry.get("kubernetes")
    if not isinstance(kube, Mapping):
        return out
    for key in _OVERWRITES:
        if kube.get(key):
            out.append(
                _finding(
                    "K8S008",
                    Severity.HIGH,
                    None,
                    f"runners.config: {key} = {kube[key]!r} lets jobs choose where or as whom "
                    "their pods run",
                    f'Set {key} = "" (the default), or drop it.',
                )
            )
    if kube.get("bearer_token_overwrite_allowed") is True:
        out.append(
            _finding(
                "K8S008",
                Severity.HIGH,
                None,
                "runners.config: bearer_token_overwrite_allowed = true lets jobs bring their "
                "own Kubernetes credentials",
                "Set bearer_token_overwrite_allowed = false.",
            )
        )
    if kube.get("privileged") is True:
        out.append(
            _finding(
                "K8S009",
                Severity.HIGH,
                None,
                "runners.config: privileged = true: any job can take over the node",
                "Set privileged = false; build images with a rootless builder.",
            )
        )
    escalation = kube.get("allow_privilege_escalation")
    if escalation is not False:
        out.append(
            _finding(
                "K8S009",
                Severity.HIGH if escalation is True else Severity.MEDIUM,
                None,
                "runners.config: allow_privilege_escalation is "
                + ("true" if escalation is True else "not set (Kubernetes then allows it)"),
                "Set allow_privilege_escalation = false in [runners.kubernetes].",
            )
        )
    absent = [k for k in ("cpu_limit", "memory_limit") if not kube.get(k)]
    if absent:
        out.append(
            _finding(
                "K8S010",
                Severity.MEDIUM,
                None,
                f"runners.config: no {' or '.join(absent)}: one job can starve the node",
                'Set cpu_limit and memory_limit in [runners.kubernetes] (e.g. "2", "2Gi").',
            )
        )
    return out


def _rbac_values(values: Mapping[str, Any], entry: Mapping[str, Any] | None) -> list[Finding]:
    out: list[Finding] = []
    settings = values.get("rbac")
    settings = settings if isinstance(settings, Mapping) else {}
    account = values.get("serviceAccount")
    account = account if isinstance(account, Mapping) else {}
    raw_rules = settings.get("rules")
    rules = [r for r in raw_rules if isinstance(r, Mapping)] if isinstance(raw_rules, list) else []
    features = rbac.features_of(entry or {"executor": "kubernetes"})
    if settings.get("create"):
        if not rules:
            out.append(
                _finding(
                    "K8S006",
                    Severity.HIGH,
                    None,
                    "rbac.create is true and rbac.rules is empty: the chart then grants every "
                    "verb on every resource of the core API group",
                    "List the rules the runner needs (`runnerctl k8s values --runner NAME` "
                    "derives them from its features).",
                )
            )
        out.extend(_wildcard_findings(rules, "rbac.rules"))
        if settings.get("clusterWideAccess"):
            out.append(
                _finding(
                    "K8S006",
                    Severity.HIGH,
                    None,
                    "rbac.clusterWideAccess is true: the runner gets a ClusterRole in every "
                    "namespace",
                    "Set rbac.clusterWideAccess: false and runners.jobNamespace to the job "
                    "namespace.",
                )
            )
        if rules:
            out.extend(_missing_findings(rules, features, "rbac.rules"))
    elif not (account.get("name") or settings.get("serviceAccountName")):
        out.append(
            _finding(
                "K8S007",
                Severity.HIGH,
                None,
                "rbac.create is false and no serviceAccount.name is set: the runner runs as the "
                "namespace's default service account (`secrets is forbidden: User \"system:"
                'serviceaccount:NS:default"`)',
                "Set rbac.create: true with explicit rbac.rules, or serviceAccount.name to an "
                "account bound to a Role with those rules.",
            )
        )
    return out


def _wildcard_findings(rules: list[Mapping[str, Any]], where: str) -> list[Finding]:
    return [
        _finding(
            "K8S006",
            Severity.HIGH,
            None,
            f"{where}: {problem}",
            "Name the API groups, resources and verbs the runner needs; never '*'.",
        )
        for problem in rbac.wildcards(rules)
    ]


def _missing_findings(
    rules: list[Mapping[str, Any]], features: frozenset[rbac.Feature], where: str
) -> list[Finding]:
    lacking = rbac.missing(rules, features)
    if not lacking:
        return []
    shown = "; ".join(
        f"{(r.api_group + '/') if r.api_group else ''}{r.resource}: {', '.join(r.verbs)}"
        for r in lacking
    )
    enabled = ", ".join(sorted(f.value for f in features))
    return [
        _finding(
            "K8S007",
            Severity.HIGH,
            None,
            f"{where} lack what the runner's features ({enabled}) need: {shown}; jobs fail with "
            '"... is forbidden: User "system:serviceaccount:..." cannot ..."',
            "Add the missing verbs (the table is in docs/kubernetes.md), or regenerate the "
            "values with `runnerctl k8s values --runner NAME`.",
        )
    ]


def _manager_findings(values: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    context = values.get("securityContext")
    if isinstance(context, Mapping) and (
        context.get("privileged") is True or context.get("allowPrivilegeEscalation") is True
    ):
        out.append(
            _finding(
                "K8S009",
                Severity.HIGH,
                None,
                "securityContext allows privileged mode or privilege escalation for the "
                "runner manager",
                "Set securityContext.privileged: false and allowPrivilegeEscalation: false.",
            )
        )
    resources = values.get("resources")
    if "resources" in values and not (isinstance(resources, Mapping) and resources.get("limits")):
        out.append(
            _finding(
                "K8S010",
                Severity.LOW,
                None,
                "resources has no limits for the runner manager pod",
                "Set resources.limits.cpu and resources.limits.memory (e.g. 500m, 256Mi).",
            )
        )
    return out


# --------------------------------------------------------------------------- manifests


def lint_manifest(manifest: Mapping[str, Any]) -> list[Finding]:
    """Findings for one Kubernetes manifest: schema first, then the checks of its kind."""
    kind = str(manifest.get("kind"))
    meta = manifest.get("metadata")
    name = str(meta.get("name")) if isinstance(meta, Mapping) and meta.get("name") else None
    label = f"{kind}/{name}" if name else kind
    out = [
        _finding(
            "K8S012",
            Severity.HIGH,
            label,
            f"not a valid {kind} for Kubernetes {KUBERNETES_VERSION}: {error}",
            "Fix the field (kubectl explain helps), or regenerate the manifest with runnerctl.",
        )
        for error in schema_errors(manifest)
    ]
    if kind == "Secret":
        out.extend(_secret_findings(manifest, label))
    elif kind in _RBAC_KINDS:
        raw = manifest.get("rules")
        rules = [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []
        out.extend(replace_where(_wildcard_findings(rules, "rules"), label))
        if kind == "ClusterRole":
            out.append(
                _finding(
                    "K8S006",
                    Severity.HIGH,
                    label,
                    "a ClusterRole gives the runner its rights in every namespace",
                    "Use a namespaced Role in the job namespace.",
                )
            )
        if rules and _looks_like_runner_role(rules):
            base = frozenset({rbac.Feature.BASE, rbac.Feature.ATTACH})
            out.extend(replace_where(_missing_findings(rules, base, "rules"), label))
    elif kind in _POD_KINDS:
        out.extend(_pod_findings(manifest, label))
    return out


def replace_where(findings: list[Finding], where: str) -> list[Finding]:
    """``findings`` attributed to ``where``."""
    return [Finding(f.rule, f.severity, where, f.message, f.fix) for f in findings]


def _looks_like_runner_role(rules: list[Mapping[str, Any]]) -> bool:
    return any(resource == ("", "pods/exec") for resource in rbac.granted(rules))


def _secret_findings(manifest: Mapping[str, Any], label: str) -> list[Finding]:
    out: list[Finding] = []
    data = manifest.get("data")
    data = data if isinstance(data, Mapping) else {}
    plain = manifest.get("stringData")
    plain = plain if isinstance(plain, Mapping) else {}
    keys = set(data) | set(plain)
    if secret.TOKEN_KEY not in keys and secret.REGISTRATION_KEY not in keys:
        return out  # not a runner token Secret
    for key in (secret.TOKEN_KEY, secret.REGISTRATION_KEY):
        if key not in keys:
            out.append(
                _finding(
                    "K8S011",
                    Severity.HIGH,
                    label,
                    f"the Secret has no {key!r} key; the chart expects both runner-token and "
                    "runner-registration-token (chart#527)",
                    f'Add {key}: "" (empty is fine for runner-registration-token).',
                )
            )
    for key in (secret.TOKEN_KEY, secret.REGISTRATION_KEY):
        if key in data:
            raw = data[key]
            value = secret.decode(str(raw)) if raw is not None else b""
            if value is None:
                out.append(_bad_token(label, key, "is not valid base64"))
                continue
        elif key in plain:
            value = str(plain[key] or "").encode("utf-8")
        else:
            continue
        if value != value.strip():
            out.append(
                _bad_token(
                    label,
                    key,
                    "ends with a newline or whitespace (`echo TOKEN | base64` adds one): "
                    'GitLab refuses it with `invalid header field for "Private-Token"`',
                )
            )
        elif key == secret.TOKEN_KEY and not value:
            out.append(_bad_token(label, key, "is empty"))
    return out


def _bad_token(label: str, key: str, problem: str) -> Finding:
    return _finding(
        "K8S011",
        Severity.HIGH,
        label,
        f"{key} {problem}",
        'Encode the token without a newline (`printf %s "$TOKEN" | base64 -w0`), or let '
        "`runnerctl k8s values --runner NAME` write the Secret.",
    )


def _pod_findings(manifest: Mapping[str, Any], label: str) -> list[Finding]:
    spec = manifest.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    if manifest.get("kind") != "Pod":
        template = spec.get("template")
        template = template if isinstance(template, Mapping) else {}
        spec = template.get("spec") if isinstance(template.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    out: list[Finding] = []
    containers = spec.get("containers")
    for container in containers if isinstance(containers, list) else []:
        if not isinstance(container, Mapping):
            continue
        context = container.get("securityContext")
        context = context if isinstance(context, Mapping) else {}
        name = container.get("name")
        if (
            context.get("privileged") is True
            or context.get("allowPrivilegeEscalation") is not False
        ):
            out.append(
                _finding(
                    "K8S009",
                    Severity.HIGH,
                    label,
                    f"container {name!r} may run privileged or escalate privileges",
                    "Set securityContext.privileged: false and allowPrivilegeEscalation: false.",
                )
            )
        resources = container.get("resources")
        limits = resources.get("limits") if isinstance(resources, Mapping) else None
        if not (isinstance(limits, Mapping) and limits.get("cpu") and limits.get("memory")):
            out.append(
                _finding(
                    "K8S010",
                    Severity.MEDIUM,
                    label,
                    f"container {name!r} has no CPU and memory limits",
                    "Set resources.limits.cpu and resources.limits.memory.",
                )
            )
    return out
