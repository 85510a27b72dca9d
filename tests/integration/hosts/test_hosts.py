"""host check, host provision and the remote config store against real sshd + systemd hosts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_runnerctl
from tests.helpers import wait_for_pipeline
from tests.integration.hostlab import COSIGN, Lab, VmHost, docker, install_runnerctl
from tests.integration.sandbox_runner.conftest import API_ONLY

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow]


def runnerctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_runnerctl(*args, env=env, timeout=600)


def check_json(lab: Lab, target: str, *extra: str, key: Path | None = None) -> tuple[int, Any]:
    args = ["--key-file", str(key or lab.key), "--known-hosts", str(lab.known_hosts)]
    proc = runnerctl("-o", "json", "host", "check", target, "--accept-new", *args, *extra)
    return proc.returncode, json.loads(proc.stdout)


def finding(doc: Any, check: str) -> dict[str, str]:
    (host,) = doc["hosts"]
    return next(c for c in host["checks"] if c["check"] == check)


# --------------------------------------------------------------------------- preflight


def test_unknown_host_key_is_refused_without_accept_new(lab: Lab, tmp_path: Path) -> None:
    host = lab.hosts[0]
    known = tmp_path / "known_hosts"
    args = ["--key-file", str(lab.key), "--known-hosts", str(known)]
    proc = runnerctl("-o", "json", "host", "check", host.target(), *args)
    assert proc.returncode == 5
    first = finding(json.loads(proc.stdout), "host-key")
    assert first["status"] == "fail"
    assert "--accept-new" in first["fix"]
    assert not known.exists()
    proc = runnerctl("-o", "json", "host", "check", host.target(), *args, "--accept-new")
    assert finding(json.loads(proc.stdout), "ssh")["status"] == "pass"
    assert host.ip in known.read_text()
    # the saved key is now trusted without --accept-new
    proc = runnerctl("-o", "json", "host", "check", host.target(), *args)
    assert finding(json.loads(proc.stdout), "ssh")["status"] == "pass"


def test_preflight_passes_on_a_good_host(lab: Lab) -> None:
    host, web = lab.hosts[0], lab.hosts[1]
    # A GitLab stand-in the host can reach: an HTTP server on another VM of the bridge.
    docker("exec", "-d", web.container, "python3", "-m", "http.server", "8080")
    url = f"http://{web.ip}:8080"
    probe = (
        "import socket, time\n"
        "for _ in range(100):\n"
        "    try: socket.create_connection(('127.0.0.1', 8080)); break\n"
        "    except OSError: time.sleep(0.1)"
    )
    docker("exec", web.container, "python3", "-c", probe)
    code, doc = check_json(lab, host.target(), "--gitlab-url", url)
    statuses = {c["check"]: c["status"] for c in doc["hosts"][0]["checks"]}
    assert code == 0, doc
    assert statuses == {
        "ssh": "pass",
        "sudo": "pass",
        "os": "pass",
        "arch": "pass",
        "python3": "pass",
        "disk": "pass",
        "clock": "pass",
        "gitlab": "pass",
        "docker-group": statuses["docker-group"],
    }
    assert statuses["docker-group"] in ("skip", "pass")
    assert doc["ok"] is True


def test_preflight_fails_without_sudo(lab: Lab) -> None:
    code, doc = check_json(lab, lab.hosts[0].target("nosudo"))
    assert code == 5
    sudo = finding(doc, "sudo")
    assert sudo["status"] == "fail"
    assert "NOPASSWD" in sudo["fix"]
    assert "--become-password-file" in sudo["fix"]
    assert finding(doc, "os")["status"] == "pass"  # the other checks still ran


def test_preflight_fails_when_the_key_is_refused(lab: Lab) -> None:
    code, doc = check_json(lab, lab.hosts[0].target(), key=lab.wrong_key)
    assert code == 5
    ssh = finding(doc, "ssh")
    assert ssh["status"] == "fail"
    assert "authentication failed" in ssh["detail"]
    assert "authorized_keys" in ssh["fix"]
    assert finding(doc, "sudo")["status"] == "skip"


def test_preflight_fails_when_gitlab_is_unreachable_from_the_host(lab: Lab) -> None:
    # Port 9 on the host's own loopback refuses: reachable from here is not the question.
    code, doc = check_json(lab, lab.hosts[0].target(), "--gitlab-url", "http://127.0.0.1:9")
    assert code == 5
    gitlab = finding(doc, "gitlab")
    assert gitlab["status"] == "fail"
    assert gitlab["detail"].startswith("TCP:")
    assert "refused" in gitlab["detail"]
    assert "firewall" in gitlab["fix"]


def test_preflight_text_output_has_a_fix_per_failed_check(lab: Lab) -> None:
    proc = runnerctl(
        "host",
        "check",
        lab.hosts[0].target("nosudo"),
        "--accept-new",
        "--key-file",
        str(lab.key),
        "--known-hosts",
        str(lab.known_hosts),
    )
    assert proc.returncode == 5
    assert f"nosudo@{lab.hosts[0].ip}: NOT READY" in proc.stdout
    assert "NOPASSWD" in proc.stdout


# --------------------------------------------------------------------------- provisioning


def _provision(lab: Lab, hosts: list[VmHost], **kwargs: Any) -> Any:
    from provisioner.hosts.provision import ProvisionRequest, load_vars, provision
    from provisioner.ssh import SSHOptions, SSHTarget

    on_event = kwargs.pop("on_event", None)
    request = ProvisionRequest(
        targets=tuple(SSHTarget.parse(h.target()) for h in hosts),
        ssh=SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts, accept_new=True),
        extra_vars=load_vars(lab.vars_file),
        artifacts_root=lab.home / "artifacts",
        **kwargs,
    )
    return provision(request, on_event=on_event)


@pytest.fixture(scope="module")
def first_run(lab: Lab) -> Any:
    """Provision all three hosts; host c's SSH is cut (container paused) mid-run."""
    victim = lab.hosts[2]
    cut = threading.Event()

    def on_event(event: Any) -> None:
        # Pause c right after the pinned-sha256 check: the next task copies cosign over SSH.
        if event.host == victim.ip and "cosign" in event.task and not cut.is_set():
            cut.set()
            docker("pause", victim.container)

    try:
        result = _provision(lab, lab.hosts, on_event=on_event)
    finally:
        if cut.is_set():
            docker("unpause", victim.container)
    assert cut.is_set(), f"the run never reached host c's cosign tasks: {result}"
    return result


