"""``fleet plan`` as one call: observe the world, then diff it against the fleet."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path

from provisioner.fleet.diff import plan
from provisioner.fleet.model import Fleet, FleetPlan, HostSpec
from provisioner.fleet.observe import MAX_WORKERS, GitLabReader, HostSession, observe
from provisioner.fsutil import atomic_write


def plan_fleet(
    fleet: Fleet,
    *,
    gitlab: GitLabReader,
    connect: Callable[[HostSpec], HostSession],
    adopt: Collection[str] = (),
    workers: int = MAX_WORKERS,
) -> FleetPlan:
    """Read GitLab and every host (writing nothing) and plan what apply would do."""
    observed = observe(fleet, gitlab=gitlab, connect=connect, workers=workers)
    return plan(fleet, observed, adopt=adopt, now=observed.observed_at)


def save_plan(result: FleetPlan, path: Path) -> None:
    """Write a plan file (mode 0600, atomically); it holds no secret."""
    atomic_write(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n", mode=0o600)
