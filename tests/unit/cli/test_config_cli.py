"""`runnerctl config show|validate|lint|diff`: exit codes and exact output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from provisioner.runner_config.store import MISSING_HINT
from provisioner.secrets import contains_secret
from tests.conftest import RUNNERCTL, Cli, run_runnerctl
from tests.unit.runner_config.refs import CONFIG_REF, UPSTREAM_LINT


@pytest.fixture
def docker_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    shutil.copy(CONFIG_REF / "examples" / "docker.config.toml", path)
    os.chmod(path, 0o600)
    return path


def copy_fixture(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copy(UPSTREAM_LINT / name, path)
    os.chmod(path, 0o600)
    return path


def test_show_text(cli: Cli, docker_cfg: Path) -> None:
    code, out, err = cli("config", "show", "--config", str(docker_cfg))
    assert code == 0, err
    assert out == (
        f"config: {docker_cfg}\n"
        "concurrent: 1  check_interval: 0  shutdown_timeout: 0  log_level: -  log_format: -\n"
        "runners: 1\n"
        "NAME            ID    EXECUTOR  URL                          IMAGE          TOKEN\n"
        "docker-host-01  1208  docker    https://gitlab.example.com/  alpine:latest  [MASKED]\n"
    )


def test_show_json_is_one_redacted_document(cli: Cli, docker_cfg: Path) -> None:
    code, out, _ = cli("--output", "json", "config", "show", "--config", str(docker_cfg))
    assert code == 0
    doc = json.loads(out)
    assert doc["path"] == str(docker_cfg)
    assert doc["settings"]["connection_max_age"] == "15m0s"
    (runner_doc,) = doc["runners"]
    assert runner_doc["token"] == "[MASKED]"
    assert runner_doc["token_obtained_at"] == "2026-05-12T09:02:51Z"
    assert runner_doc["docker"]["volumes"] == ["/cache"]
    assert "glrt-t3_" not in out
    assert not contains_secret(out)


def test_config_file_env_is_the_default(
    cli: Cli, docker_cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONFIG_FILE", str(docker_cfg))
    code, out, _ = cli("config", "show")
    assert code == 0
    assert out.startswith(f"config: {docker_cfg}\n")


def test_validate_valid_file(cli: Cli, docker_cfg: Path) -> None:
    assert cli("config", "validate", "--config", str(docker_cfg)) == (
        0,
        f"valid: {docker_cfg}\n",
        "",
    )


def test_validate_unknown_key_warns_and_strict_fails(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "misspelled_key.toml")
    warning = (
        "unknown key runners[0].buids_dir (did you mean 'builds_dir'?): gitlab-runner ignores it"
    )
    assert cli("config", "validate", "-c", str(path)) == (
        0,
        f"{path}:9:3: warning: {warning}\nvalid: {path} (1 warning)\n",
        "",
    )
    assert cli("config", "validate", "--strict", "-c", str(path)) == (
        3,
        f"{path}:9:3: error: {warning}\ninvalid: {path}: 1 error, 0 warnings\n",
        "",
    )


def test_validate_syntax_error_lists_line_and_column(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "invalid_syntax.toml")
    before = path.read_bytes()
    assert cli("config", "validate", "-c", str(path)) == (
        3,
        f"{path}:4:10: error: Expected ']]' at the end of an array declaration\n"
        f"invalid: {path}: 1 error, 0 warnings\n",
        "",
    )
    assert path.read_bytes() == before


def test_validate_json(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "bad_shell.toml")
    code, out, _ = cli("-o", "json", "config", "validate", "-c", str(path))
    assert code == 3
    assert json.loads(out) == {
        "path": str(path),
        "valid": False,
        "strict": False,
        "errors": [
            {
                "code": "enum",
                "path": "runners[0].shell",
                "message": "runners[0].shell = 'fish' is not one of 'bash', 'sh', 'pwsh', "
                "'powershell'",
                "line": 9,
                "column": 3,
            }
        ],
        "warnings": [],
    }


RISKY = """\
concurrent = 1
[[runners]]
  name = "dind"
  url = "https://gitlab.example.com/"
  token = "glrt-risky-runner-token-1"
  executor = "docker"
  [runners.docker]
    image = "docker:27"
    privileged = true
    pull_policy = "if-not-present"
    allowed_images = ["docker:*"]