def test_cut_host_is_reported_failed_and_the_others_finish(first_run: Any, lab: Lab) -> None:
    by_host = {r.host: r for r in first_run.hosts}
    a, b, c = (by_host[h.ip] for h in lab.hosts)
    assert c.status.value in ("unreachable", "failed")
    assert a.status.value == "changed"
    assert a.failed == 0
    assert a.unreachable == 0
    assert b.status.value == "changed"
    assert b.failed == 0
    assert b.unreachable == 0
    assert not first_run.ok
    assert first_run.artifacts.is_dir()
    assert (first_run.artifacts / "job_events").is_dir()


@pytest.fixture(scope="module")
def converged(first_run: Any, lab: Lab) -> Any:
    return _provision(lab, lab.hosts)


def test_rerun_converges(converged: Any, lab: Lab) -> None:
    assert converged.ok, converged.hosts
    by_host = {r.host: r for r in converged.hosts}
    assert set(by_host) == {h.ip for h in lab.hosts}
    assert by_host[lab.hosts[2].ip].changed > 0  # c finished what the cut interrupted


def test_second_run_changes_nothing(converged: Any, lab: Lab) -> None:
    again = _provision(lab, lab.hosts)
    assert again.ok
    assert {r.host: r.changed for r in again.hosts} == {h.ip: 0 for h in lab.hosts}
    assert all(r.ok > 20 for r in again.hosts)


