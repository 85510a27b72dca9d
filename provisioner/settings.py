"""Where things live by default: config.toml, the cache, the demo data dir."""

from __future__ import annotations

import os
from pathlib import Path


def default_config_path() -> Path:
    """The config.toml gitlab-runner itself would use.

    ``CONFIG_FILE`` wins (gitlab-runner honours it too); otherwise
    ``/etc/gitlab-runner/config.toml`` as root and ``~/.gitlab-runner/config.toml`` for others.
    """
    env = os.environ.get("CONFIG_FILE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/gitlab-runner/config.toml")
    return Path.home() / ".gitlab-runner" / "config.toml"


def cache_dir() -> Path:
    """runnerctl's cache: ``$RUNNERCTL_CACHE``, else ``$XDG_CACHE_HOME/runnerctl``."""
    env = os.environ.get("RUNNERCTL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runnerctl"
