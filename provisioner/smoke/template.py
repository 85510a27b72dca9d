"""The smoke project shipped as package data (``provisioner/smoke/template/``)."""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

MARKER_FILE = ".runnerctl-smoke"
_SKIP = frozenset({"__pycache__", ".pytest_cache", "dist", "build"})


def template_files() -> dict[str, str]:
    """Every file of the template, by repository path, as text."""
    root = resources.files("provisioner.smoke") / "template"
    files: dict[str, str] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in _SKIP or child.name.endswith((".pyc", ".egg-info")):
                continue
            path = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, f"{path}/")
            else:
                files[path] = child.read_text(encoding="utf-8")

    walk(root, "")
    return files


def template_digest(files: dict[str, str]) -> str:
    """A digest over paths and contents: the template version a project carries."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return digest.hexdigest()
