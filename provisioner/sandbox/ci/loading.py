"""YAML loading with GitLab's ``!reference`` tag and Psych's error wording."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.sandbox.ci.errors import CiConfigError


@dataclass(frozen=True)
class Reference:
    """A ``!reference [key, subkey, ...]`` tag, resolved after ``extends``."""

    path: tuple[str, ...]

    def __str__(self) -> str:
        inner = ", ".join(f'"{part}"' for part in self.path)
        return f"!reference [{inner}]"


class CiLoader(yaml.SafeLoader):
    """Safe loader that understands GitLab's ``!reference`` tag."""


def _construct_reference(loader: yaml.SafeLoader, node: yaml.Node) -> Reference:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference should be an array", node.start_mark
        )
    parts = loader.construct_sequence(node, deep=True)
    return Reference(tuple(str(part) for part in parts))


CiLoader.add_constructor("!reference", _construct_reference)


_MAPPING_VALUES = "mapping values are not allowed in this context"
_LIBYAML_PROBLEMS = (
    # PyYAML's parser words some problems differently from libyaml, which GitLab (Psych) uses.
    (
        re.compile(r"^expected <block end>, but found .*"),
        "block mapping",
        "did not find expected key",
    ),
    (re.compile(r"^expected <block end>, but found .*"), "", "did not find expected '-' indicator"),
    (re.compile(r"^mapping values are not allowed here$"), "", _MAPPING_VALUES),
    (re.compile(r"^expected ',' or '\]', but got .*"), "", "did not find expected ',' or ']'"),
    (re.compile(r"^expected ',' or '\}', but got .*"), "", "did not find expected ',' or '}'"),
    (
        re.compile(r"^found character .* that cannot start any token$"),
        "",
        "found character that cannot start any token",
    ),
    (
        re.compile(r"^expected the node content, but found .*"),
        "",
        "did not find expected node content",
    ),
)


def _psych_message(err: yaml.YAMLError) -> str:
    """Word a PyYAML error as Psych: ``(<unknown>): problem context at line L column C``.

    Psych reports libyaml's *context* mark when there is one (the start of the mapping being
    parsed), else the problem mark.
    """
    if not isinstance(err, yaml.MarkedYAMLError):
        return f"(<unknown>): {err}"
    problem = err.problem or "syntax error"
    context = err.context or ""
    for pattern, context_hint, libyaml in _LIBYAML_PROBLEMS:
        if pattern.match(problem) and context_hint in context:
            problem = libyaml
            break
    text = f"{problem} {context}".strip()
    mark = err.context_mark or err.problem_mark
    if mark is None:
        return f"(<unknown>): {text}"
    return f"(<unknown>): {text} at line {mark.line + 1} column {mark.column + 1}"


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=CiLoader)  # noqa: S506 - CiLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise CiConfigError(_psych_message(exc)) from None


def load_root(text: str) -> dict[str, Any]:
    if not text or not text.strip():
        raise CiConfigError("Please provide content of .gitlab-ci.yml")
    data = _load_yaml(text)
    if not isinstance(data, dict):
        raise CiConfigError("Invalid configuration format")
    return {str(key): value for key, value in data.items()}
