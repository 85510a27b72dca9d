"""Register, update, rotate and unregister runners: GitLab first, then config.toml.

The stable entry points for the CLI, fleet, the demo and the benchmarks. The work is split by
operation: the plan of a registration in :mod:`~provisioner.registration.plan`, its execution
in :mod:`~provisioner.registration.apply`, then :mod:`~provisioner.registration.unregister`,
:mod:`~provisioner.registration.rotate` and :mod:`~provisioner.registration.listing`; the
ports and result types in :mod:`~provisioner.registration.model`.
"""

from __future__ import annotations

from provisioner.registration.apply import register
from provisioner.registration.entries import mask_tokens
from provisioner.registration.listing import list_runners
from provisioner.registration.model import (
    MAX_TAGS,
    MIN_TIMEOUT,
    Action,
    ConfigStorePort,
    PlannedCall,
    RegisterRequest,
    RegisterResult,
    RotateResult,
    RunnerAPI,
    SecretSink,
    UnregisterResult,
    validate_request,
)
from provisioner.registration.plan import RegistrationPlan, Undo, plan_registration
from provisioner.registration.rotate import rotate_token
from provisioner.registration.unregister import unregister

__all__ = [
    "MAX_TAGS",
    "MIN_TIMEOUT",
    "Action",
    "ConfigStorePort",
    "PlannedCall",
    "RegisterRequest",
    "RegisterResult",
    "RegistrationPlan",
    "RotateResult",
    "RunnerAPI",
    "SecretSink",
    "Undo",
    "UnregisterResult",
    "list_runners",
    "mask_tokens",
    "plan_registration",
    "register",
    "rotate_token",
    "unregister",
    "validate_request",
]
