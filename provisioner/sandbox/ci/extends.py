"""``extends`` and ``!reference`` resolution over the merged configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.mappings import deep_merge
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.keys import MAX_EXTENDS_DEPTH, MAX_REFERENCE_DEPTH
from provisioner.sandbox.ci.loading import Reference


def _extend(key: str, context: dict[str, Any], ancestors: tuple[str, ...]) -> Any:
    value = context[key]
    if not (isinstance(value, dict) and "extends" in value):
        return value
    raw = value["extends"]
    bases = [raw] if isinstance(raw, str) else raw
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise CiConfigError(f"jobs:{key} extends should be an array of strings or a string")
    unknown = [b for b in bases if b not in context]
    if unknown:
        raise CiConfigError(f"{key}: unknown keys in `extends` ({', '.join(unknown)})")
    invalid = [b for b in bases if not isinstance(context[b], dict)]
    if invalid:
        raise CiConfigError(f"{key}: invalid base hashes in `extends` ({', '.join(invalid)})")
    if len(ancestors) > MAX_EXTENDS_DEPTH:
        raise CiConfigError(f"{key}: nesting too deep in `extends`")
    if key in ancestors:
        raise CiConfigError(f"{key}: circular dependency detected in `extends`")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, _extend(base, context, (*ancestors, key)))
    result = deep_merge(merged, value)
    context[key] = result
    return result


def resolve_extends(config: dict[str, Any]) -> dict[str, Any]:
    context = dict(config)
    for key in list(context):
        _extend(key, context, ())
    return context


def resolve_references(node: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    if isinstance(node, Reference):
        if depth >= MAX_REFERENCE_DEPTH:
            raise CiConfigError(f"{node} is part of a circular chain")
        target: Any = root
        for part in node.path:
            if not isinstance(target, dict) or part not in target:
                raise CiConfigError(f"{node} could not be found")
            target = target[part]
        return resolve_references(target, root, depth + 1)
    if isinstance(node, dict):
        return {key: resolve_references(value, root, depth) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_references(item, root, depth) for item in node]
    return node
