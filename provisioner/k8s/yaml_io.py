"""YAML in and out for the k8s package (the one place it uses PyYAML)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class YamlSyntaxError(ValueError):
    """Malformed YAML, with a 1-based position when PyYAML knows it."""

    def __init__(self, problem: str, line: int | None, column: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column


def dump_values(values: Mapping[str, Any]) -> str:
    """Chart values in key order, multi-line strings (``runners.config``) as ``|`` blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, string)
    return str(yaml.dump(dict(values), Dumper=Dumper, sort_keys=False, width=100))


def dump_manifest(manifest: Mapping[str, Any]) -> str:
    """One Kubernetes manifest as a YAML document (``---`` first)."""
    import yaml

    return str(yaml.safe_dump(dict(manifest), sort_keys=False, explicit_start=True))


def load_all(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream.

    Raises:
        YamlSyntaxError: the text is not YAML.
    """
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        if mark is None:
            raise YamlSyntaxError(str(problem), None, None) from None
        raise YamlSyntaxError(str(problem), mark.line + 1, mark.column + 1) from None
