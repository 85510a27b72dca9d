"""Registration: create runners through GitLab's API and write them into config.toml.

The package root stays light (the CLI imports the executor enums for ``--help``); the
operations are reached through :mod:`provisioner.registration.service`: ``register`` (a
:class:`~provisioner.registration.plan.RegistrationPlan`, then its execution in ``apply``),
``unregister``, ``rotate_token`` and ``list_runners``.
"""

from provisioner.registration.executors import (
    DEFAULT_JOB_IMAGE,
    DockerOptions,
    Executor,
    ExecutorConfig,
    KubernetesOptions,
    PullPolicy,
    Shell,
    ShellOptions,
)
from provisioner.registration.scope import Scope, parse_scope

__all__ = [
    "DEFAULT_JOB_IMAGE",
    "DockerOptions",
    "Executor",
    "ExecutorConfig",
    "KubernetesOptions",
    "PullPolicy",
    "Scope",
    "Shell",
    "ShellOptions",
    "parse_scope",
]
