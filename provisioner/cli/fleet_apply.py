"""``runnerctl fleet ci``: the pipeline that converges a fleet on a schedule.

The commands are attached to the ``fleet`` group of :mod:`provisioner.cli.fleet` by
:func:`attach`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def attach(group: typer.Typer) -> None:
    """Add ``ci`` to the ``fleet`` command group."""
    group.command("ci")(ci_command)


def ci_command(
    fleet_file: Annotated[
        str, typer.Option("--fleet-file", help="FLEET.toml's path in the repository.")
    ] = "FLEET.toml",
    image: Annotated[
        str | None, typer.Option("--image", help="Job image with runnerctl installed.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Runner tag for the jobs (repeatable).")
    ] = None,
) -> None:
    """Print a .gitlab-ci.yml (save it as such): plan on merge requests, apply on a schedule.

    The apply job runs in `resource_group: fleet`; the SSH key comes from a File variable
    FLEET_SSH_KEY (and FLEET_KNOWN_HOSTS), the GitLab token from a masked GITLAB_TOKEN.

    Examples:

      runnerctl fleet ci --image registry.example.com/ops/runnerctl:1 --tag fleet
    """
    from provisioner.fleet.ci import CiOptions, ci_config

    sys.stdout.write(ci_config(CiOptions(fleet_file, image, tuple(tag or ()))))