def test_provisioned_host_is_a_runner_host(converged: Any, lab: Lab) -> None:
    import hashlib

    host = lab.hosts[1]
    assert host.sh("systemctl is-active gitlab-runner") == "active"
    assert host.sh("systemctl is-enabled gitlab-runner") == "enabled"
    assert "17.11.0~standin" in host.sh("gitlab-runner --version")
    assert host.sh("id -nG gitlab-runner").split().count("docker") == 1
    assert host.sh("systemctl is-active docker") == "active"
    assert host.sh("su gitlab-runner -c 'docker info -f {{.Driver}}'") == "vfs"
    cosign_sha = host.sh("sha256sum /usr/local/bin/cosign").split()[0]
    assert cosign_sha == hashlib.sha256(COSIGN.read_bytes()).hexdigest()
    assert host.sh("stat -c '%a %U' /etc/gitlab-runner") == "700 root"
    assert host.sh("test -e /home/gitlab-runner/.bash_logout; echo $?") == "1"
    assert host.sh("python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version").startswith("pip")
    # and the preflight now sees the docker group
    code, doc = check_json(lab, host.target())
    assert code == 0
    assert finding(doc, "docker-group")["status"] == "pass"


def test_check_diff_changes_nothing(converged: Any, lab: Lab) -> None:
    host = lab.hosts[0]
    host.sh("gpasswd -d gitlab-runner docker && rm /usr/local/bin/cosign")
    try:
        dry = _provision(lab, [host], check=True, diff=True)
        (recap,) = dry.hosts
        assert recap.changed >= 2  # it would re-add the group and copy cosign back
        assert "docker" not in host.sh("id -nG gitlab-runner").split()
        assert host.sh("test -e /usr/local/bin/cosign; echo $?") == "1"
    finally:
        fixed = _provision(lab, [host])
    assert fixed.ok
    assert "docker" in host.sh("id -nG gitlab-runner").split()


def test_provision_cli_prints_progress_recap_and_artifacts(converged: Any, lab: Lab) -> None:
    host = lab.hosts[0]
    proc = runnerctl(
        "host", "provision", host.target(), "--vars", str(lab.vars_file), *lab.ssh_args()
    )
    assert proc.returncode == 0, proc.stderr
    assert f"[{host.ip}] task" in proc.stderr or f"[{host.ip}] ok" in proc.stderr
    assert "PLAY RECAP" in proc.stdout
    recap = next(line for line in proc.stdout.splitlines() if line.startswith(host.ip))
    assert "changed=0" in recap
    assert "failed=0" in recap
    artifacts = Path(proc.stdout.split("artifacts: ", 1)[1].strip())
    assert (artifacts / "job_events").is_dir()


# --------------------------------------------------------------------------- remote store

ROTATED = "glrt-rotatedOnTheHost0000000000000"
STALE = "glrt-staleControllerCopy00000000000"

CONFIG = """concurrent = 2
check_interval = 0

[[runners]]
  name = "vm-shell"
  url = "http://gitlab.example.test"
  id = 41
  token = "{token}"
  token_obtained_at = {obtained}
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  shell = "bash"
"""


def test_controller_redeploy_keeps_a_token_rotated_on_the_host(converged: Any, lab: Lab) -> None:
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.runner_config import ConfigDocument
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

    host = lab.hosts[1]
    # gitlab-runner rotated its token on the host (newer token_obtained_at) ...
    on_host = CONFIG.format(token=ROTATED, obtained="2026-11-20T10:00:00Z")
    host.sh(
        f"cat > /etc/gitlab-runner/config.toml <<'EOF'\n{on_host}EOF\n"
        "chmod 600 /etc/gitlab-runner/config.toml"
    )
    # ... while the controller still holds the old copy, with one more setting changed.
    stale = CONFIG.format(token=STALE, obtained="2026-11-01T10:00:00Z").replace(
        "concurrent = 2", "concurrent = 4"
    )
    controller = lab.home / "controller.toml"
    controller.write_text(stale)
    result = _provision(lab, [host], config_text=stale)
    assert result.ok
    text = host.sh("cat /etc/gitlab-runner/config.toml")
    assert ROTATED in text
    assert STALE not in text
    assert "concurrent = 4" in text  # the rest of the controller's change was deployed
    assert host.sh("stat -c '%a %U' /etc/gitlab-runner/config.toml") == "600 root"
    # No token reached the artifacts kept for debugging.
    dumped = "".join(
        p.read_text(errors="replace") for p in result.artifacts.rglob("*") if p.is_file()
    )
    assert ROTATED not in dumped
    assert STALE not in dumped
    # The SFTP store keeps it too, and says so.
    target = SSHTarget.parse(host.target())
    with SSHSession.connect(target, SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts)) as s:
        store = RemoteConfigStore(s, label=str(target))
        update = store.save(ConfigDocument.parse(stale))
        assert update.kept_from_disk == ("vm-shell",)
        assert ROTATED in host.sh("cat /etc/gitlab-runner/config.toml")


