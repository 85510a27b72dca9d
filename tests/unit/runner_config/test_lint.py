"""Each security rule fires on the risky setting and stays silent on the safe one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.runner_config import ConfigDocument, Finding, Severity, at_or_above, lint_document
from provisioner.runner_config.lint import SINGLE_PROJECT_MARKER
from tests.unit.runner_config.refs import EXAMPLES, REGISTER_EMULATED, ids

HEAD = 'concurrent = 1\n[[runners]]\n  name = "r1"\n  url = "https://h/"\n  token = "t"\n'
SAFE_DOCKER = (
    HEAD + '  executor = "docker"\n  [runners.docker]\n    image = "alpine"\n'
    '    allowed_images = ["alpine:*"]\n'
)
SAFE_KUBE = (
    HEAD + '  executor = "kubernetes"\n  [runners.kubernetes]\n    image = "alpine"\n'
    '    allowed_images = ["alpine:*"]\n'
)


def rules(text: str, path: Path | None = None) -> list[tuple[str, Severity, str | None]]:
    return [
        (f.rule, f.severity, f.runner) for f in lint_document(ConfigDocument.parse(text), path=path)
    ]


def only(text: str) -> Finding:
    (finding,) = lint_document(ConfigDocument.parse(text))
    return finding


def test_safe_baselines_have_no_findings() -> None:
    assert rules(SAFE_DOCKER) == []
    assert rules(SAFE_KUBE) == []
    assert rules(HEAD + '  executor = "shell"\n') == []


def test_rc001_privileged_docker() -> None:
    finding = only(SAFE_DOCKER + "    privileged = true\n")
    assert finding == Finding(
        "RC001",
        Severity.HIGH,
        "r1",
        "[runners.docker] privileged = true: any job can take root on the host",
        "Set privileged = false. If jobs need Docker-in-Docker, give them a dedicated runner on "
        "an ephemeral VM and restrict allowed_privileged_images.",
    )
    assert rules(SAFE_DOCKER + "    privileged = false\n") == []


def test_rc001_privileged_services_and_kubernetes() -> None:
    assert only(SAFE_DOCKER + "    services_privileged = true\n").message.startswith(
        "[runners.docker] services_privileged = true"
    )
    assert only(SAFE_KUBE + "    privileged = true\n").rule == "RC001"
    assert rules(SAFE_KUBE + "    privileged = false\n") == []


def test_rc001_case_insensitive_key_still_counts() -> None:
    assert only(SAFE_DOCKER + "    Privileged = true\n").rule == "RC001"


@pytest.mark.parametrize(
    "volume",
    ["/var/run/docker.sock:/var/run/docker.sock", "/run/docker.sock:/var/run/docker.sock:ro"],
)
def test_rc002_docker_socket_volume(volume: str) -> None:
    finding = only(SAFE_DOCKER + f'    volumes = ["/cache", "{volume}"]\n')
    assert (finding.rule, finding.severity) == ("RC002", Severity.HIGH)
    assert finding.message.startswith(
        f"[runners.docker] volumes mounts {volume.split(':', maxsplit=1)[0]}"
    )


def test_rc002_not_for_other_volumes() -> None:
    assert rules(SAFE_DOCKER + '    volumes = ["/cache", "/srv/data:/data:ro"]\n') == []


def test_rc002_kubernetes_host_path() -> None:
    text = SAFE_KUBE + (
        "    [[runners.kubernetes.volumes.host_path]]\n"
        '      name = "docker"\n      mount_path = "/var/run/docker.sock"\n'
        '      host_path = "/var/run/docker.sock"\n'
    )
    finding = only(text)
    assert finding.rule == "RC002"
    assert finding.message == (
        "kubernetes host_path volume 'docker' mounts /var/run/docker.sock: jobs control the "
        "host's Docker daemon (container breakout)"
    )
    safe = text.replace('host_path = "/var/run/docker.sock"', 'host_path = "/srv/cache"')
    assert rules(safe) == []


@pytest.mark.parametrize(
    "policy", ['"if-not-present"', '["never"]', '["always", "if-not-present"]']
)
def test_rc003_risky_pull_policy_on_a_shared_runner(policy: str) -> None:
    finding = only(SAFE_DOCKER + f"    pull_policy = {policy}\n")
    assert (finding.rule, finding.severity) == ("RC003", Severity.MEDIUM)
    assert SINGLE_PROJECT_MARKER in finding.fix


def test_rc003_allowed_pull_policies_count_too() -> None:
    assert only(SAFE_KUBE + '    allowed_pull_policies = ["if-not-present"]\n').rule == "RC003"


def test_rc003_silent_for_always_or_with_the_single_project_marker() -> None:
    assert rules(SAFE_DOCKER + '    pull_policy = ["always"]\n') == []
    marked = SAFE_DOCKER.replace(
        '  executor = "docker"\n', f'  # {SINGLE_PROJECT_MARKER}\n  executor = "docker"\n'
    )
    assert rules(marked + '    pull_policy = "if-not-present"\n') == []


def test_rc003_marker_on_another_runner_does_not_count() -> None:
    marked = HEAD.replace("concurrent = 1\n", "concurrent = 2\n") + (
        f'  executor = "shell"\n  # {SINGLE_PROJECT_MARKER}\n'
    )
    other = SAFE_DOCKER.replace("concurrent = 1\n", "").replace('"r1"', '"r2"')
    findings = rules(marked + other + '    pull_policy = "never"\n')
    assert findings == [("RC003", Severity.MEDIUM, "r2")]


def test_rc004_missing_allowed_images() -> None:
    docker = SAFE_DOCKER.replace('    allowed_images = ["alpine:*"]\n', "")
    assert only(docker) == Finding(
        "RC004",
        Severity.LOW,
        "r1",
        "[runners.docker] has no allowed_images: jobs may run any image",
        'Set allowed_images in [runners.docker] (e.g. ["registry.example.com/ci/*:*"]).',
    )
    kube = SAFE_KUBE.replace('    allowed_images = ["alpine:*"]\n', "")
    assert only(kube).rule == "RC004"


def test_rc005_tcp_docker_host_without_tls() -> None:
    finding = only(SAFE_DOCKER + '    host = "tcp://10.0.0.5:2375"\n    tls_verify = false\n')
    assert (finding.rule, finding.severity) == ("RC005", Severity.MEDIUM)
    assert only(SAFE_DOCKER + '    host = "tcp://10.0.0.5:2375"\n').rule == "RC005"
    assert rules(SAFE_DOCKER + '    host = "tcp://10.0.0.5:2376"\n    tls_verify = true\n') == []
    assert (
        rules(SAFE_DOCKER + '    host = "unix:///var/run/docker.sock"\n    tls_verify = false\n')
        == []
    )


def test_rc006_config_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(SAFE_DOCKER, encoding="utf-8")
    os.chmod(path, 0o644)
    findings = lint_document(ConfigDocument.parse(SAFE_DOCKER), path=path)
    assert [(f.rule, f.severity, f.runner) for f in findings] == [("RC006", Severity.HIGH, None)]
    assert findings[0].message == (
        f"{path} has mode 0644: group or others can read the runner tokens in it"
    )
    assert findings[0].fix.startswith(f"chmod 600 {path}")
    os.chmod(path, 0o600)
    assert rules(SAFE_DOCKER, path) == []


def test_rc007_secrets_in_environment() -> None:
    text = SAFE_DOCKER.replace(
        '  executor = "docker"\n',
        '  executor = "docker"\n  environment = ["DEPLOY_TOKEN=abc123", "LANG=C.UTF-8"]\n',
    )
    finding = only(text)
    assert (finding.rule, finding.severity) == ("RC007", Severity.HIGH)
    assert "abc123" not in finding.message
    assert finding.message.startswith("environment sets DEPLOY_TOKEN to a secret")
    pat = text.replace("DEPLOY_TOKEN=abc123", "NOTE=glpat-abcdefghijklmnop1234")
    assert only(pat).rule == "RC007"
    assert rules(text.replace("DEPLOY_TOKEN=abc123", "GIT_DEPTH=1")) == []


def test_findings_are_sorted_worst_first_and_thresholds() -> None:
    text = SAFE_DOCKER.replace('    allowed_images = ["alpine:*"]\n', "") + (
        '    privileged = true\n    pull_policy = "never"\n'
    )
    findings = lint_document(ConfigDocument.parse(text))
    assert [f.rule for f in findings] == ["RC001", "RC003", "RC004"]
    assert [f.rule for f in at_or_above(findings, Severity.HIGH)] == ["RC001"]
    assert [f.rule for f in at_or_above(findings, Severity.MEDIUM)] == ["RC001", "RC003"]
    assert len(at_or_above(findings, Severity.INFO)) == 3


REFS = REGISTER_EMULATED + EXAMPLES


@pytest.mark.parametrize("path", REFS, ids=ids(REFS))
def test_register_output_has_no_high_finding(path: Path) -> None:
    # What `gitlab-runner register` writes is not privileged and mounts no socket; docker and
    # kubernetes registrations lack allowed_images (low).
    findings = lint_document(ConfigDocument.parse(path.read_text(encoding="utf-8")))
    assert at_or_above(findings, Severity.MEDIUM) == ()
    expected = [] if "shell" in path.name else ["RC004"]
    assert [f.rule for f in findings] == expected
