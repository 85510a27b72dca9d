"""The live wiring of ``fleet apply``: FLEET.toml, GitLab and the hosts over SSH.

:func:`live_fleet` loads the file and binds the real adapters to the steps
:func:`~provisioner.fleet.converge.converge` takes (observe, plan, the GitLab calls, the hosts),
so the command only parses its options and renders the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.fleet.diff import plan
from provisioner.fleet.load import load_fleet
from provisioner.fleet.model import Fleet, FleetPlan, HostSpec, Observed
from provisioner.fleet.observe import HostSession, observe
from provisioner.fleet.remote import ConnectFn, SSHHosts, target_of

if TYPE_CHECKING:
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.ssh import SSHOptions


@dataclass(frozen=True)
class LiveFleet:
    """A loaded fleet and the real adapters ``converge`` runs it with."""

    fleet: Fleet
    gitlab: GitLabAPI
    hosts: SSHHosts
    connect: Callable[[HostSpec], HostSession]

    def observe(self, fleet: Fleet) -> Observed:
        """GitLab's runners and every host, read now (one SSH session per host)."""
        return observe(fleet, gitlab=self.gitlab, connect=self.connect)

    @staticmethod
    def make_plan(
        fleet: Fleet, observed: Observed, adopt: Sequence[str], now: datetime
    ) -> FleetPlan:
        """The plan from ``observed`` to ``fleet``."""
        return plan(fleet, observed, adopt=adopt, now=now)


def live_fleet(
    path: Path,
    *,
    env: str | None = None,
    gitlab: Callable[[str], GitLabAPI],
    ssh: SSHOptions,
    connect: ConnectFn,
    on_secret: Callable[[str], None] | None = None,
) -> LiveFleet:
    """Load ``path`` (with its ``[env.NAME]`` overlay) and bind the real adapters to it.

    ``gitlab`` builds the client from the fleet's ``gitlab_url`` (the default when no URL is
    given on the command line or in the environment).
    """
    fleet = load_fleet(path, env=env)
    return LiveFleet(
        fleet=fleet,
        gitlab=gitlab(fleet.gitlab_url),
        hosts=SSHHosts(ssh=ssh, connect=connect, on_secret=on_secret),
        connect=lambda spec: connect(target_of(spec), ssh),
    )
