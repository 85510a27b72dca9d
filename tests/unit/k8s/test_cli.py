"""``runnerctl k8s values | lint``: exact output, exit codes, bad input, no token shown."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest

from provisioner.cli import main as main_module
from tests.unit.k8s.conftest import TOKEN


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["runnerctl", *args])
    with pytest.raises(SystemExit) as info:
        main_module.main()
    return int(info.value.code or 0)


def _no_token(text: str) -> None:
    assert TOKEN not in text
    assert base64.b64encode(TOKEN.encode()).decode() not in text
    assert "glrt-" not in text


def test_values_writes_both_files_and_prints_the_install_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    d = config_file.parent
    assert _main(monkeypatch, "k8s", "values", "-r", "k8s-plain", "-c", str(config_file)) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "Helm values for runner 'k8s-plain' (chart gitlab-runner 0.86.0): "
        f"{d}/k8s-plain-values.yaml (written)",
        f"Token Secret (mode 0600): {d}/k8s-plain-token-secret.yaml (written)",
        "RBAC: 7 rules for attach, base, informers, warning_events",
        "Install on your cluster:",
        "  kubectl create namespace ci-jobs",
        f"  kubectl apply -f {d}/k8s-plain-token-secret.yaml",
        "  helm repo add gitlab https://charts.gitlab.io",
        "  helm install --namespace ci-jobs k8s-plain gitlab/gitlab-runner --version 0.86.0 "
        f"-f {d}/k8s-plain-values.yaml",
    ]
    _no_token(out + err)


def test_values_json_lists_the_rules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    code = _main(
        monkeypatch, "-o", "json", "k8s", "values", "-r", "k8s-services", "-c", str(config_file)
    )
    assert code == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["features"] == ["attach", "base", "informers", "services", "warning_events"]
    assert {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]} in doc[
        "rules"
    ]
    assert doc["namespace"] == "gitlab-runner"
    _no_token(out + err)


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["-r", "ghost"], 2, "Error: No runner named 'ghost'"),
        (["-r", "shell-1"], 2, "uses the shell executor"),
        (["-r", "k8s-plain", "--values-file", "{dir}"], 2, "is a directory"),
        (["-r", "k8s-plain", "--values-file", "{dir}/missing/v.yaml"], 2, "does not exist"),
    ],
)
def test_values_bad_input_writes_nothing(  # noqa: PLR0917 (pytest passes fixtures positionally)
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    config_file: Path,
    args: list[str],
    code: int,
    needle: str,
) -> None:
    d = config_file.parent
    real = [a.replace("{dir}", str(d)) for a in args]
    assert _main(monkeypatch, "k8s", "values", "-c", str(config_file), *real) == code
    err = capsys.readouterr().err
    assert needle in err
    assert "Hint: " in err
    assert sorted(p.name for p in d.iterdir()) == ["config.toml"]


def test_values_with_a_malformed_config_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[[runners]\n")
    assert _main(monkeypatch, "k8s", "values", "-r", "x", "-c", str(config)) == 3
    assert "Hint: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_lint_passes_what_values_wrote(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], config_file: Path
) -> None:
    d = config_file.parent
    assert _main(monkeypatch, "k8s", "values", "-r", "k8s-plain", "-c", str(config_file)) == 0
    capsys.readouterr()
    for name, kind in (
        ("k8s-plain-values.yaml", "values"),
        ("k8s-plain-token-secret.yaml", "Secret"),
    ):
        assert _main(monkeypatch, "k8s", "lint", str(d / name)) == 0
        out = capsys.readouterr().out
        assert out.splitlines() == [
            f"{d / name}: {kind} (Kubernetes 1.34 schemas, chart 0.86.0 keys)",
            "0 findings: passed (--fail-on high)",
        ]
        _no_token(out)


def test_lint_fails_with_3_and_prints_each_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "gitlabUrl: https://gitlab.example.com\n"
        "rbac:\n  create: true\n"
        "runners:\n  tags: k8s\n  config: |\n    [[runners]]\n      [runners.kuberentes]\n"
        '        namespace = "ci"\n'
    )
    assert _main(monkeypatch, "k8s", "lint", str(values)) == 3
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{values}: values (Kubernetes 1.34 schemas, chart 0.86.0 keys)"
    assert out[1].startswith("HIGH   K8S004 runners.config: unknown key runners.kuberentes")
    assert out[2] == "       fix: Rename it to runners.kubernetes."
    assert any(
        line.startswith("HIGH   K8S006 rbac.create is true and rbac.rules is empty") for line in out
    )
    assert any(
        line.startswith("MEDIUM K8S002 runners.tags is a deprecated or legacy key") for line in out
    )
    assert out[-1] == "3 findings: failed (--fail-on high)"
    assert _main(monkeypatch, "k8s", "lint", "--fail-on", "never", str(values)) == 0


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [
        (None, 2, "is a directory"),
        (b"rbac: [\n", 3, "not valid YAML"),
        (b"\xff\xfe\x00bad", 3, "not UTF-8"),
    ],
)
def test_lint_bad_input(  # noqa: PLR0917 (pytest passes fixtures positionally)
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes | None,
    code: int,
    needle: str,
) -> None:
    target = tmp_path / "input"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    assert _main(monkeypatch, "k8s", "lint", str(target)) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert needle in err
    assert "Hint: " in err


def test_lint_of_a_missing_file_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert _main(monkeypatch, "k8s", "lint", str(tmp_path / "nope.yaml")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_lint_json_is_one_document_and_never_shows_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    encoded = base64.b64encode(TOKEN.encode() + b"\n").decode()
    values.write_text(
        f"runnerToken: {TOKEN}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: t\n"
        f"data:\n  runner-token: {encoded}\n  runner-registration-token: ''\n"
    )
    assert _main(monkeypatch, "-o", "json", "k8s", "lint", str(values)) == 3
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["documents"] == ["values", "Secret"]
    assert doc["failed"] is True
    assert doc["kubernetes_version"] == "1.34"
    assert [f["rule"] for f in doc["findings"]] == ["K8S001", "K8S007", "K8S011"]
    assert doc["findings"][2]["where"] == "Secret/t"
    _no_token(out + err)
    assert encoded not in out