def test_remote_store_write_is_atomic_private_backed_up_and_reloads(
    converged: Any, lab: Lab
) -> None:
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

    host = lab.hosts[2]
    host.sh(
        "rm -f /etc/gitlab-runner/config.toml* /var/log/gitlab-runner-standin.log && "
        "systemctl restart gitlab-runner"
    )
    target = SSHTarget.parse(host.target())
    options = SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts)
    with SSHSession.connect(target, options) as session:
        store = RemoteConfigStore(session, label=str(target))
        first = store.update(lambda doc: doc.set_global("concurrent", 3), create=True)
        assert first.changed
        assert first.backup is None
        second = store.update(lambda doc: doc.set_global("concurrent", 5))
        assert second.changed
        assert second.backup is not None
        assert store.update(lambda doc: doc.set_global("concurrent", 5)).changed is False
        assert store.reloaded
    assert host.sh("stat -c '%a %U %G' /etc/gitlab-runner/config.toml") == "600 root root"
    assert "concurrent = 5" in host.sh("cat /etc/gitlab-runner/config.toml")
    backups = host.sh("ls /etc/gitlab-runner/").split()
    assert sum(n.startswith("config.toml.bak.") for n in backups) == 1
    assert not [n for n in backups if n.endswith(".tmp")]
    assert "reload" in host.sh("cat /var/log/gitlab-runner-standin.log")
    # The lock is the host's flock: while someone holds it, a write waits.
    holder = subprocess.Popen(
        [
            "docker",
            "exec",
            host.container,
            "flock",
            "/etc/gitlab-runner/config.toml.lock",
            "sleep",
            "3",
        ]
    )
    try:
        import time

        time.sleep(0.5)
        started = time.monotonic()
        with SSHSession.connect(target, options) as session:
            RemoteConfigStore(session).update(lambda doc: doc.set_global("concurrent", 6))
        assert time.monotonic() - started > 1.5
    finally:
        holder.wait(timeout=30)


