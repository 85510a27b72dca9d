"""The smoke pipeline: a template project whose pipeline proves a runner works end to end."""

from provisioner.smoke.service import (
    CheckOutcome,
    Hooks,
    SigningMode,
    SmokeRequest,
    SmokeResult,
    SmokeStatus,
    StageOutcome,
    run_smoke,
)

__all__ = [
    "CheckOutcome",
    "Hooks",
    "SigningMode",
    "SmokeRequest",
    "SmokeResult",
    "SmokeStatus",
    "StageOutcome",
    "run_smoke",
]
