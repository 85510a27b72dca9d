"""Helpers of the fleet tests on the stand-in VMs."""

from __future__ import annotations

from collections.abc import Callable

from provisioner.runner_config import ConfigDocument, RunnerRef
from tests.integration.hostlab import Lab, VmHost


def edit_config(lab: Lab, host: VmHost, change: Callable[[ConfigDocument], None]) -> None:
    """Change ``host``'s config.toml as root, over SSH (its host key is learnt)."""
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

    options = SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts, accept_new=True)
    with SSHSession.connect(SSHTarget.parse(host.target()), options) as session:
        RemoteConfigStore(session).update(change, create=True)


def remove_entries(lab: Lab, host: VmHost, ids: set[int]) -> None:
    """Drop the config.toml entries of runners ``ids`` on ``host``."""

    def drop(doc: ConfigDocument) -> None:
        for entry in list(doc.iter_runner_plain()):
            if entry.get("id") in ids:
                doc.remove_runner(RunnerRef(id=int(entry["id"])))

    edit_config(lab, host, drop)