def test_config_show_validate_lint_with_host(converged: Any, lab: Lab) -> None:
    host = lab.hosts[1]
    env = {**__import__("os").environ, "HOME": str(lab.home)}
    ssh = ["--host", host.target(), "--ssh-key", str(lab.key)]
    shown = runnerctl("-o", "json", "config", "show", *ssh, env=env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["path"] == f"{host.target()}:/etc/gitlab-runner/config.toml"
    assert [r["name"] for r in doc["runners"]] == ["vm-shell"]
    assert ROTATED not in shown.stdout
    valid = runnerctl("config", "validate", *ssh, env=env)
    assert valid.returncode == 0
    assert "valid:" in valid.stdout
    lint = runnerctl("config", "lint", *ssh, "--fail-on", "never", env=env)
    assert lint.returncode == 0
    missing = runnerctl("config", "show", *ssh, "--config", "/nowhere/config.toml", env=env)
    assert missing.returncode == 3
    assert "config file not found" in missing.stderr


@pytest.mark.sandbox
def test_register_with_host_writes_the_runner_on_the_host(
    converged: Any, lab: Lab, sandbox: Any, tmp_path: Path
) -> None:
    import os

    host = lab.hosts[0]
    host.sh(
        "rm -f /etc/gitlab-runner/config.toml /var/log/gitlab-runner-standin.log && "
        "systemctl restart gitlab-runner"
    )
    token_file = tmp_path / "token"
    token_file.write_text(sandbox.root_token)
    env = {**os.environ, "HOME": str(lab.home)}
    name = sandbox.unique("vm-runner")
    args = [
        "register",
        "--executor",
        "shell",
        "--scope",
        "instance",
        "--name",
        name,
        "--tag",
        "vm",
        "--gitlab-url",
        sandbox.url,
        "--token-file",
        str(token_file),
        "--host",
        host.target(),
        "--ssh-key",
        str(lab.key),
    ]
    proc = runnerctl(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"{host.target()}:/etc/gitlab-runner/config.toml (written)" in proc.stdout
    text = host.sh("cat /etc/gitlab-runner/config.toml")
    assert f'name = "{name}"' in text
    assert "glrt-" in text
    assert "glrt-" not in proc.stdout + proc.stderr
    assert host.sh("stat -c '%a %U' /etc/gitlab-runner/config.toml") == "600 root"
    assert "reload" in host.sh("cat /var/log/gitlab-runner-standin.log")
    again = runnerctl(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "(unchanged)" in again.stdout


# --------------------------------------------------------------------------- end to end


@pytest.mark.sandbox
def test_jobs_run_on_the_provisioned_host(
    converged: Any, lab: Lab, bridge_sandbox: Any, tmp_path: Path
) -> None:
    import os

    import gitlab

    host = lab.hosts[1]
    install_runnerctl(host, tmp_path)
    host.sh("rm -f /etc/gitlab-runner/config.toml && systemctl restart gitlab-runner")
    token_file = tmp_path / "token"
    token_file.write_text(bridge_sandbox.root_token)
    env = {**os.environ, "HOME": str(lab.home)}
    proc = runnerctl(
        "register", "--executor", "shell", "--scope", "instance", "--name", "vm-e2e",
        "--tag", "vm-e2e", "--gitlab-url", bridge_sandbox.url, "--token-file", str(token_file),
        "--host", host.target(), "--ssh-key", str(lab.key), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    gl = gitlab.Gitlab(bridge_sandbox.url, private_token=bridge_sandbox.root_token)
    project = gl.projects.create({"name": "on-vm", "path": "on-vm"})
    # API_ONLY: the commit's own push pipeline does not start; only the pipeline created below.
    ci = (
        API_ONLY
        + 'on-vm:\n  tags: [vm-e2e]\n  script:\n    - echo "ran on $(hostname) as $(id -un)"\n'
    )
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "ci",
            "actions": [{"action": "create", "file_path": ".gitlab-ci.yml", "content": ci}],
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})

    wait_for_pipeline(
        pipeline,
        timeout=120,
        context=lambda: host.sh("tail -30 /var/log/gitlab-runner-standin.log"),
    )
    (job,) = pipeline.jobs.list(get_all=True)
    trace = project.jobs.get(job.id).trace().decode()
    assert pipeline.status == "success", trace + host.sh(
        "tail -30 /var/log/gitlab-runner-standin.log"
    )
    assert "ran on vm-b as gitlab-runner" in trace

    # runnerctl smoke: the whole pipeline (test, build, sign with the cosign the playbook
    # installed, verify, publish, consumer verify) runs on the host.
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.runner_config import RunnerRef
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

    target = SSHTarget.parse(host.target())
    with SSHSession.connect(target, SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts)) as s:
        gateway = bridge_sandbox.url.split("//", 1)[1].split(":", 1)[0]
        env_path = [
            "PATH=/opt/runnerctl/bin:/usr/local/bin:/usr/bin:/bin",
            # pip refuses a plain-http index unless trusted: the sandbox here is http.
            f"PIP_TRUSTED_HOST={gateway}",
        ]
        RemoteConfigStore(s).update(
            lambda doc: doc.update_runner(RunnerRef(name="vm-e2e"), {"environment": env_path})
        )
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # cosign for the checks
    smoke = runnerctl(
        "smoke", "--tag", "vm-e2e", "--gitlab-url", bridge_sandbox.url, "--token-file",
        str(token_file), "--timeout", "5m", "--junit", str(tmp_path / "smoke.xml"), env=env,
    )  # fmt: skip
    log = host.sh("tail -40 /var/log/gitlab-runner-standin.log")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr + log
    assert "Smoke passed" in smoke.stdout + smoke.stderr
    received = host.sh("grep -c 'Checking for jobs... received' /var/log/gitlab-runner-standin.log")
    assert int(received) >= 8  # the first pipeline's job and the 7 smoke jobs ran here
