"""The field table runnerctl ships must match the reference schema (so drift shows)."""

from __future__ import annotations

import json
from dataclasses import fields

from provisioner.runner_config import model, schema
from tests.unit.runner_config.schema_table import SCHEMA_PATH, TABLE_PATH, render, table_from_schema


def test_shipped_table_equals_the_reference_schema() -> None:
    reference = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    expected = table_from_schema(reference)
    shipped = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    for name, section in expected["sections"].items():
        assert name in shipped["sections"], f"section {name} missing from fields.json"
        assert shipped["sections"][name] == section, f"section {name} drifted"
    assert set(shipped["sections"]) == set(expected["sections"])
    # Regenerate with: .venv/bin/python -m tests.unit.runner_config.schema_table
    assert TABLE_PATH.read_text(encoding="utf-8") == render(expected)


def test_every_schema_key_has_a_known_type() -> None:
    known_scalars = {
        "string", "integer", "number", "boolean", "duration", "datetime", "object",
        "string|array<string>",
    }  # fmt: skip
    sections = schema.sections()
    for section in sections.values():
        for spec in section.fields.values():
            inner = spec.type
            while inner.startswith(("array<", "map<")):
                inner = inner[inner.index("<") + 1 : -1]
            if inner.startswith("@"):
                assert inner[1:] in sections, f"{section.name}.{spec.name} -> {inner}"
            else:
                assert inner in known_scalars, spec


def _section_keys(name: str) -> set[str]:
    return set(schema.section(name).fields)


def test_model_fields_are_real_config_keys() -> None:
    runner_keys = _section_keys("RunnerConfig")
    assert {f.name for f in fields(model.Runner)} - {"extra"} <= runner_keys
    docker = {f.name for f in fields(model.DockerSettings)} - {"extra"}
    assert docker <= _section_keys("DockerConfig")
    kube = {f.name for f in fields(model.KubernetesSettings)} - {"extra", "host_path_volumes"}
    assert kube <= _section_keys("KubernetesConfig")
    assert {f.name for f in fields(model.GlobalSettings)} <= _section_keys("Config")
    assert {f.name for f in fields(model.SessionServer)} <= _section_keys("SessionServer")
    assert {f.name for f in fields(model.HostPathVolume)} <= _section_keys("KubernetesHostPath")
    assert {"Type", "Path", "Shared", "MaxUploadedArchiveSize"} <= _section_keys("CacheConfig")


def test_key_types_the_model_relies_on() -> None:
    root = schema.section("Config").fields
    runner = schema.section("RunnerConfig").fields
    assert root["concurrent"].type == "integer"
    assert root["check_interval"].type == "integer"
    assert root["shutdown_timeout"].type == "integer"
    assert root["connection_max_age"].type == "duration"
    assert root["runners"].type == "array<@RunnerConfig>"
    assert runner["token_obtained_at"].type == "datetime"
    assert runner["docker"].type == "@DockerConfig"
    assert runner["feature_flags"].type == "map<boolean>"
    assert schema.section("DockerConfig").fields["pull_policy"].type == "string|array<string>"
