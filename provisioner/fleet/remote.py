"""The real hosts of a fleet for ``apply``: Ansible over all of them, config.toml over SSH.

:class:`SSHHosts` is the :class:`~provisioner.fleet.apply.FleetHosts` of a live run. Provisioning
is one ``site.yml`` run whose inventory names each host as FLEET.toml does (with its address,
user and ``vars``), so Ansible's recap maps straight back to the fleet's hosts. Each host's
config.toml goes through :class:`~provisioner.hosts.remote_store.RemoteConfigStore`: one SSH
session per transaction, the host's own lock, an atomic rename, and a reload of gitlab-runner.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from provisioner.fleet.model import HostSpec
from provisioner.hosts.provision import (
    HostStatus,
    PlaybookRunner,
    ProvisionRequest,
    provision,
)
from provisioner.hosts.remote_store import RemoteConfigStore
from provisioner.settings import cache_dir
from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

ConnectFn = Callable[[SSHTarget, SSHOptions], SSHSession]


def target_of(host: HostSpec) -> SSHTarget:
    """The SSH target of a fleet host."""
    return SSHTarget(host=host.address, user=host.user, port=host.port)


class SSHHosts:
    """Provision with Ansible, edit config.toml over SSH (one session per transaction)."""

    def __init__(
        self,
        *,
        ssh: SSHOptions,
        connect: ConnectFn,
        runner: PlaybookRunner | None = None,
        on_secret: Callable[[str], None] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.ssh = ssh
        self.connect = connect
        self.runner = runner
        self.on_secret = on_secret
        self.work_dir = work_dir

    def provision(self, hosts: Sequence[HostSpec], *, forks: int) -> Mapping[str, str | None]:
        """One ``site.yml`` run over ``hosts``; per host None (converged) or the error."""
        root = self.work_dir or cache_dir() / "fleet"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.TemporaryDirectory(dir=root, prefix="inventory-") as tmp:
            inventory = write_inventory(Path(tmp), hosts, self.ssh)
            result = provision(
                ProvisionRequest(inventory=inventory, ssh=self.ssh, forks=forks),
                runner=self.runner,
                on_secret=self.on_secret,
            )
        recaps = {r.host: r for r in result.hosts}
        outcome: dict[str, str | None] = {}
        for host in hosts:
            recap = recaps.get(host.name)
            if recap is None:
                outcome[host.name] = "no result from Ansible for this host"
            elif recap.status in (HostStatus.OK, HostStatus.CHANGED):
                outcome[host.name] = None
            else:
                outcome[host.name] = recap.error or f"Ansible: {recap.status.value}"
        return outcome

    @contextlib.contextmanager
    def store(self, host: HostSpec) -> Iterator[RemoteConfigStore]:
        """The host's config.toml, over an SSH session open for the ``with`` block."""
        session = self.connect(target_of(host), self.ssh)
        try:
            yield RemoteConfigStore(session, host.config_path, label=host.name)
        finally:
            session.close()


def write_inventory(directory: Path, hosts: Sequence[HostSpec], ssh: SSHOptions) -> Path:
    """An Ansible inventory naming each host as FLEET.toml does, with its ``vars``.

    Written as JSON, which Ansible's YAML inventory plugin reads as it is.
    """
    entries: dict[str, dict[str, Any]] = {}
    for host in hosts:
        entry: dict[str, Any] = {
            **dict(host.vars),
            "ansible_host": host.address,
            "ansible_port": host.port,
            "ansible_user": host.user,
        }
        if host.roles is not None:
            entry["runnerctl_roles"] = list(host.roles)
        if ssh.key_file is not None:
            entry["ansible_ssh_private_key_file"] = str(ssh.key_file.expanduser())
        entries[host.name] = entry
    path = directory / "hosts.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"all": {"hosts": entries}}, fh, indent=2, sort_keys=True, default=str)
    return path
