"""``runnerctl fleet``: a desired state for a whole fleet of runners (FLEET.toml)."""

from __future__ import annotations

from provisioner.cli import fleet_apply
from provisioner.cli.context import command_group

app = command_group(
    "A fleet of runners from one FLEET.toml: plan, apply, and the pipeline that applies it.\n\n"
    "Examples:\n\n  runnerctl fleet ci --tag fleet\n"
)
fleet_apply.attach(app)
