"""Kubernetes' own JSON schemas, offline (adapter: the only importer of kubernetes-validate).

No API server can run on the machines runnerctl is built and tested on, so manifests are
proven against the OpenAPI-derived schemas of one pinned Kubernetes version, in strict mode
(unknown fields are errors, as ``kubectl apply --validate=strict`` treats them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KUBERNETES_VERSION = "1.34"


def schema_errors(manifest: Mapping[str, Any]) -> list[str]:
    """Why ``manifest`` is not a valid object of the pinned Kubernetes version (empty: valid)."""
    import kubernetes_validate

    if not isinstance(manifest.get("apiVersion"), str) or not isinstance(manifest.get("kind"), str):
        return ["apiVersion and kind must be strings"]
    try:
        kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top level)"
        return [f"{where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [str(exc.message)]
    return []
