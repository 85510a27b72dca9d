"""Security lint for config.toml: every finding has a rule id, a severity and a concrete fix.

Rules (from gitlab-runner's security docs; see docs/ for the long form):

==========  ========  =====================================================================
rule        severity  fires when
==========  ========  =====================================================================
RC001       high      ``privileged = true`` (docker, docker services, kubernetes)
RC002       high      the Docker socket is mounted into jobs (docker ``volumes`` or a
                      kubernetes ``host_path`` volume)
RC003       medium    ``pull_policy`` (or ``allowed_pull_policies``) allows
                      ``if-not-present`` or ``never`` on a runner not marked as locked to one
                      project (see below)
RC004       low       a docker or kubernetes runner has no ``allowed_images``
RC005       medium    ``[runners.docker] host`` is ``tcp://`` and ``tls_verify`` is not true
RC006       high      config.toml is readable or writable by group or others (it holds tokens)
RC007       high      a token, password or secret is set in a runner's ``environment``
RC008       medium    a misspelled table or key in a runner or its ``[runners.kubernetes]``
                      (``[runners.kuberentes]``): gitlab-runner ignores it without a word
RC009       medium    ``tags``/``locked``/``run_untagged`` (server-side settings) in a
                      runner whose token is ``glrt-``: GitLab owns them
==========  ========  =====================================================================

**RC003 heuristic.** Whether a runner is locked to a single project is a server-side setting
that the file cannot show. With ``if-not-present``/``never`` a job can run another project's
private image that is already cached on the host, which is only harmless when every job on the
runner comes from one project. runnerctl therefore assumes a runner is shared unless its
``[[runners]]`` section carries the comment ``# runnerctl: single-project`` (anywhere inside
that runner's section). With that marker the rule stays silent; without it, it fires.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from provisioner.runner_config import schema
from provisioner.runner_config.document import ConfigDocument
from provisioner.runner_config.model import Runner, build_model, is_secret_env_name
from provisioner.secrets import contains_secret

SINGLE_PROJECT_MARKER = "runnerctl: single-project"
# What `gitlab-runner register` refuses with a glrt- token ("Runner configuration other than
# name and executor configuration is reserved"), in the spellings users put in config files.
RESERVED_KEYS = (
    "tags",
    "tag_list",
    "tag-list",
    "locked",
    "run_untagged",
    "run-untagged",
    "access_level",
    "maximum_timeout",
    "paused",
    "maintenance_note",
)
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
RISKY_PULL_POLICIES = ("if-not-present", "never")


class Severity(StrEnum):
    """How urgent a finding is, lowest first."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for info up to 3 for high, for threshold comparisons."""
        return list(Severity).index(self)


@dataclass(frozen=True)
class Finding:
    """One security risk: which rule, how bad, which runner, what is wrong, how to fix it."""

    rule: str
    severity: Severity
    runner: str | None
    message: str
    fix: str


def at_or_above(findings: tuple[Finding, ...], threshold: Severity) -> tuple[Finding, ...]:
    """The findings whose severity is ``threshold`` or worse."""
    return tuple(f for f in findings if f.severity.rank >= threshold.rank)


def lint_document(document: ConfigDocument, *, path: Path | None = None) -> tuple[Finding, ...]:
    """Run every rule on ``document``; ``path`` enables the file-permission rule (RC006)."""
    findings: list[Finding] = []
    if path is not None:
        findings.extend(_file_mode(path))
    model = build_model(document.plain())
    tables = document.runner_tables()
    plain = list(document.iter_runner_plain())
    for index, runner in enumerate(model.runners):
        raw = tables[index].as_string() if index < len(tables) else ""
        findings.extend(_runner_findings(runner, raw))
        if index < len(plain):
            findings.extend(_k8s_entry_findings(runner.label, plain[index]))
    order = {s: -s.rank for s in Severity}
    return tuple(sorted(findings, key=lambda f: (order[f.severity], f.rule)))


def _runner_findings(runner: Runner, raw: str) -> list[Finding]:
    out: list[Finding] = []
    name = runner.label
    docker = runner.docker
    kube = runner.kubernetes
    executor = runner.executor or ""
    if docker and (docker.privileged or docker.services_privileged):
        which = "privileged" if docker.privileged else "services_privileged"
        out.append(
            Finding(
                "RC001",
                Severity.HIGH,
                name,
                f"[runners.docker] {which} = true: any job can take root on the host",
                "Set privileged = false. If jobs need Docker-in-Docker, give them a dedicated "
                "runner on an ephemeral VM and restrict allowed_privileged_images.",
            )
        )
    if kube and kube.privileged:
        out.append(
            Finding(
                "RC001",
                Severity.HIGH,
                name,
                "[runners.kubernetes] privileged = true: any job can take over the node",
                "Set privileged = false; build images with a rootless builder (buildah, kaniko).",
            )
        )
    if docker:
        for mount in docker.volumes:
            source = mount.split(":", 1)[0]
            if source in DOCKER_SOCKETS:
                out.append(_socket_finding(name, f"[runners.docker] volumes mounts {source}"))
    if kube:
        for volume in kube.host_path_volumes:
            if (volume.host_path or "") in DOCKER_SOCKETS:
                label = f" {volume.name!r}" if volume.name else ""
                what = f"kubernetes host_path volume{label} mounts {volume.host_path}"
                out.append(_socket_finding(name, what))
    out.extend(_pull_policy(runner, raw))
    if executor.startswith("docker") and docker is not None and docker.allowed_images is None:
        out.append(_allowed_images(name, "docker"))
    if executor == "kubernetes" and kube is not None and kube.allowed_images is None:
        out.append(_allowed_images(name, "kubernetes"))
    if docker and (docker.host or "").startswith("tcp://") and docker.tls_verify is not True:
        out.append(
            Finding(
                "RC005",
                Severity.MEDIUM,
                name,
                f"[runners.docker] host = {docker.host!r} without tls_verify = true: the Docker "
                "API is reached in clear text and without authentication",
                "Set tls_verify = true and tls_cert_path to the client certificate directory, "
                "or use the local unix socket.",
            )
        )
    for entry in runner.environment:
        env_name, sep, value = entry.partition("=")
        if sep and value and (is_secret_env_name(env_name) or contains_secret(value)):
            out.append(
                Finding(
                    "RC007",
                    Severity.HIGH,
                    name,
                    f"environment sets {env_name} to a secret: every job of every project on "
                    "this runner can read it",
                    "Remove it from config.toml and use a masked, protected CI/CD variable "
                    "instead.",
                )
            )
    return out


