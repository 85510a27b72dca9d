"""The smoke pipeline: a template project whose pipeline proves a runner works end to end."""

from provisioner.smoke.service import (
    CheckOutcome,
    SigningMode,
    SmokeRequest,
    SmokeResult,
    SmokeStatus,
    StageOutcome,
    run_smoke,
)

__all__ = [
    "CheckOutcome",
    "SigningMode",
    "SmokeRequest",
    "SmokeResult",
    "SmokeStatus",
    "StageOutcome",
    "run_smoke",
]
