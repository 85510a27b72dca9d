"""runnerctl's own knowledge of config.toml's field names and types (``fields.json``).

The table is package data derived from gitlab-runner's Go structs (17.0-19.3). A unit test
compares it with the reference schema so that drift shows; the product never reads shared/.

Keys are matched the way gitlab-runner's TOML decoder (BurntSushi/toml) matches them: the exact
TOML name first, then the first field whose name is equal ignoring case.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

ROOT_SECTION = "Config"


@dataclass(frozen=True)
class FieldSpec:
    """One key of one section: its TOML name, type spec and constraints.

    ``type`` is one of ``string``, ``integer``, ``number``, ``boolean``, ``duration``,
    ``datetime``, ``object`` (free form), ``@Section`` (a table), ``array<T>``, ``map<T>`` or
    ``string|array<string>``.
    """

    name: str
    type: str
    enum: tuple[str, ...] = ()
    enum_ci: bool = False
    pattern: str | None = None
    min_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    key_pattern: str | None = None
    key_enum: tuple[str, ...] = ()
    max_items: int | None = None

    @property
    def section(self) -> str | None:
        """The section name when this key is a table or an array of tables."""
        inner = self.item_type if self.type.startswith("array<") else self.type
        return inner[1:] if inner.startswith("@") else None

    @property
    def item_type(self) -> str:
        """``T`` of ``array<T>`` or ``map<T>``."""
        match = re.fullmatch(r"(?:array|map)<(.+)>", self.type)
        return match.group(1) if match else ""


@dataclass(frozen=True)
class SectionSpec:
    """A table of config.toml: its fields in gitlab-runner's order and the required keys."""

    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)
    required: tuple[str, ...] = ()

    def match(self, key: str) -> tuple[FieldSpec | None, bool]:
        """Resolve ``key`` like BurntSushi/toml: ``(spec, exact)``; ``(None, False)`` if unknown."""
        spec = self.fields.get(key)
        if spec is not None:
            return spec, True
        folded = key.casefold()
        for name, candidate in self.fields.items():
            if name.casefold() == folded:
                return candidate, False
        return None, False


def _field(name: str, raw: dict[str, Any]) -> FieldSpec:
    return FieldSpec(
        name=name,
        type=str(raw["type"]),
        enum=tuple(raw.get("enum", ())),
        enum_ci=bool(raw.get("enum_ci", False)),
        pattern=raw.get("pattern"),
        min_length=raw.get("min_length"),
        minimum=raw.get("min"),
        maximum=raw.get("max"),
        key_pattern=raw.get("key_pattern"),
        key_enum=tuple(raw.get("key_enum", ())),
        max_items=raw.get("max_items"),
    )


@cache
def sections() -> dict[str, SectionSpec]:
    """Every section of the table, by name (``Config`` is the file's root)."""
    text = resources.files("provisioner.runner_config").joinpath("fields.json").read_text("utf-8")
    raw = json.loads(text)
    out: dict[str, SectionSpec] = {}
    for name, body in raw["sections"].items():
        fields = {key: _field(key, spec) for key, spec in body["fields"].items()}
        out[name] = SectionSpec(name=name, fields=fields, required=tuple(body.get("required", ())))
    return out


def section(name: str) -> SectionSpec:
    """The section called ``name`` (``KeyError`` for a name the table does not have)."""
    return sections()[name]


def executors() -> tuple[str, ...]:
    """The executor names gitlab-runner registers (``executor = ...``)."""
    return section("RunnerConfig").fields["executor"].enum


def shells() -> tuple[str, ...]:
    """The shells gitlab-runner registers (``""`` means the platform default)."""
    return section("RunnerConfig").fields["shell"].enum


def duration_fields() -> dict[str, tuple[str, ...]]:
    """Section name -> the keys that hold a Go ``time.Duration``."""
    return {
        name: tuple(k for k, f in spec.fields.items() if f.type == "duration")
        for name, spec in sections().items()
    }


@dataclass(frozen=True)
class KeyRename:
    """A key written with different case than gitlab-runner's name (matched case-insensitively)."""

    path: tuple[str | int, ...]
    written: str
    canonical: str


def canonicalize(
    data: dict[str, Any], section_name: str = ROOT_SECTION, path: tuple[str | int, ...] = ()
) -> tuple[dict[str, Any], list[KeyRename]]:
    """Rename keys to gitlab-runner's spelling where they match only case-insensitively.

    Unknown keys are kept as they are. When a key is written both ways, the exact spelling is
    kept and the other one dropped.
    """
    spec = sections().get(section_name)
    renames: list[KeyRename] = []
    if spec is None:
        return data, renames
    out: dict[str, Any] = {}
    for key, value in data.items():
        field_spec, exact = spec.match(key)
        name = key
        if field_spec is not None and not exact:
            if field_spec.name in data:
                continue
            renames.append(KeyRename(path=(*path, key), written=key, canonical=field_spec.name))
            name = field_spec.name
        sub = field_spec.section if field_spec is not None else None
        new_value = value
        if sub is not None and isinstance(value, dict):
            new_value, more = canonicalize(value, sub, (*path, name))
            renames.extend(more)
        elif sub is not None and isinstance(value, list):
            items = []
            for index, element in enumerate(value):
                if isinstance(element, dict):
                    canonical, more = canonicalize(element, sub, (*path, name, index))
                    renames.extend(more)
                    items.append(canonical)
                else:
                    items.append(element)
            new_value = items
        out[name] = new_value
    return out, renames