def _socket_finding(name: str, what: str) -> Finding:
    return Finding(
        "RC002",
        Severity.HIGH,
        name,
        f"{what}: jobs control the host's Docker daemon (container breakout)",
        "Remove the socket mount; build images with Docker-in-Docker on a dedicated runner, "
        "or with a rootless builder (buildah, kaniko).",
    )


def _allowed_images(name: str, section: str) -> Finding:
    return Finding(
        "RC004",
        Severity.LOW,
        name,
        f"[runners.{section}] has no allowed_images: jobs may run any image",
        f'Set allowed_images in [runners.{section}] (e.g. ["registry.example.com/ci/*:*"]).',
    )


def _pull_policy(runner: Runner, raw: str) -> list[Finding]:
    if SINGLE_PROJECT_MARKER in raw:
        return []
    out: list[Finding] = []
    for section, settings in (("docker", runner.docker), ("kubernetes", runner.kubernetes)):
        if settings is None:
            continue
        policies = set(settings.pull_policy) | set(settings.allowed_pull_policies or ())
        risky = sorted(policies & set(RISKY_PULL_POLICIES))
        if risky:
            out.append(
                Finding(
                    "RC003",
                    Severity.MEDIUM,
                    runner.label,
                    f"[runners.{section}] allows pull_policy {', '.join(risky)}: on a shared "
                    "runner one project can run another project's cached private image",
                    'Use pull_policy = ["always"] on shared runners; if this runner is locked '
                    f"to one project, add the comment '# {SINGLE_PROJECT_MARKER}' to its "
                    "[[runners]] section.",
                )
            )
    return out


def _file_mode(path: Path) -> list[Finding]:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return []
    if not mode & 0o077:
        return []
    return [
        Finding(
            "RC006",
            Severity.HIGH,
            None,
            f"{path} has mode {mode:04o}: group or others can read the runner tokens in it",
            f"chmod 600 {path} (and keep it owned by the user gitlab-runner runs as).",
        )
    ]


def misspelled_keys(entry: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Unknown keys of a runner entry and of its ``[runners.kubernetes]`` table, each with the
    documented key it most resembles (``None`` when nothing is close)."""
    out: list[tuple[str, str | None]] = []
    sections: list[tuple[str, Mapping[str, Any], str]] = [("runners", entry, "RunnerConfig")]
    kube = entry.get("kubernetes")
    if isinstance(kube, Mapping):
        sections.append(("runners.kubernetes", kube, "KubernetesConfig"))
    for where, table, name in sections:
        spec = schema.section(name)
        for key in table:
            if spec.match(str(key))[0] is None and str(key) not in RESERVED_KEYS:
                close = difflib.get_close_matches(str(key), list(spec.fields), n=1, cutoff=0.75)
                out.append((f"{where}.{key}", f"{where}.{close[0]}" if close else None))
    return out


def reserved_keys(entry: Mapping[str, Any]) -> list[str]:
    """The server-side settings (tags, locked, run_untagged...) set in a runner entry."""
    return [key for key in RESERVED_KEYS if key in entry]


def _k8s_entry_findings(name: str, entry: Mapping[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for path, close in misspelled_keys(entry):
        header = close.rsplit(".", 1)[-1] if close else None
        out.append(
            Finding(
                "RC008",
                Severity.MEDIUM,
                name,
                f"unknown key {path}: gitlab-runner ignores it silently"
                + (f" (did you mean {close}?)" if close else ""),
                f"Rename it to {header}." if header else "Remove it, or fix its spelling.",
            )
        )
    token = str(entry.get("token") or "")
    found = reserved_keys(entry)
    if token.startswith("glrt-") and found:
        out.append(
            Finding(
                "RC009",
                Severity.MEDIUM,
                name,
                f"{', '.join(found)} set in the runner section with a glrt- token: GitLab owns "
                'these settings; passed to `gitlab-runner register` they fail with "FATAL: '
                'Runner configuration other than name and executor configuration is reserved"',
                "Remove them here and set them in GitLab: `runnerctl register --tag T "
                "[--locked] [--run-untagged]` updates the runner in place.",
            )
        )
    return out
