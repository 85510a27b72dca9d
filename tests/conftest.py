"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``: facts we test against (never read by the product)."""
    assert SHARED_REFERENCE.is_dir(), f"{SHARED_REFERENCE} is missing: shared/ sits beside the repo"
    return SHARED_REFERENCE
