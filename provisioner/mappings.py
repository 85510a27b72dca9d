"""Small operations on nested mappings, shared by the sandbox's CI parser and FLEET.toml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` (Rails' ``Hash#deep_merge``).

    Mappings merge key by key, recursively; anything else in ``over`` replaces what ``base``
    holds. Neither argument is changed.
    """
    merged = dict(base)
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged
