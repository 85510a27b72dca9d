"""``runnerctl register --executor kubernetes --helm-values`` against the sandbox.

The runner is created in the sandbox GitLab through the real CLI; the chart files it writes are
then proven offline: the values against the chart's keys and rules (``k8s lint``), the Secret
against Kubernetes' schemas, and ``runners.config`` against config.toml's validator.
"""

from __future__ import annotations

import base64
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.runner_config import ConfigDocument, RunnerRef
from provisioner.secrets import contains_secret
from tests.integration.registration.conftest import RUNNERCTL, Lab, Run

pytestmark = pytest.mark.sandbox

DEFAULT_RULES = [
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "delete", "get", "list", "watch"],
    },
    {
        "apiGroups": [""],
        "resources": ["pods/attach"],
        "verbs": ["create", "delete", "get", "patch"],
    },
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "update"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
]
SERVICES_RULE = {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]}


def _register(run: Run, tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "register",
        "-e",
        "kubernetes",
        "-s",
        "instance",
        "-n",
        name,
        "--run-untagged",
        "--k8s-namespace",
        "ci-jobs",
        "--config",
        str(tmp_path / "config.toml"),
        "--helm-values",
        str(tmp_path / f"{name}.yaml"),
        *extra,
    )


def _entry(config: Path, name: str) -> dict[str, Any]:
    data = tomllib.loads(config.read_text())
    [entry] = [r for r in data["runners"] if r["name"] == name]
    return entry


@pytest.mark.parametrize(
    ("name", "extra", "rules"),
    [
        ("helm-plain", (), DEFAULT_RULES),
        (
            "helm-services",
            ("--k8s-allow-service", "postgres:16"),
            sorted([*DEFAULT_RULES, SERVICES_RULE], key=lambda r: r["resources"]),
        ),
    ],
)
def test_register_writes_values_and_secret_that_pass_every_check(  # noqa: PLR0917 (fixtures)
    lab: Lab,
    run: Run,
    tmp_path: Path,
    name: str,
    extra: tuple[str, ...],
    rules: list[dict[str, Any]],
) -> None:
    result = _register(run, tmp_path, name, *extra)
    assert result.returncode == 0, result.stderr
    values_path, secret_path = tmp_path / f"{name}.yaml", tmp_path / f"{name}-token-secret.yaml"
    assert f"Helm values for runner {name!r}" in result.stdout
    assert f"helm install --namespace ci-jobs {name} gitlab/gitlab-runner" in result.stdout
    assert not contains_secret(result.stdout + result.stderr)
    config = tmp_path / "config.toml"
    entry = _entry(config, name)
    token = str(entry["token"])
    assert token.startswith("glrt-")
    assert token not in result.stdout + result.stderr + values_path.read_text()

    values = yaml.safe_load(values_path.read_text())
    assert values["rbac"]["rules"] == rules
    assert values["runners"]["jobNamespace"] == "ci-jobs"
    assert values["gitlabUrl"] == lab.url.rstrip("/")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    secret = yaml.safe_load(secret_path.read_text())
    assert base64.b64decode(secret["data"]["runner-token"]) == token.encode()
    assert secret["data"]["runner-registration-token"] == ""

    # The chart files pass runnerctl's own lint (keys, rules, schemas).
    for path in (values_path, secret_path):
        lint = run("k8s", "lint", str(path))
        assert lint.returncode == 0, lint.stdout
        assert lint.stdout.splitlines()[-1] == "0 findings: passed (--fail-on high)"

    # Round trip: runners.config is the entry register wrote, minus the token fields and id...
    template = ConfigDocument.parse(values["runners"]["config"])
    [rendered] = list(template.iter_runner_plain())
    dropped = ("id", "token", "token_obtained_at", "token_expires_at")
    assert rendered == {k: v for k, v in entry.items() if k not in dropped}
    # ...and with the Secret's token filled in (the chart's register step) it validates strictly.
    template.update_runner(RunnerRef(name=name), {"token": token})
    pod_config = tmp_path / "pod-config.toml"
    pod_config.write_text(template.dumps())
    validate = run("config", "validate", "--strict", "-c", str(pod_config))
    assert validate.returncode == 0, validate.stdout
    assert validate.stdout.strip() == f"valid: {pod_config}"


def test_k8s_values_for_the_registered_runner_matches_register(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    assert _register(run, tmp_path, "helm-again").returncode == 0
    first = (tmp_path / "helm-again.yaml").read_text()
    again = run(
        "k8s",
        "values",
        "-r",
        "helm-again",
        "-c",
        str(tmp_path / "config.toml"),
        "--values-file",
        str(tmp_path / "helm-again.yaml"),
    )
    assert again.returncode == 0, again.stderr
    assert "(unchanged)" in again.stdout
    assert (tmp_path / "helm-again.yaml").read_text() == first


def test_a_directory_as_helm_values_fails_before_any_runner_is_created(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    result = run(
        "register",
        "-e",
        "kubernetes",
        "-s",
        "instance",
        "-n",
        "helm-dir",
        "--run-untagged",
        "--config",
        str(tmp_path / "config.toml"),
        "--helm-values",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2
    assert "Error: --helm-values" in result.stderr
    assert "Hint: " in result.stderr
    assert not (tmp_path / "config.toml").exists()
    assert list((tmp_path / "out").iterdir()) == []
    from tests.integration.registration.conftest import runners_named

    assert runners_named(lab, "helm-dir") == []


def test_helm_values_do_not_apply_to_other_executors(run: Run, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            RUNNERCTL,
            "register",
            "-e",
            "shell",
            "-s",
            "instance",
            "--run-untagged",
            "--helm-values",
            "v.yaml",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--helm-values do not apply to the shell executor" in result.stderr


def test_dry_run_writes_nothing_and_json_reports_the_chart_files(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    dry = _register(run, tmp_path, "helm-json", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Would write Helm values to {tmp_path / 'helm-json.yaml'}" in dry.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    import json

    result = run(
        "-o",
        "json",
        "register",
        "-e",
        "kubernetes",
        "-s",
        "instance",
        "-n",
        "helm-json",
        "--run-untagged",
        "--config",
        str(tmp_path / "config.toml"),
        "--helm-values",
        str(tmp_path / "helm-json.yaml"),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["action"] == "created"
    assert doc["helm"]["values_file"] == str(tmp_path / "helm-json.yaml")
    assert doc["helm"]["secret_file"] == str(tmp_path / "helm-json-token-secret.yaml")
    assert doc["helm"]["chart_version"] == "0.86.0"
    assert "token" not in doc
    assert not contains_secret(result.stdout + result.stderr)