"""


def test_lint_fails_on_high_by_default(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(RISKY)
    os.chmod(path, 0o600)
    code, out, _ = cli("config", "lint", "-c", str(path))
    assert code == 9  # findings: their own code, not 3 (a broken file)
    assert out == (
        "HIGH   RC001 [dind] [runners.docker] privileged = true: any job can take root on the "
        "host\n"
        "       fix: Set privileged = false. If jobs need Docker-in-Docker, give them a dedicated "
        "runner on an ephemeral VM and restrict allowed_privileged_images.\n"
        "MEDIUM RC003 [dind] [runners.docker] allows pull_policy if-not-present: on a shared "
        "runner one project can run another project's cached private image\n"
        '       fix: Use pull_policy = ["always"] on shared runners; if this runner is locked to '
        "one project, add the comment '# runnerctl: single-project' to its [[runners]] section.\n"
        "2 findings (1 high, 1 medium): failed (--fail-on high)\n"
    )
    assert cli("config", "lint", "--fail-on", "never", "-c", str(path))[0] == 0


def test_lint_threshold(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(RISKY.replace("privileged = true", "privileged = false"))
    os.chmod(path, 0o600)
    code, out, _ = cli("config", "lint", "-c", str(path))
    assert code == 0
    assert out.endswith("1 finding (1 medium): passed (--fail-on high)\n")
    assert cli("config", "lint", "--fail-on", "medium", "-c", str(path))[0] == 9


def test_lint_clean_file_and_json(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    shutil.copy(CONFIG_REF / "examples" / "shell.config.toml", path)
    os.chmod(path, 0o600)
    assert cli("config", "lint", "-c", str(path)) == (0, f"no findings: {path}\n", "")
    os.chmod(path, 0o640)
    code, out, _ = cli("-o", "json", "config", "lint", "-c", str(path))
    assert code == 9
    doc = json.loads(out)
    assert (doc["failed"], doc["fail_on"]) == (True, "high")
    assert [(f["rule"], f["severity"]) for f in doc["findings"]] == [("RC006", "high")]


def test_diff_text_and_json(cli: Cli, docker_cfg: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text(
        docker_cfg.read_text()
        .replace('image = "alpine:latest"', 'image = "alpine:3.20"')
        .replace("glrt-t3_Hm7pQ2sW9eRt4yUi8oPa", "glrt-t3_rotatedrotatedrotated")
        + '\n[[runners]]\n  name = "extra"\n  url = "https://gitlab.example.com/"\n'
        '  token = "glrt-extra-token-000000"\n  executor = "shell"\n'
    )
    code, out, _ = cli("config", "diff", str(other), "-c", str(docker_cfg))
    assert code == 1  # as diff(1): the files differ
    assert out == (
        f"--- {docker_cfg}\n+++ {other}\n"
        "+ runner extra\n"
        "~ runner docker-host-01\n"
        '    token: "[MASKED]" -> "[MASKED]"\n'
        '    docker.image: "alpine:latest" -> "alpine:3.20"\n'
    )
    code, out, _ = cli("-o", "json", "config", "diff", str(other), "-c", str(docker_cfg))
    assert code == 1
    doc = json.loads(out)
    assert doc["added"] == ["extra"]
    assert doc["removed"] == []
    assert not contains_secret(out)


def test_diff_of_identical_files(cli: Cli, docker_cfg: Path) -> None:
    code, out, _ = cli("config", "diff", str(docker_cfg), "-c", str(docker_cfg))
    assert (code, out.splitlines()[-1]) == (0, "no semantic differences")


# ---- the error boundary (ConfigError becomes message, hint, exit 3)


def test_missing_file_names_the_default_path_logic(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = cli("config", "show", "--config", str(missing))
    assert code == 3
    assert out == ""
    assert err == f"Error: config file not found: {missing}\nHint: {MISSING_HINT}\n"
    assert "CONFIG_FILE" in MISSING_HINT
    assert "~/.gitlab-runner/config.toml" in MISSING_HINT


def test_missing_default_file(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIG_FILE", str(tmp_path / "absent" / "config.toml"))
    code, _, err = cli("config", "lint")
    assert code == 3
    assert err.startswith(
        f"Error: config file not found: {tmp_path / 'absent' / 'config.toml'}\n"
        "Hint: runnerctl reads"
    )
    assert not (tmp_path / "absent").exists()


def test_malformed_file_gives_location_and_hint(cli: Cli, tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "invalid_syntax.toml")
    before = path.read_bytes()
    code, _, err = cli("config", "show", "--config", str(path))
    assert code == 3
    assert err == (
        f"Error: {path}:4:10: TOML syntax error: Expected ']]' at the end of an array declaration\n"
        "Hint: Fix the file at that position (gitlab-runner refuses to load it as well); nothing "
        "was changed on disk.\n"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["invalid_syntax.toml"]


def test_unreadable_inputs(cli: Cli, tmp_path: Path) -> None:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"concurrent = 1\n\xff\xfe\n")
    code, _, err = cli("config", "lint", "-c", str(binary))
    assert code == 3
    assert err == (
        f"Error: {binary}: not UTF-8 text (byte 15)\n"
        "Hint: config.toml must be UTF-8; re-save it with a UTF-8 encoding.\n"
    )
    other = tmp_path / "other"
    other.mkdir()
    ok = tmp_path / "ok.toml"
    ok.write_text("concurrent = 1\n")
    # A directory is a config problem (3), not a usage error (2), for OTHER and for --config.
    code, _, err = cli("config", "diff", str(other), "-c", str(ok))
    assert code == 3
    assert err == (
        f"Error: {other} is a directory, not a config file\n"
        "Hint: Point --config at the config.toml file itself.\n"
    )
    code, _, err = cli("config", "validate", "-c", str(other))
    assert code == 3
    assert err.startswith(f"Error: {other} is a directory, not a config file\n")


def test_installed_console_script_exit_code_and_stderr(tmp_path: Path) -> None:
    path = copy_fixture(tmp_path, "invalid_syntax.toml")
    assert RUNNERCTL.exists(), f"{RUNNERCTL} missing: run pip install -e ."
    proc = run_runnerctl(
        "config", "show", "--config", str(path), env={**os.environ, "NO_COLOR": "1"}, timeout=60
    )
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: {path}:4:10: TOML syntax error: ")
    assert "Hint: Fix the file at that position" in proc.stderr
