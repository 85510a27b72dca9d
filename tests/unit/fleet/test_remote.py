"""The hosts of a live apply: one Ansible run named after the fleet's hosts, SSH per write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioner.ansible import HostStats, PlaybookRun, PlaybookSpec
from provisioner.fleet.model import HostSpec
from provisioner.fleet.remote import SSHHosts, target_of
from provisioner.hosts.remote_store import RemoteConfigStore
from provisioner.ssh import SSHOptions, SSHTarget

HOSTS = (
    HostSpec("vm-a", "10.0.0.5", "ops", vars={"docker_daemon_options": {"storage-driver": "vfs"}}),
    HostSpec("vm-b", "10.0.0.6", "admin", port=2222),
    HostSpec("vm-c", "10.0.0.7", "ops"),
)


class FakePlaybook:
    def __init__(self) -> None:
        self.inventory: dict[str, Any] = {}
        self.forks = 0

    def __call__(self, spec: PlaybookSpec, **_kw: Any) -> PlaybookRun:
        self.inventory = json.loads(Path(spec.inventory).read_text())
        self.forks = spec.forks
        stats = (
            HostStats("vm-a", ok=5, changed=2),
            HostStats("vm-b", ok=1, failed=1),
        )
        errors = {"vm-b": "apt-get install failed"}
        return PlaybookRun(2, "failed", stats, errors, spec.private_data_dir)


def test_one_run_over_the_hosts_named_as_in_the_fleet(tmp_path: Path) -> None:
    playbook = FakePlaybook()
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key")
    hosts = SSHHosts(
        ssh=SSHOptions(key_file=key),
        connect=lambda *_a: None,  # type: ignore[arg-type,return-value]
        runner=playbook,
        work_dir=tmp_path / "work",
    )

    outcome = hosts.provision(HOSTS, forks=3)

    assert outcome == {
        "vm-a": None,
        "vm-b": "apt-get install failed",
        "vm-c": "no result from Ansible for this host",
    }
    assert playbook.forks == 3
    assert playbook.inventory == {
        "all": {
            "hosts": {
                "vm-a": {
                    "ansible_host": "10.0.0.5",
                    "ansible_port": 22,
                    "ansible_user": "ops",
                    "ansible_ssh_private_key_file": str(key),
                    "docker_daemon_options": {"storage-driver": "vfs"},
                },
                "vm-b": {
                    "ansible_host": "10.0.0.6",
                    "ansible_port": 2222,
                    "ansible_user": "admin",
                    "ansible_ssh_private_key_file": str(key),
                },
                "vm-c": {
                    "ansible_host": "10.0.0.7",
                    "ansible_port": 22,
                    "ansible_user": "ops",
                    "ansible_ssh_private_key_file": str(key),
                },
            }
        }
    }
    assert list((tmp_path / "work").glob("inventory-*")) == []  # removed after the run


class FakeSession:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_store_is_one_ssh_session_closed_after_the_transaction() -> None:
    session = FakeSession()
    seen: list[SSHTarget] = []

    def connect(target: SSHTarget, _options: SSHOptions) -> Any:
        seen.append(target)
        return session

    hosts = SSHHosts(ssh=SSHOptions(), connect=connect)
    spec = HostSpec("vm-b", "10.0.0.6", "admin", port=2222, config_path="/srv/runner/config.toml")
    with hosts.store(spec) as store:
        assert isinstance(store, RemoteConfigStore)
        assert store.remote_path == "/srv/runner/config.toml"
        assert str(store.path) == "vm-b:/srv/runner/config.toml"
        assert not session.closed
    assert session.closed
    assert seen == [target_of(spec)] == [SSHTarget("10.0.0.6", "admin", 2222)]
