"""Helpers of the fleet tests on the stand-in VMs."""

from __future__ import annotations

from provisioner.runner_config import ConfigDocument, RunnerRef
from tests.integration.hostlab import Lab, VmHost


def remove_entries(lab: Lab, host: VmHost, ids: set[int]) -> None:
    """Drop the config.toml entries of runners ``ids`` on ``host`` (its host key is learnt)."""
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget

    def drop(doc: ConfigDocument) -> None:
        for entry in list(doc.iter_runner_plain()):
            if entry.get("id") in ids:
                doc.remove_runner(RunnerRef(id=int(entry["id"])))

    options = SSHOptions(key_file=lab.key, known_hosts=lab.known_hosts, accept_new=True)
    with SSHSession.connect(SSHTarget.parse(host.target()), options) as session:
        RemoteConfigStore(session).update(drop, create=True)
