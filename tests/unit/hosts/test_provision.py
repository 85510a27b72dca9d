"""host provision with a fake playbook runner: inventory, secrets, progress, recap."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.ansible import (
    EventKind,
    HostStats,
    PlaybookEvent,
    PlaybookRun,
    PlaybookSpec,
    _dispatch,
    redact_artifacts,
)
from provisioner.errors import UsageError
from provisioner.hosts.provision import (
    HostStatus,
    ProvisionEvent,
    ProvisionRequest,
    load_vars,
    playbooks_dir,
    provision,
)
from provisioner.secrets import Redactor
from provisioner.ssh import SSHOptions, SSHTarget

TOKEN = "glrt-unitTestToken1234567890abcd"


class FakeRunner:
    """Plays scripted events, checks what the real runner would get, returns scripted stats."""

    def __init__(self, events: list[PlaybookEvent], stats: tuple[HostStats, ...]) -> None:
        self.events = events
        self.stats = stats
        self.spec: PlaybookSpec | None = None
        self.inventory_files: dict[str, str] = {}

    def __call__(
        self,
        spec: PlaybookSpec,
        *,
        redactor: Redactor,
        on_event: Callable[[PlaybookEvent], None] | None = None,
    ) -> PlaybookRun:
        self.spec = spec
        for path in Path(spec.inventory).rglob("*.yml"):
            self.inventory_files[path.name] = path.read_text()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for event in self.events:
            assert on_event is not None
            on_event(event)
        artifacts = spec.private_data_dir / "artifacts" / "run"
        artifacts.mkdir(parents=True)
        (artifacts / "stdout").write_text(f"leaked {TOKEN}\n")
        return PlaybookRun(
            rc=0 if all(not s.failed and not s.unreachable for s in self.stats) else 2,
            status="successful",
            stats=self.stats,
            errors={"b": "Copy cosign: timed out"},
            artifacts=artifacts,
        )


def request(tmp_path: Path, **kwargs: Any) -> ProvisionRequest:
    return ProvisionRequest(
        targets=(SSHTarget("a", "ops"), SSHTarget("b", "ops", 2222)),
        ssh=SSHOptions(key_file=tmp_path / "key", known_hosts=tmp_path / "kh"),
        artifacts_root=tmp_path / "runs",
        **kwargs,
    )


def test_recap_progress_and_inventory(tmp_path: Path) -> None:
    events = [
        PlaybookEvent(EventKind.TASK, "Install base packages"),
        PlaybookEvent(EventKind.CHANGED, "Install base packages", host="a"),
        PlaybookEvent(EventKind.OK, "Create the runner user", host="a"),
        PlaybookEvent(EventKind.UNREACHABLE, "Install base packages", host="b_2222"),
    ]
    stats = (
        HostStats("a", ok=2, changed=1),
        HostStats("b_2222", unreachable=1),
    )
    runner = FakeRunner(events, stats)
    seen: list[ProvisionEvent] = []
    result = provision(request(tmp_path, check=True), runner=runner, on_event=seen.append)
    assert [(e.host, e.kind, e.counts.ok, e.counts.changed) for e in seen] == [
        ("a", EventKind.CHANGED, 1, 1),
        ("a", EventKind.OK, 2, 1),
        ("b_2222", EventKind.UNREACHABLE, 0, 0),
    ]
    assert [(r.host, r.status) for r in result.hosts] == [
        ("a", HostStatus.CHANGED),
        ("b_2222", HostStatus.UNREACHABLE),
    ]
    assert not result.ok
    assert result.check
    assert runner.spec is not None
    assert runner.spec.check
    assert runner.spec.playbook == "site.yml"
    assert runner.spec.project_dir == playbooks_dir()
    assert "StrictHostKeyChecking=yes" in runner.spec.envvars["ANSIBLE_SSH_ARGS"]
    inventory = yaml.safe_load(runner.inventory_files["hosts.yml"])
    assert inventory["all"]["hosts"]["b_2222"] == {
        "ansible_host": "b",
        "ansible_port": 2222,
        "ansible_user": "ops",
        "ansible_ssh_private_key_file": str(tmp_path / "key"),
    }


def test_a_host_that_never_reported_is_failed(tmp_path: Path) -> None:
    runner = FakeRunner([], (HostStats("a", ok=30),))
    result = provision(request(tmp_path), runner=runner)
    by_host = {r.host: r for r in result.hosts}
    assert by_host["a"].status is HostStatus.OK
    assert by_host["b_2222"].status is HostStatus.FAILED
    assert not result.ok


def test_secrets_stay_in_private_files_and_out_of_artifacts(tmp_path: Path) -> None:
    secrets: list[str] = []
    runner = FakeRunner([], (HostStats("a", ok=1), HostStats("b_2222", ok=1)))
    opts = SSHOptions(become_password="s3cret-sudo-pw", known_hosts=tmp_path / "kh")
    req = ProvisionRequest(
        targets=(SSHTarget("a", "ops"),), ssh=opts, artifacts_root=tmp_path / "runs"
    )
    result = provision(req, runner=runner, on_secret=secrets.append)
    assert "s3cret-sudo-pw" in secrets
    assert runner.spec is not None
    assert runner.spec.extravars["ansible_become_password"] == "s3cret-sudo-pw"
    assert TOKEN not in (result.artifacts / "stdout").read_text()


def test_config_file_is_merged_per_host_and_removed_after_the_run(tmp_path: Path) -> None:
    class Host:
        def sftp(self, *, as_root: bool = True) -> Any:
            class S:
                def read_text(self, path: str) -> str | None:
                    return None

                def close(self) -> None:
                    pass

            return S()

        def close(self) -> None:
            pass

    config = f'concurrent = 1\n[[runners]]\nname = "r"\nurl = "http://g"\ntoken = "{TOKEN}"\n'
    runner = FakeRunner([], (HostStats("a", ok=1), HostStats("b_2222", ok=1)))
    secrets: list[str] = []
    provision(
        request(tmp_path, config_text=config),
        runner=runner,
        connect=lambda _t: Host(),  # type: ignore[arg-type,return-value]
        on_secret=secrets.append,
    )
    host_vars = yaml.safe_load(runner.inventory_files["a.yml"])
    assert TOKEN in host_vars["runner_config_content"]
    assert TOKEN in secrets
    assert not list((tmp_path / "runs").rglob("host_vars/*.yml"))


def test_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        provision(ProvisionRequest(), runner=FakeRunner([], ()))
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all: {}\n")
    with pytest.raises(UsageError, match="HOST arguments"):
        provision(
            ProvisionRequest(inventory=inventory, config_text="concurrent = 1\n"),
            runner=FakeRunner([], ()),
        )
    with pytest.raises(UsageError, match="inventory not found"):
        provision(ProvisionRequest(inventory=tmp_path / "nope"), runner=FakeRunner([], ()))


def test_load_vars(tmp_path: Path) -> None:
    good = tmp_path / "v.yml"
    good.write_text("docker_install_method: none\n")
    assert load_vars(good) == {"docker_install_method": "none"}
    bad = tmp_path / "bad.yml"
    bad.write_text("- a list\n")
    with pytest.raises(UsageError, match="mapping"):
        load_vars(bad)


def test_events_are_redacted_and_failures_recorded() -> None:
    seen: list[PlaybookEvent] = []
    errors: dict[str, str] = {}
    event = {
        "event": "runner_on_failed",
        "event_data": {
            "host": "a",
            "task": "Deploy",
            "res": {"msg": f"could not write token = {TOKEN}"},
        },
    }
    _dispatch(event, Redactor(), errors, seen.append)
    assert seen[0].kind is EventKind.FAILED
    assert TOKEN not in seen[0].message
    assert TOKEN not in errors["a"]
    ignored = {"event": "runner_on_failed", "event_data": {"host": "a", "ignore_errors": True}}
    _dispatch(ignored, Redactor(), errors, seen.append)
    changed = {"event": "runner_on_ok", "event_data": {"host": "a", "res": {"changed": True}}}
    _dispatch(changed, Redactor(), errors, seen.append)
    assert [e.kind for e in seen] == [EventKind.FAILED, EventKind.CHANGED]


def test_redact_artifacts(tmp_path: Path) -> None:
    (tmp_path / "job_events").mkdir()
    (tmp_path / "job_events" / "1.json").write_text(f'{{"x": "{TOKEN}", "p": "pw-literal"}}')
    redact_artifacts(tmp_path, ["pw-literal"])
    text = (tmp_path / "job_events" / "1.json").read_text()
    assert TOKEN not in text
    assert "pw-literal" not in text


def test_playbooks_are_package_data() -> None:
    book = playbooks_dir()
    assert (book / "site.yml").is_file()
    site = yaml.safe_load((book / "site.yml").read_text())
    roles = [r["role"] for r in site[0]["roles"]]
    assert roles == ["common", "docker", "python", "cosign", "gitlab_runner", "runner_config"]
    for role in roles:
        assert (book / "roles" / role / "README.md").is_file(), role
        assert (book / "roles" / role / "defaults" / "main.yml").is_file(), role
