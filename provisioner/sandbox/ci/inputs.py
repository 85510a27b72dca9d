"""``spec:inputs`` headers and ``$[[ inputs.NAME ]]`` interpolation, as GitLab does them.

A file with inputs is two YAML documents: a header (``spec: inputs: ...``) and, after ``---``,
the configuration. The values come from ``include:inputs`` (or the defaults); they are checked
against the header (type, ``options``, ``regex``) and then interpolated into the configuration
*before* it is merged with the including file (``Gitlab::Ci::Config::Interpolation``).

Interpolation works on the text of the configuration, as GitLab's text interpolation does:
strings go in as they are, other values as JSON, so ``tags: $[[ inputs.tags ]]`` with an
``array`` input becomes a YAML flow sequence and a quoted block stays a string.

Error texts reproduce GitLab's (``lib/gitlab/ci/config/interpolation/*``,
``lib/gitlab/ci/config/header/*``), prefixed with the file as GitLab prefixes include errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.loading import CiLoader

INPUT_KEYS = frozenset({"default", "description", "options", "regex", "type", "rules"})
INPUT_TYPES = ("string", "number", "boolean", "array")
_BLOCK = re.compile(r"\$\[\[(.*?)\]\]")
_ACCESS = re.compile(r"^\s*inputs\.([A-Za-z0-9_-]+)\s*$")
_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
}
_NOT_INTERPOLATED: Any = object()


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a header."""

    name: str
    type: str
    default: Any = _NOT_INTERPOLATED
    options: tuple[Any, ...] | None = None
    regex: str | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _NOT_INTERPOLATED


_HEADER = re.compile(r"\A(?:\s*#[^\n]*\n|\s*\n)*spec:\s*$", re.MULTILINE)


def has_header(text: str) -> bool:
    """Whether ``text`` starts with a ``spec:`` header document."""
    return (
        _HEADER.match(text) is not None and re.search(r"^---\s*$", text, re.MULTILINE) is not None
    )


def _load(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=CiLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        raise CiConfigError(f"Included file {where} does not have valid YAML syntax!") from None


def split_header(text: str, where: str) -> tuple[dict[str, InputSpec] | None, str]:
    """Return (declared inputs, or None without a header; the configuration's text)."""
    separator = re.search(r"^---[ \t]*$", text, re.MULTILINE)
    if separator is not None and text[: separator.start()].strip():
        header = _load(text[: separator.start()], where)
        if isinstance(header, dict) and "spec" in header:
            return parse_header(header, where), text[separator.end() :]
    return None, text


def parse_header(header: Mapping[str, Any], where: str) -> dict[str, InputSpec]:
    """Validate ``spec: inputs:`` and return the inputs by name."""
    unknown = sorted(str(key) for key in header if key != "spec")
    if unknown:
        raise CiConfigError(f"{where}: header config contains unknown keys: {', '.join(unknown)}")
    spec = header["spec"]
    if not isinstance(spec, dict):
        raise CiConfigError(f"{where}: header:spec config should be a hash")
    extra = sorted(str(key) for key in spec if key not in {"inputs", "component", "include"})
    if extra:
        raise CiConfigError(
            f"{where}: header:spec config contains unknown keys: {', '.join(extra)}"
        )
    raw = spec.get("inputs") or {}
    if not isinstance(raw, dict):
        raise CiConfigError(f"{where}: header:spec:inputs config should be a hash")
    inputs: dict[str, InputSpec] = {}
    for name, raw_config in raw.items():
        key = f"header:spec:inputs:{name}"
        config = raw_config or {}
        if not isinstance(config, dict):
            raise CiConfigError(f"{where}: {key} config should be a hash")
        bad = sorted(str(k) for k in config if k not in INPUT_KEYS)
        if bad:
            raise CiConfigError(f"{where}: {key} config contains unknown keys: {', '.join(bad)}")
        kind = config.get("type", "string")
        if kind not in INPUT_TYPES:
            raise CiConfigError(f"{where}: {key} input type unknown value: {kind}")
        options = config.get("options")
        if options is not None and not isinstance(options, list):
            raise CiConfigError(f"{where}: {key} options should be an array")
        spec_ = InputSpec(
            name=str(name),
            type=kind,
            default=config.get("default", _NOT_INTERPOLATED),
            options=tuple(options) if options is not None else None,
            regex=config.get("regex"),
            description=str(config.get("description") or ""),
        )
        if not spec_.required:
            _check_value(spec_, spec_.default, "default", where)
        inputs[str(name)] = spec_
    return inputs


def _check_value(spec: InputSpec, value: Any, location: str, where: str) -> None:
    if not _TYPE_CHECKS[spec.type](value):
        raise CiConfigError(f"{where}: `{spec.name}` input: {location} value is not a {spec.type}")
    if spec.options is not None and value not in spec.options:
        raise CiConfigError(
            f"{where}: `{spec.name}` input: `{value}` cannot be used because it is not in the "
            "list of allowed options"
        )
    if spec.regex is not None:
        if spec.type != "string":
            raise CiConfigError(
                f"{where}: `{spec.name}` input: RegEx validation can only be used "
                "with string inputs"
            )
        pattern = spec.regex.strip("/")
        if re.search(pattern, value) is None:
            raise CiConfigError(
                f"{where}: `{spec.name}` input: {location} value does not match required RegEx "
                "pattern"
            )


def resolve_values(declared: Mapping[str, InputSpec], given: Any, where: str) -> dict[str, Any]:
    """The inputs' values: ``given`` checked against the header, defaults for the rest."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise CiConfigError(f"{where}: include:inputs config should be a hash")
    unknown = [str(name) for name in given if name not in declared]
    if unknown:
        raise CiConfigError(f"{where}: unknown input arguments: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            value = given[name]
            _check_value(spec, value, "provided", where)
        elif spec.required:
            raise CiConfigError(f"{where}: `{name}` input: required value has not been provided")
        else:
            value = spec.default
        values[name] = value
    return values


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _lookup(block: str, values: Mapping[str, Any], where: str) -> Any:
    if "|" in block:
        raise CiConfigError(f"{where}: interpolation functions are not supported by the sandbox")
    match = _ACCESS.match(block)
    if match is None or match.group(1) not in values:
        key = match.group(1) if match else block.strip()
        raise CiConfigError(f"{where}: unknown interpolation key: `{key}`")
    return values[match.group(1)]


def interpolate(body: str, values: Mapping[str, Any], where: str) -> str:
    """Replace every ``$[[ inputs.NAME ]]`` in the configuration's text, as GitLab's text
    interpolation does: strings as they are, other types as JSON (a flow sequence for arrays)."""
    return _BLOCK.sub(lambda m: _text(_lookup(m.group(1), values, where)), body)


def load_with_inputs(text: str, given: Any, where: str) -> Any:
    """Load a file, checking ``given`` inputs against its header and interpolating them."""
    declared, body = split_header(text, where)
    if declared is None:
        if given:
            raise CiConfigError(
                f"{where}: Given inputs not defined in the `spec` section of the included "
                "configuration file"
            )
        return _load(body, where)
    return _load(interpolate(body, resolve_values(declared, given, where), where), where)
