"""Normalising and validating single job entries (script, image, artifacts, needs...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from provisioner.sandbox.ci.durations import parse_duration
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.keys import ARTIFACTS_KEYS, ARTIFACTS_WHEN, MAX_SCRIPT_DEPTH
from provisioner.sandbox.ci.spec import ArtifactsSpec


def string_map(value: Any, where: str) -> dict[str, str]:
    """``variables:`` as GitLab accepts them: strings, numbers or ``{value, description}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CiConfigError(f"{where} config should be a hash of key value pairs")
    result: dict[str, str] = {}
    for key, raw in value.items():
        item = raw.get("value", "") if isinstance(raw, dict) else raw
        if item is None:
            item = ""
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise CiConfigError(f"{where} config should be a hash of key value pairs")
        result[str(key)] = str(item)
    return result


def parse_commands(value: Any, where: str) -> tuple[str, ...]:
    message = f"{where} config should be a string or a nested array of strings up to 10 levels deep"
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise CiConfigError(message)
    flat: list[str] = []

    def walk(items: list[Any], depth: int) -> None:
        if depth > MAX_SCRIPT_DEPTH:
            raise CiConfigError(message)
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            elif isinstance(item, str):
                flat.append(item)
            else:
                raise CiConfigError(message)

    walk(value, 1)
    return tuple(flat)


def string_list(value: Any, where: str, *, allow_string: bool = False) -> tuple[str, ...]:
    if allow_string and isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CiConfigError(f"{where} config should be an array of strings")
    return tuple(value)


def parse_image(value: Any, where: str) -> tuple[str | None, tuple[str, ...] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        entrypoint = value.get("entrypoint")
        if entrypoint is None:
            return value["name"], None
        return value["name"], string_list(entrypoint, f"{where}:entrypoint")
    raise CiConfigError(f"{where} config should be a hash or a string")


def parse_services(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CiConfigError(f"{where} config should be a array")
    names: list[str] = []
    for item in value:
        name, _ = parse_image(item, f"{where}:service")
        if name is not None:
            names.append(name)
    return tuple(names)


def check_keys(value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = [str(key) for key in value if key not in allowed]
    if unknown:
        raise CiConfigError(f"{where} config contains unknown keys: {', '.join(unknown)}")


def parse_artifacts(value: Any, where: str) -> ArtifactsSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CiConfigError(f"{where} config should be a hash")
    check_keys(value, ARTIFACTS_KEYS, where)
    when = value.get("when", "on_success")
    if when not in ARTIFACTS_WHEN:
        raise CiConfigError(f"{where} when should be on_success, on_failure or always")
    expire_in = value.get("expire_in")
    if expire_in is not None:
        expire_in = str(expire_in)
        if expire_in != "never" and parse_duration(expire_in) is None:
            raise CiConfigError(f"{where} expire in should be a duration")
    reports: dict[str, tuple[str, ...]] = {}
    coverage_format: str | None = None
    raw_reports = value.get("reports") or {}
    if not isinstance(raw_reports, dict):
        raise CiConfigError(f"{where}:reports config should be a hash")
    for kind, paths in raw_reports.items():
        if kind == "coverage_report":
            if not isinstance(paths, dict) or not isinstance(paths.get("path"), str):
                raise CiConfigError(f"{where}:reports coverage report must contain path")
            coverage_format = str(paths.get("coverage_format", "cobertura"))
            reports[str(kind)] = (paths["path"],)
        else:
            reports[str(kind)] = string_list(paths, f"{where}:reports {kind}", allow_string=True)
    name = value.get("name")
    return ArtifactsSpec(
        paths=string_list(value.get("paths", []), f"{where}:paths"),
        reports=MappingProxyType(reports),
        expire_in=expire_in,
        when=str(when),
        name=None if name is None else str(name),
        exclude=string_list(value.get("exclude", []), f"{where}:exclude"),
        untracked=bool(value.get("untracked", False)),
        coverage_format=coverage_format,
    )


def parse_caches(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    result: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise CiConfigError(f"{where} config should be a hash")
        normalised = {
            "key": item.get("key", "default"),
            "paths": list(string_list(item.get("paths", []), f"{where}:paths")),
            "policy": item.get("policy", "pull-push"),
            "untracked": bool(item.get("untracked", False)),
            "when": item.get("when", "on_success"),
        }
        for extra in ("fallback_keys", "unprotect"):
            if extra in item:
                normalised[extra] = item[extra]
        result.append(MappingProxyType(normalised))
    if len(result) > 4:
        raise CiConfigError(f"{where} config no more than 4 caches can be created")
    return tuple(result)


def parse_id_tokens(value: Any, where: str) -> Mapping[str, Mapping[str, Any]]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise CiConfigError(f"{where} config should be a hash")
    tokens: dict[str, Mapping[str, Any]] = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or "aud" not in spec:
            raise CiConfigError(f"{where}:{name} config missing required keys: aud")
        aud = spec["aud"]
        if not (isinstance(aud, str) or (isinstance(aud, list) and aud)):
            raise CiConfigError(f"{where}:{name} aud should be an array of strings or a string")
        tokens[str(name)] = MappingProxyType(dict(spec))
    return MappingProxyType(tokens)


def parse_retry(value: Any, where: str) -> int:
    if value is None:
        return 0
    maximum = value.get("max", 0) if isinstance(value, dict) else value
    if isinstance(maximum, bool) or not isinstance(maximum, int):
        raise CiConfigError(f"{where} config has to be either an integer or a hash")
    if maximum < 0:
        raise CiConfigError(f"{where} config must be greater than or equal to 0")
    if maximum > 2:
        raise CiConfigError(f"{where} config must be less than or equal to 2")
    return maximum


def parse_timeout(value: Any, where: str) -> int | None:
    if value is None:
        return None
    seconds = parse_duration(value) if isinstance(value, str | int) else None
    if seconds is None:
        raise CiConfigError(f"{where} config should be a duration")
    return seconds


def parse_allow_failure(value: Any, where: str) -> tuple[bool | None, tuple[int, ...]]:
    if value is None:
        return None, ()
    if isinstance(value, bool):
        return value, ()
    if isinstance(value, dict) and "exit_codes" in value:
        codes = value["exit_codes"]
        codes = [codes] if isinstance(codes, int) else codes
        if not isinstance(codes, list) or not all(
            isinstance(code, int) and not isinstance(code, bool) for code in codes
        ):
            raise CiConfigError(f"{where} exit_codes should be an array of integers or an integer")
        return False, tuple(codes)
    raise CiConfigError(f"{where} config should be a hash or a boolean value")


@dataclass(frozen=True)
class _Need:
    job: str
    artifacts: bool = True
    optional: bool = False


def parse_needs(value: Any, where: str) -> tuple[_Need, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    needs: list[_Need] = []
    for item in items:
        if isinstance(item, str):
            needs.append(_Need(item))
        elif isinstance(item, dict) and isinstance(item.get("job"), str):
            if "pipeline" in item or "project" in item:
                continue  # cross-pipeline needs: artifacts come from elsewhere, not a job here
            needs.append(
                _Need(
                    item["job"],
                    artifacts=bool(item.get("artifacts", True)),
                    optional=bool(item.get("optional", False)),
                )
            )
        else:
            raise CiConfigError(f"{where} config can only be a hash or an array")
    if len(needs) > 50:
        raise CiConfigError(f"{where} config can not have more than 50 needs")
    return tuple(needs)
