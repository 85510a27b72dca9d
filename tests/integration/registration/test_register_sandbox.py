"""``runnerctl register | unregister | token rotate | runners list`` against the sandbox.

Each test runs the real CLI in its own process; GitLab's side is checked through our adapter
(python-gitlab), config.toml by reading the bytes back.
"""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import requests

from provisioner.gitlab.models import ListFilter
from provisioner.runner_config import validate_text
from provisioner.secrets import contains_secret
from tests.integration.registration.conftest import RUNNERCTL, Lab, Run, runners_named

pytestmark = pytest.mark.sandbox


def _entry(config: Path, name: str) -> dict[str, object]:
    data = tomllib.loads(config.read_text())
    hits = [r for r in data.get("runners", []) if r.get("name") == name]
    assert len(hits) == 1, f"{len(hits)} entries named {name}"
    return hits[0]


# -- each executor end to end ------------------------------------------------------------------


def test_shell_runner_for_a_group(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    result = run(
        "register",
        "--executor",
        "shell",
        "--scope",
        f"group:{lab.group_path}",
        "--name",
        "shell-1",
        "--tag",
        "linux",
        "--tag",
        "shell",
        "--builds-dir",
        "/srv/builds",
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    assert "Created runner 'shell-1'" in result.stdout
    entry = _entry(config, "shell-1")
    assert entry["executor"] == "shell"
    assert entry["shell"] == "bash"
    assert entry["builds_dir"] == "/srv/builds"
    assert str(entry["token"]).startswith("glrt-")
    assert entry["url"] == lab.url
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert validate_text(config.read_text()).valid
    api = lab.api()
    verdict = api.verify(str(entry["token"]))
    assert verdict.valid
    assert verdict.runner_id == entry["id"]
    runner = api.get_runner(int(entry["id"]))  # type: ignore[call-overload]
    assert runner.tag_list == ("linux", "shell")
    assert runner.runner_type.value == "group_type"
    assert lab.group_id in runner.group_ids


def test_docker_runner_for_a_project_with_secure_defaults(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    result = run(
        "register",
        "-e",
        "docker",
        "-s",
        f"project:{lab.project_path}",
        "-n",
        "docker-1",
        "-t",
        "docker",
        "--locked",
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    entry = _entry(config, "docker-1")
    docker = entry["docker"]
    assert isinstance(docker, dict)
    assert docker["image"] == "runnerctl/python:3.11"
    assert docker["privileged"] is False
    assert docker["volumes"] == ["runnerctl-pip-cache:/cache"]
    assert docker["pull_policy"] == ["never"]
    assert docker["allowed_images"] == ["runnerctl/*"]
    assert entry["environment"] == ["PIP_CACHE_DIR=/cache/pip"]
    assert not any("docker.sock" in v for v in docker["volumes"])
    runner = lab.api().get_runner(int(entry["id"]))  # type: ignore[call-overload]
    assert runner.locked is True
    assert lab.project_id in runner.project_ids


def test_kubernetes_runner_with_rbac_manifests(lab: Lab, run: Run, tmp_path: Path) -> None:
    import kubernetes_validate
    import yaml

    config = tmp_path / "config.toml"
    result = run(
        "register",
        "-e",
        "kubernetes",
        "-s",
        "instance",
        "-n",
        "k8s-1",
        "--run-untagged",
        "--k8s-namespace",
        "ci-jobs",
        "--k8s-service-account",
        "runner-sa",
        "--k8s-cpu-limit",
        "1",
        "--k8s-memory-limit",
        "1Gi",
        "--config",
        str(config),
    )
    assert result.returncode == 0, result.stderr
    kube = _entry(config, "k8s-1")["kubernetes"]
    assert isinstance(kube, dict)
    assert kube["namespace"] == "ci-jobs"
    assert kube["privileged"] is False
    assert kube["allow_privilege_escalation"] is False
    assert kube["cpu_limit"] == "1"
    assert kube["memory_limit"] == "1Gi"
    assert kube["bearer_token_overwrite_allowed"] is False
    rbac = tmp_path / "k8s-1-rbac.yaml"
    docs = list(yaml.safe_load_all(rbac.read_text()))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "Role", "RoleBinding"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "ci-jobs"
        kubernetes_validate.validate(doc, "1.30", strict=True)
    assert docs[2]["subjects"][0]["name"] == "runner-sa"
    assert docs[2]["roleRef"]["name"] == docs[1]["metadata"]["name"]
    assert str(rbac) in result.stdout


# -- idempotency, updates, replacement ---------------------------------------------------------


def test_second_identical_run_changes_nothing(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    args = (
        "register",
        "-e",
        "docker",
        "-s",
        f"group:{lab.group_path}",
        "-n",
        "idem-1",
        "-t",
        "py",
        "--config",
        str(config),
    )
    assert run(*args).returncode == 0
    before = config.read_bytes()
    mtime = config.stat().st_mtime_ns
    again = run("-o", "json", *args)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["action"] == "unchanged"
    assert doc["config_changed"] is False
    assert doc["requests"] <= 2
    assert config.read_bytes() == before
    assert config.stat().st_mtime_ns == mtime
    assert len(runners_named(lab, "idem-1")) == 1


def test_changed_tags_update_the_runner_in_place(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    base = ("register", "-e", "shell", "-s", "instance", "-n", "tags-1", "--config", str(config))
    assert run(*base, "-t", "a").returncode == 0
    first = _entry(config, "tags-1")
    before = config.read_bytes()
    result = run("-o", "json", *base, "-t", "a", "-t", "b", "--paused")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["action"] == "updated"
    assert doc["server_changes"] == ["paused", "tag_list"]
    assert doc["runner_id"] == first["id"]
    assert config.read_bytes() == before  # tags live in GitLab, not in config.toml
    runner = lab.api().get_runner(int(first["id"]))  # type: ignore[call-overload]
    assert runner.tag_list == ("a", "b")
    assert runner.paused is True
    assert len(runners_named(lab, "tags-1")) == 1


def test_runner_whose_token_no_longer_verifies_is_replaced(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    args = (
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        "stale-1",
        "-t",
        "x",
        "--config",
        str(config),
    )
    assert run(*args).returncode == 0
    old = _entry(config, "stale-1")
    lab.api().reset_token(int(old["id"]))  # type: ignore[call-overload]  # config token dies
    result = run("-o", "json", *args)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["action"] == "replaced"
    assert doc["stale_runner_id"] == old["id"]
    new = _entry(config, "stale-1")
    assert new["id"] != old["id"]
    assert lab.api().find_runner(int(old["id"])) is None  # type: ignore[call-overload]
    assert lab.api().verify(str(new["token"])).valid
    assert [r.id for r in runners_named(lab, "stale-1")] == [new["id"]]


def test_same_name_in_another_scope_is_refused(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert (
        run(
            "register",
            "-e",
            "shell",
            "-s",
            "instance",
            "-n",
            "scope-1",
            "-t",
            "x",
            "--config",
            str(config),
        ).returncode
        == 0
    )
    before = config.read_bytes()
    result = run(
        "register",
        "-e",
        "shell",
        "-s",
        f"group:{lab.group_path}",
        "-n",
        "scope-1",
        "-t",
        "x",
        "--config",
        str(config),
    )
    assert result.returncode == 2
    assert f"not attached to group:{lab.group_path}" in result.stderr
    assert config.read_bytes() == before
    assert len(runners_named(lab, "scope-1")) == 1


# -- rotation and unregister -------------------------------------------------------------------


def test_token_rotation_writes_the_new_token_and_kills_the_old(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    assert (
        run(
            "register",
            "-e",
            "shell",
            "-s",
            "instance",
            "-n",
            "rot-1",
            "-t",
            "x",
            "--config",
            str(config),
        ).returncode
        == 0
    )
    old = _entry(config, "rot-1")
    result = run("-o", "json", "token", "rotate", "rot-1", "--config", str(config))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["new_token_verified"] is True
    assert doc["old_token_refused"] is True
    new = _entry(config, "rot-1")
    assert new["id"] == old["id"]
    assert new["token"] != old["token"]
    assert new["token_obtained_at"] > old["token_obtained_at"]  # type: ignore[operator]
    api = lab.api()
    assert api.verify(str(new["token"])).valid
    assert not api.verify(str(old["token"])).valid
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert list(tmp_path.glob("config.toml.bak.*"))  # the store kept a backup


def test_unregister_deletes_in_gitlab_and_removes_the_entry(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    for name in ("unreg-1", "unreg-2"):
        assert (
            run(
                "register",
                "-e",
                "shell",
                "-s",
                "instance",
                "-n",
                name,
                "-t",
                "x",
                "--config",
                str(config),
            ).returncode
            == 0
        )
    gone = _entry(config, "unreg-1")
    result = run("unregister", "unreg-1", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "deleted in GitLab" in result.stdout
    names = [r["name"] for r in tomllib.loads(config.read_text())["runners"]]
    assert names == ["unreg-2"]
    assert lab.api().find_runner(int(gone["id"])) is None  # type: ignore[call-overload]
    before = config.read_bytes()
    unknown = run("unregister", "no-such-runner", "--config", str(config))
    assert unknown.returncode == 2
    assert "No runner with name 'no-such-runner'" in unknown.stderr
    assert "unreg-2" in unknown.stderr  # the hint lists what exists
    assert config.read_bytes() == before


# -- legacy registration ------------------------------------------------------------------------


def test_legacy_registration_410_then_works_when_enabled(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    import gitlab

    gl = gitlab.Gitlab(lab.url, private_token=lab.token)
    reg_token = gl.groups.get(lab.group_id).runners_token
    config = tmp_path / "config.toml"
    args = (
        "register",
        "-e",
        "shell",
        "-s",
        f"group:{lab.group_path}",
        "-n",
        "legacy-1",
        "-t",
        "old",
        "--legacy-registration-token-env",
        "REG_TOKEN",
        "--config",
        str(config),
    )
    gone = run(*args, env=lab.env(REG_TOKEN=reg_token))
    assert gone.returncode == 4
    assert "410" in gone.stderr
    assert "create_runner" in gone.stderr
    assert reg_token not in gone.stderr + gone.stdout
    assert not config.exists()
    gl.settings.update(allow_runner_registration_token=True)
    try:
        ok = run(*args, env=lab.env(REG_TOKEN=reg_token))
    finally:
        gl.settings.update(allow_runner_registration_token=False)
    assert ok.returncode == 0, ok.stderr
    assert "deprecated" in ok.stderr
    entry = _entry(config, "legacy-1")
    assert not str(entry["token"]).startswith("glrt-")
    assert str(entry["token"]) not in ok.stdout + ok.stderr  # legacy shape masked as a literal
    assert lab.api().verify(str(entry["token"])).valid


# -- dry run and bad input ----------------------------------------------------------------------


def test_dry_run_touches_nothing(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    args = (
        "-e",
        "docker",
        "-s",
        f"group:{lab.group_path}",
        "-n",
        "dry-1",
        "-t",
        "x",
        "--config",
        str(config),
    )
    fresh = run("register", "--dry-run", *args)
    assert fresh.returncode == 0, fresh.stderr
    assert "POST /user/runners" in fresh.stdout
    assert '+  executor = "docker"' in fresh.stdout
    assert not config.exists()
    assert runners_named(lab, "dry-1") == []
    assert run("register", *args).returncode == 0
    before = config.read_bytes()
    changed = run("register", "--dry-run", *args, "-t", "y")
    assert changed.returncode == 0, changed.stderr
    assert "PUT /runners/" in changed.stdout
    assert config.read_bytes() == before
    assert lab.api().get_runner(int(_entry(config, "dry-1")["id"])).tag_list == ("x",)  # type: ignore[call-overload]
    assert not contains_secret(fresh.stdout + changed.stdout)


def test_config_write_failure_deletes_the_new_runner_again(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    assert (
        run(
            "register",
            "-e",
            "shell",
            "-s",
            "instance",
            "-n",
            "keep-1",
            "-t",
            "x",
            "--config",
            str(config),
        ).returncode
        == 0
    )
    before = config.read_bytes()
    limit = len(before) + 64  # the new entry cannot fit: writing config.toml fails (EFBIG)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = run(
        "register",
        "-e",
        "docker",
        "-s",
        "instance",
        "-n",
        "rollback-1",
        "-t",
        "x",
        "--config",
        str(config),
        preexec=small_files,
    )
    assert result.returncode == 3, result.stderr
    assert "File too large" in result.stderr
    assert runners_named(lab, "rollback-1") == []  # created, then deleted again
    assert config.read_bytes() == before
    assert not list(tmp_path.glob(".config.toml.*.tmp"))


def test_invalid_config_is_refused_before_gitlab_is_touched(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('concurrent = "many"\n')
    before = config.read_bytes()
    result = run(
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        "invalid-1",
        "-t",
        "x",
        "--config",
        str(config),
    )
    assert result.returncode == 3
    assert "invalid" in result.stderr
    assert "Hint:" in result.stderr
    assert runners_named(lab, "invalid-1") == []
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("-e", "podman", "-s", "instance"), 2, "'shell', 'docker', 'kubernetes'"),
        (("-e", "shell", "-s", "team:x"), 2, "Valid scopes: instance, group:PATH"),
        (("-e", "shell", "-s", "group:platform-x/nope"), 4, "No group 'platform-x/nope'"),
        (("-e", "shell", "-s", "project:platform-x/nope"), 4, "No project 'platform-x/nope'"),
        (("-e", "shell", "-s", "instance", "--docker-image", "x"), 2, "do not apply"),
    ],
)
def test_bad_input_exits_with_its_code_and_changes_nothing(
    lab: Lab, run: Run, tmp_path: Path, *, args: tuple[str, ...], code: int, needle: str
) -> None:
    config = tmp_path / "config.toml"
    result = run("register", *args, "-n", "bad-1", "-t", "x", "--config", str(config))
    assert result.returncode == code, result.stderr
    assert needle in result.stderr
    assert not config.exists()
    assert runners_named(lab, "bad-1") == []


def test_token_without_the_scope_and_unreachable_gitlab(lab: Lab, run: Run, tmp_path: Path) -> None:
    import gitlab

    gl = gitlab.Gitlab(lab.url, private_token=lab.token)
    root = gl.users.list(username="root")[0]
    weak = gl.http_post(
        f"/users/{root.id}/personal_access_tokens",
        post_data={"name": "read-only", "scopes": ["read_api"], "expires_at": "2099-01-01"},
    )
    config = tmp_path / "config.toml"
    args = (
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        "weak-1",
        "-t",
        "x",
        "--config",
        str(config),
    )
    refused = run(*args, env=lab.env(GITLAB_TOKEN=weak["token"]))  # type: ignore[index]
    assert refused.returncode == 4
    assert "403" in refused.stderr
    assert "create_runner" in refused.stderr
    assert not config.exists()
    down = run(*args, env=lab.env(GITLAB_URL="http://127.0.0.1:9"))
    assert down.returncode == 4
    assert "Cannot reach GitLab" in down.stderr
    assert "Hint:" in down.stderr
    assert not config.exists()
    assert runners_named(lab, "weak-1") == []


# -- listing ------------------------------------------------------------------------------------


def test_runners_list_filters_and_shows_last_contact(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert (
        run(
            "register",
            "-e",
            "shell",
            "-s",
            f"project:{lab.project_path}",
            "-n",
            "list-1",
            "-t",
            "listme",
            "--config",
            str(config),
        ).returncode
        == 0
    )
    result = run(
        "-o", "json", "runners", "list", "--scope", f"project:{lab.project_path}", "--tag", "listme"
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["description"] for r in rows] == ["list-1"]
    assert rows[0]["runner_type"] == "project_type"
    assert rows[0]["contacted_at"] is None or rows[0]["contacted_at"].endswith("+00:00")
    # Let the runner contact GitLab the way gitlab-runner does (job request), then list again.
    token = str(_entry(config, "list-1")["token"])
    polled = requests.post(f"{lab.url}/api/v4/jobs/request", json={"token": token}, timeout=10)
    assert polled.status_code in (201, 204)
    table = run("runners", "list", "--tag", "listme", env=lab.env(TZ="Asia/Tokyo"))
    assert table.returncode == 0, table.stderr
    assert "list-1" in table.stdout
    assert "JST" in table.stdout
    bad = run("runners", "list", "--status", "sleeping")
    assert bad.returncode == 2


# -- concurrency and secrets --------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_concurrent_registers_into_one_file(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    procs = [
        subprocess.Popen(
            [
                RUNNERCTL,
                "register",
                "-e",
                "shell",
                "-s",
                "instance",
                "-n",
                f"conc-{i:02d}",
                "-t",
                "conc",
                "--config",
                str(config),
            ],
            env=lab.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in outcomes] == [0] * 20, outcomes
    entries = tomllib.loads(config.read_text())["runners"]
    names = sorted(e["name"] for e in entries)
    assert names == [f"conc-{i:02d}" for i in range(20)]
    assert len({e["id"] for e in entries}) == 20
    in_gitlab = lab.api().list_runners(ListFilter(tags=("conc",)))
    assert sorted(r.description for r in in_gitlab) == names
    assert validate_text(config.read_text()).valid


def test_no_secret_reaches_output_even_at_debug_level(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    printed: list[str] = []
    steps = [
        (
            "--debug",
            "register",
            "-e",
            "docker",
            "-s",
            f"group:{lab.group_path}",
            "-n",
            "sec-1",
            "-t",
            "s",
            "--config",
            str(config),
        ),
        (
            "--debug",
            "register",
            "-e",
            "docker",
            "-s",
            f"group:{lab.group_path}",
            "-n",
            "sec-1",
            "-t",
            "s",
            "-t",
            "t",
            "--config",
            str(config),
        ),
        (
            "--debug",
            "-o",
            "json",
            "register",
            "-e",
            "docker",
            "-s",
            f"group:{lab.group_path}",
            "-n",
            "sec-1",
            "-t",
            "s",
            "-t",
            "t",
            "--dry-run",
            "--config",
            str(config),
        ),
        ("--debug", "token", "rotate", "sec-1", "--config", str(config)),
        ("--debug", "-o", "json", "runners", "list", "--tag", "s"),
        ("--debug", "unregister", "sec-1", "--config", str(config)),
    ]
    tokens: list[str] = []
    for step in steps:
        if config.exists() and "sec-1" in config.read_text():
            tokens.append(str(_entry(config, "sec-1")["token"]))
        result = run(*step)
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout + result.stderr)
    everything = "\n".join(printed)
    assert "DEBUG" in everything  # the debug logs really were on
    assert not contains_secret(everything)
    assert lab.token not in everything
    for token in tokens:
        assert token not in everything
    # argv of the processes carried no token either: they came from the environment.
    assert all(lab.token not in " ".join(step) for step in steps)
    # Positive control: --show-token does print it.
    shown = run(
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        "sec-2",
        "-t",
        "s",
        "--show-token",
        "--config",
        str(config),
    )
    assert shown.returncode == 0
    assert str(_entry(config, "sec-2")["token"]) in shown.stdout
    assert os.environ.get("GITLAB_TOKEN") is None or os.environ["GITLAB_TOKEN"] not in everything


def test_register_rides_out_injected_5xx_and_429(lab: Lab, run: Run, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    faults = lab.handle.app.faults
    before = faults.snapshot()["injected_total"]
    # Seeded: the first draw (0.13) is under the rate, so the run meets at least one fault
    # whatever the machine's load; unseeded, 0.4**4 of the runs met none and proved nothing.
    faults.configure(fault_rate=0.6, seed=1)
    try:
        result = run(
            "-o",
            "json",
            "register",
            "-e",
            "shell",
            "-s",
            f"group:{lab.group_path}",
            "-n",
            "flaky-1",
            "-t",
            "x",
            "--config",
            str(config),
        )
    finally:
        faults.configure(fault_rate=0.0)
    assert result.returncode == 0, result.stderr
    assert faults.snapshot()["injected_total"] > before  # faults really were injected
    doc = json.loads(result.stdout)
    assert doc["action"] == "created"
    assert doc["requests"] > 4  # the retries are counted
    assert len(runners_named(lab, "flaky-1")) == 1
    assert lab.api().verify(str(_entry(config, "flaky-1")["token"])).valid


def _register(run: Run, name: str, config: Path) -> subprocess.CompletedProcess[str]:
    return run(
        "-o",
        "json",
        "register",
        "-e",
        "shell",
        "-s",
        "instance",
        "-n",
        name,
        "-t",
        "x",
        "--config",
        str(config),
    )


def test_register_converges_when_gitlab_acts_but_its_answers_are_lost(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    """The create happened, the client never heard (502 or a dropped connection): one runner."""
    config = tmp_path / "config.toml"
    faults = lab.handle.app.faults
    before = faults.snapshot()["lost_answers_total"]
    # Every request's answer is lost twice in a row before one gets through.
    faults.configure(lost_answer_rate=1.0)
    try:
        result = _register(run, "lost-1", config)
    finally:
        faults.configure(lost_answer_rate=0.0)
    assert result.returncode == 0, result.stderr
    lost = faults.snapshot()["lost_answers_total"] - before
    assert lost >= 2  # at least the create's answers were lost
    assert len(runners_named(lab, "lost-1")) == 1
    assert lab.api().verify(str(_entry(config, "lost-1")["token"])).valid


def test_token_rotate_converges_when_its_answers_are_lost(
    lab: Lab, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    assert _register(run, "lost-rot", config).returncode == 0
    old = _entry(config, "lost-rot")
    faults = lab.handle.app.faults
    faults.configure(lost_answer_rate=1.0)
    try:
        result = run("-o", "json", "token", "rotate", "lost-rot", "--config", str(config))
    finally:
        faults.configure(lost_answer_rate=0.0)
    assert result.returncode == 0, result.stderr
    new = _entry(config, "lost-rot")
    assert new["id"] == old["id"]
    assert new["token"] != old["token"]
    assert lab.api().verify(str(new["token"])).valid
    assert len(runners_named(lab, "lost-rot")) == 1
