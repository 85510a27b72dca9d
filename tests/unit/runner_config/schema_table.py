"""Turn the derived JSON schema in shared/reference into runnerctl's compact field table.

The product ships ``provisioner/runner_config/fields.json`` and never reads shared/ at run time.
This module is the bridge used two ways:

* ``test_schema_drift.py`` converts the reference schema and compares it with the shipped table,
  so a new reference schema (a new gitlab-runner release) shows up as a failing test;
* ``python -m tests.unit.runner_config.schema_table`` rewrites the shipped table from the
  reference schema when that drift is accepted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = (
    REPO_ROOT.parent
    / "shared"
    / "reference"
    / "gitlab-runner-config"
    / "gitlab-runner-config.schema.json"
)
TABLE_PATH = REPO_ROOT / "provisioner" / "runner_config" / "fields.json"

# Runner behaviour the derived schema does not encode as an enum flag: logrus.ParseLevel
# lower-cases the value, so `log_level = "INFO"` works.
_CASE_INSENSITIVE_ENUMS = {("Config", "log_level")}


def _ref(node: dict[str, Any]) -> str:
    return str(node["$ref"]).rsplit("/", 1)[-1]


def _type_of(node: dict[str, Any]) -> tuple[str, dict[str, Any]]:  # noqa: PLR0912
    """Return (type spec, constraints) for one schema property."""
    cons: dict[str, Any] = {}
    if "$ref" in node:
        return "@" + _ref(node), cons
    if "anyOf" in node:
        kinds = [branch.get("type") for branch in node["anyOf"]]
        if kinds == ["string", "integer"]:
            return "duration", cons
        if kinds == ["string", "array"]:
            enum = node["anyOf"][0].get("enum")
            if enum:
                cons["enum"] = enum
            return "string|array<string>", cons
        raise ValueError(f"unknown anyOf shape: {node}")
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "date-time":
            return "datetime", cons
        for key, out in (("enum", "enum"), ("pattern", "pattern"), ("minLength", "min_length")):
            if key in node:
                cons[out] = node[key]
        if "x-enum-case-insensitive" in node:
            cons["enum"] = node["x-enum-case-insensitive"]
            cons["enum_ci"] = True
        return "string", cons
    if kind in ("integer", "number", "boolean"):
        for key, out in (("minimum", "min"), ("maximum", "max")):
            if key in node:
                cons[out] = node[key]
        return str(kind), cons
    if kind == "array":
        items = node["items"]
        item_type, item_cons = _type_of(items)
        if "enum" in item_cons:
            cons["enum"] = item_cons["enum"]
        if "pattern" in item_cons:
            cons["pattern"] = item_cons["pattern"]
        return f"array<{item_type}>", cons
    if kind == "object":
        values = node.get("additionalProperties")
        if not isinstance(values, dict):
            return "object", cons
        value_type, value_cons = _type_of(values)
        if "pattern" in value_cons:
            cons["pattern"] = value_cons["pattern"]
        names = node.get("propertyNames", {})
        if "pattern" in names:
            cons["key_pattern"] = names["pattern"]
        if "enum" in names:
            cons["key_enum"] = names["enum"]
        if "maxProperties" in node:
            cons["max_items"] = node["maxProperties"]
        return f"map<{value_type}>", cons
    raise ValueError(f"unknown schema shape: {node}")


def _section(props: dict[str, Any], name: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, node in props.items():
        spec, cons = _type_of(node)
        if (name, key) in _CASE_INSENSITIVE_ENUMS:
            cons["enum_ci"] = True
        entry: dict[str, Any] = {"type": spec}
        entry.update(cons)
        fields[key] = entry
    return fields


def table_from_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The compact field table for ``schema`` (the derived gitlab-runner config schema)."""
    sections: dict[str, Any] = {"Config": {"fields": _section(schema["properties"], "Config")}}
    for name, definition in schema["$defs"].items():
        section: dict[str, Any] = {"fields": _section(definition.get("properties", {}), name)}
        if definition.get("required"):
            section["required"] = list(definition["required"])
        sections[name] = section
    return {
        "about": (
            "Field names and types of gitlab-runner's config.toml, keyed by TOML name, derived from"
            " gitlab-runner's Go structs (v17.0-v19.3). Types: string, integer, number, boolean,"
            " duration (Go duration string; an integer means nanoseconds), datetime, object (free"
            " form), @Section (table), array<T>, map<T>, string|array<string>."
        ),
        "root": "Config",
        "sections": sections,
    }


def render(table: dict[str, Any]) -> str:
    """The table as the file text that is shipped (stable formatting)."""
    return json.dumps(table, indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    TABLE_PATH.write_text(render(table_from_schema(schema)), encoding="utf-8")
    sys.stdout.write(f"wrote {TABLE_PATH}\n")
