"""A tiny package whose only purpose is to be tested, built, signed and published."""

from __future__ import annotations

import hashlib
import re

__all__ = ["Version", "normalize_name", "parse_version", "sha256_hex"]

_NORMALIZE = re.compile(r"[-_.]+")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.dev(\d+))?$")

Version = tuple[int, int, int, int]


def normalize_name(name: str) -> str:
    """The PEP 503 normalized form of a distribution name."""
    if not name.strip():
        raise ValueError("a distribution name cannot be empty")
    return _NORMALIZE.sub("-", name.strip()).lower()


def parse_version(text: str) -> Version:
    """Parse ``X.Y.Z`` or ``X.Y.Z.devN``; a dev release sorts before its final release."""
    match = _VERSION.match(text.strip())
    if match is None:
        raise ValueError(f"not a smoke version: {text!r}")
    major, minor, patch, dev = match.groups()
    return (int(major), int(minor), int(patch), int(dev) if dev is not None else 1 << 62)


def sha256_hex(data: bytes) -> str:
    """The SHA-256 digest of ``data`` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()
