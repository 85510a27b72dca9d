"""Chart values and the token Secret: content, round trip, schemas, file modes."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml

from provisioner.errors import ConfigError, UsageError
from provisioner.k8s import values as chart_values
from provisioner.k8s.chart import chart_keys
from provisioner.k8s.schemas import schema_errors
from provisioner.runner_config import ConfigDocument, load_config
from tests.unit.k8s.conftest import SERVICES_TOKEN, TOKEN, URL

DEPRECATED_TOP = ("runnerRegistrationToken", "runnerToken")
DEPRECATED_RUNNERS = ("tags", "locked", "runUntagged", "protected", "maximumTimeout")


def test_values_hold_what_the_chart_needs_and_no_token(document: ConfigDocument) -> None:
    bundle = chart_values.build_bundle(document, runner="k8s-plain")
    values = bundle.values
    assert values["gitlabUrl"] == URL
    assert (values["concurrent"], values["checkInterval"]) == (6, 5)
    assert values["rbac"]["create"] is True
    assert values["rbac"]["clusterWideAccess"] is False
    assert values["rbac"]["rules"]  # never empty: empty means every verb on core resources
    assert values["serviceAccount"] == {"create": True, "name": "gitlab-runner"}
    assert (
        values["runners"]["secret"] == bundle.secret["metadata"]["name"] == "k8s-plain-runner-token"
    )
    assert values["runners"]["jobNamespace"] == "ci-jobs"
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    assert values["securityContext"]["privileged"] is False
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    text = chart_values.render_values(bundle)
    assert TOKEN not in text
    assert "glrt-" not in text
    assert base64.b64encode(TOKEN.encode()).decode() not in text
    assert f"chart gitlab-runner {chart_keys().version}" in text
    parsed = yaml.safe_load(text)
    assert parsed == values
    for key in DEPRECATED_TOP:
        assert key not in parsed
    for key in DEPRECATED_RUNNERS:
        assert key not in parsed["runners"]


def test_the_secret_holds_the_token_base64_without_newline(document: ConfigDocument) -> None:
    bundle = chart_values.build_bundle(document, runner="k8s-plain")
    data = bundle.secret["data"]
    assert data["runner-registration-token"] == ""
    assert base64.b64decode(data["runner-token"]) == TOKEN.encode()
    assert bundle.secret["metadata"]["namespace"] == "ci-jobs"
    assert schema_errors(bundle.secret) == []


def test_round_trip_the_template_equals_the_config_entry(
    document: ConfigDocument, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from provisioner.cli.main import app

    for name, token in (("k8s-plain", TOKEN), ("k8s-services", SERVICES_TOKEN)):
        bundle = chart_values.build_bundle(document, runner=name)
        template = ConfigDocument.parse(bundle.values["runners"]["config"])
        [entry] = list(template.iter_runner_plain())
        [wrote] = [e for e in document.iter_runner_plain() if e["name"] == name]
        assert entry == {k: v for k, v in wrote.items() if k not in chart_values.TEMPLATE_DROPPED}
        # What the chart's register step makes of it: the template plus the Secret's token.
        from_secret = base64.b64decode(bundle.secret["data"]["runner-token"]).decode()
        assert from_secret == token
        template.update_runner(template_ref(template), {"token": from_secret})
        pod_config = tmp_path / f"{name}.toml"
        pod_config.write_text(template.dumps())
        result = CliRunner().invoke(app, ["config", "validate", "--strict", "-c", str(pod_config)])
        assert result.exit_code == 0, result.output
        assert "valid:" in result.output
        assert "warning" not in result.output


def template_ref(doc: ConfigDocument) -> object:
    from provisioner.runner_config import RunnerRef

    return RunnerRef(name=str(next(doc.iter_runner_plain())["name"]))


def test_what_the_chart_renders_from_the_values_validates(document: ConfigDocument) -> None:
    bundle = chart_values.build_bundle(document, runner="k8s-services")
    objects = chart_values.chart_objects(bundle.values)
    assert [o["kind"] for o in objects] == ["ServiceAccount", "Role", "RoleBinding", "Deployment"]
    for manifest in objects:
        assert schema_errors(manifest) == []
    assert chart_values.schema_problems(bundle) == []


def test_schema_errors_are_reported_with_their_field() -> None:
    errors = schema_errors(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "date": {}}
    )
    assert len(errors) == 1
    assert "date" in errors[0]


def test_written_files_and_modes(config_file: Path, tmp_path: Path) -> None:
    written = chart_values.write_chart_files(config_file, runner="k8s-plain")
    assert written.values_path == tmp_path / "k8s-plain-values.yaml"
    assert written.secret_path == tmp_path / "k8s-plain-token-secret.yaml"
    assert stat.S_IMODE(written.secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.values_path.stat().st_mode) == 0o644
    assert (written.values_changed, written.secret_changed) == (True, True)
    again = chart_values.write_chart_files(config_file, runner="k8s-plain")
    assert (again.values_changed, again.secret_changed) == (False, False)
    assert TOKEN not in written.values_path.read_text()
    assert (
        "\n"
        not in base64.b64decode(
            yaml.safe_load(written.secret_path.read_text())["data"]["runner-token"]
        ).decode()
    )


@pytest.mark.parametrize(
    ("runner", "error", "needle"),
    [
        ("nope", UsageError, "No runner named 'nope'"),
        ("shell-1", UsageError, "uses the shell executor"),
    ],
)
def test_bad_runner_writes_nothing(
    config_file: Path, tmp_path: Path, runner: str, error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        chart_values.write_chart_files(config_file, runner=runner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_an_entry_without_token_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'concurrent = 1\n[[runners]]\n  name = "k"\n  url = "https://g.example"\n'
        '  executor = "kubernetes"\n  [runners.kubernetes]\n    namespace = "ci"\n'
    )
    with pytest.raises(ConfigError, match="has no token") as info:
        chart_values.write_chart_files(config, runner="k")
    assert info.value.exit_code == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_directory_target_is_refused_before_writing(config_file: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        chart_values.write_chart_files(
            config_file, runner="k8s-plain", values_path=tmp_path / "out"
        )
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "k8s-plain-token-secret.yaml").exists()


def test_values_and_secret_beside_a_given_values_file(config_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "prod.yaml"
    written = chart_values.write_chart_files(config_file, runner="k8s-plain", values_path=target)
    assert written.secret_path == tmp_path / "prod-token-secret.yaml"
    assert load_config(config_file).dumps() == config_file.read_text()
