"""The documented values keys of the gitlab-runner Helm chart runnerctl targets (package data)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class ChartKeys:
    """Chart name and version, its documented keys, free-form subtrees and deprecated keys."""

    chart: str
    version: str
    app_version: str
    source: str
    keys: frozenset[str]
    open: frozenset[str]
    deprecated: Mapping[str, str]


@dataclass(frozen=True)
class KeyProblem:
    """A values key the chart does not document (``suggestion`` may name the intended one)
    or one it deprecates (``fix`` says what to use instead)."""

    path: str
    deprecated: bool
    fix: str
    suggestion: str | None = None


@cache
def chart_keys() -> ChartKeys:
    """The key table shipped in ``chart_keys.json``."""
    text = resources.files("provisioner.k8s").joinpath("chart_keys.json").read_text("utf-8")
    raw = json.loads(text)
    return ChartKeys(
        chart=raw["chart"],
        version=raw["version"],
        app_version=raw["app_version"],
        source=raw["source"],
        keys=frozenset(raw["keys"]),
        open=frozenset(raw["open"]),
        deprecated=dict(raw["deprecated"]),
    )


def key_problems(values: Mapping[str, Any]) -> Iterator[KeyProblem]:
    """Deprecated and undocumented keys in a values mapping, depth first, in file order."""
    table = chart_keys()
    yield from _walk(values, "", table)


def _walk(values: Mapping[str, Any], prefix: str, table: ChartKeys) -> Iterator[KeyProblem]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if path in table.deprecated:
            yield KeyProblem(path, True, table.deprecated[path])
            continue
        if path not in table.keys:
            siblings = sorted(
                k[len(prefix) :]
                for k in table.keys
                if k.startswith(prefix) and "." not in k[len(prefix) :]
            )
            close = difflib.get_close_matches(str(key), siblings, n=1)
            suggestion = f"{prefix}{close[0]}" if close else None
            fix = f"Rename it to {suggestion}." if suggestion else "Remove it."
            yield KeyProblem(path, False, fix, suggestion)
            continue
        if isinstance(value, Mapping) and path not in table.open:
            yield from _walk(value, f"{path}.", table)
