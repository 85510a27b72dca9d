"""``runnerctl fleet``: a desired state for a fleet of runners (FLEET.toml), planned and applied.

See docs/fleet.md. :mod:`provisioner.fleet.model` holds the shared vocabulary.
"""
