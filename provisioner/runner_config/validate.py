"""Validate config.toml the way gitlab-runner does.

What gitlab-runner does, and what this module reports (``strict`` mirrors ``gitlab-runner lint``):

* TOML syntax errors: the runner refuses the file. Error, with line and column.
* Wrong types (a string where an integer belongs, ``[runners]`` instead of ``[[runners]]``, a
  date where a string belongs): ``decoding configuration file`` and the runner does not start.
  Error.
* Durations (``connection_max_age``, ``unhealthy_interval``...): a Go duration string such as
  ``"15m"``. A bare integer is accepted but means *nanoseconds*, which is almost always a
  mistake: warning.
* Keys matched only case-insensitively (``Privileged = true``): the runner accepts them. Warning.
* Unknown keys: ``run`` ignores them silently, ``lint`` (19.3+) rejects them. Warning, or error
  with ``strict``.
* ``executor``, ``shell``, ``log_level``, ``log_format``, ``pull_policy`` and the other enums,
  ``concurrent >= 1``, docker memory sizes, label syntax: error (start-up or job failure).
* ``url`` and ``token`` of each runner are required (``lint``'s schema check). Error.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from provisioner.errors import ConfigError
from provisioner.runner_config import schema
from provisioner.runner_config.document import (
    ConfigSyntaxError,
    Location,
    Path_,
    locate_keys,
    nearest_location,
    parse_text,
)
from provisioner.runner_config.schema import FieldSpec, SectionSpec

# time.ParseDuration's grammar.
GO_DURATION_RE = re.compile(
    r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$"
)


# TOML integers are 64-bit; BurntSushi/toml refuses anything larger when it reads the file.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Counts for which a negative number is a mistake (gitlab-runner reads it as "no limit"; runnerctl
# refuses to write one), with what to write instead.
NON_NEGATIVE = {
    "limit": "gitlab-runner treats it as 0 (no limit); write 0 or the maximum number of jobs",
}


class IssueSeverity(StrEnum):
    """How bad a validation issue is: errors make the file invalid."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Issue:
    """One validation problem: where it is and what to do about it."""

    severity: IssueSeverity
    code: str
    path: str
    message: str
    location: Location | None = None

    def render(self, source: str) -> str:
        """``source:line:col: severity: message`` (the location is left out when unknown)."""
        where = f"{source}:{self.location}" if self.location else source
        return f"{where}: {self.severity.value}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """The verdict for one file."""

    source: str
    strict: bool
    issues: tuple[Issue, ...]

    @property
    def errors(self) -> tuple[Issue, ...]:
        """The issues that make the file invalid."""
        return tuple(i for i in self.issues if i.severity is IssueSeverity.ERROR)

    @property
    def warnings(self) -> tuple[Issue, ...]:
        """The issues gitlab-runner tolerates."""
        return tuple(i for i in self.issues if i.severity is IssueSeverity.WARNING)

    @property
    def valid(self) -> bool:
        """True when no issue is an error."""
        return not self.errors

    def raise_if_invalid(self) -> None:
        """Raise a :class:`ConfigError` (exit 3) listing the errors, as ``config validate`` does."""
        if self.valid:
            return
        count = len(self.errors)
        lines = "\n".join(issue.render(self.source) for issue in self.errors)
        raise ConfigError(
            f"{self.source} is not a valid config.toml ({count} error{'s' if count != 1 else ''}):"
            f"\n{lines}",
            hint="Fix the file (gitlab-runner would refuse it as well); "
            f"`runnerctl config validate --config {self.source}` lists every problem.",
        )


def display_path(path: Path_) -> str:
    """``("runners", 0, "docker", "image")`` -> ``runners[0].docker.image``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def validate_text(
    text: str, *, source: str = "config.toml", strict: bool = False
) -> ValidationReport:
    """Validate config.toml text; a syntax error becomes one error issue with its position."""
    try:
        document = parse_text(text, source=source)
    except ConfigSyntaxError as exc:
        issue = Issue(IssueSeverity.ERROR, "syntax", "", exc.detail, exc.location)
        return ValidationReport(source, strict, (issue,))
    checker = _Checker(strict=strict, where=locate_keys(text))
    data = document.unwrap()
    checker.check_int64(data)
    checker.check_root(data)
    return ValidationReport(source, strict, tuple(checker.issues))


class _Checker:
    def __init__(self, *, strict: bool, where: Mapping[Path_, Location]) -> None:
        self.strict = strict
        self.where = where
        self.issues: list[Issue] = []

    def add(self, severity: IssueSeverity, code: str, path: Path_, message: str) -> None:
        loc = nearest_location(self.where, path)
        self.issues.append(Issue(severity, code, display_path(path), message, loc))

    def error(self, code: str, path: Path_, message: str) -> None:
        self.add(IssueSeverity.ERROR, code, path, message)

    def warn(self, code: str, path: Path_, message: str) -> None:
        self.add(IssueSeverity.WARNING, code, path, message)

    # ---- structure

    def check_int64(self, data: dict[str, Any]) -> None:
        """Integers beyond 64 bits, anywhere: gitlab-runner's TOML decoder refuses the file."""
        stack: list[tuple[Path_, Any]] = [((), data)]
        while stack:
            path, value = stack.pop()
            if isinstance(value, dict):
                stack.extend(((*path, k), v) for k, v in reversed(value.items()))
            elif isinstance(value, list):
                stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
            elif (
                isinstance(value, int)
                and not isinstance(value, bool)
                and not INT64_MIN <= value <= INT64_MAX
            ):
                self.error(
                    "range",
                    path,
                    f"{display_path(path)} = {value} does not fit in 64 bits "
                    f"({INT64_MIN}..{INT64_MAX}); gitlab-runner cannot load the file",
                )

    def check_root(self, data: dict[str, Any]) -> None:
        self.check_section(data, schema.section(schema.ROOT_SECTION), ())
        runners = data.get("runners")
        if isinstance(runners, list):
            concurrent = data.get("concurrent", 1)
            if isinstance(concurrent, int) and 0 < concurrent < len(runners):
                self.warn(
                    "concurrency",
                    ("concurrent",),
                    f"concurrent = {concurrent} is lower than the number of runners "
                    f"({len(runners)}): some runners will wait for a free slot",
                )

    def check_section(self, data: dict[str, Any], spec: SectionSpec, path: Path_) -> None:
        for key, value in data.items():
            field, exact = spec.match(key)
            here = (*path, key)
            if field is None:
                self.unknown_key(spec, here, key)
                continue
            if not exact:
                self.warn(
                    "key-case",
                    here,
                    f"key {display_path(here)} matches {field.name!r} only when case is ignored; "
                    f"gitlab-runner accepts it, but write it as {field.name!r}",
                )
            self.check_value(value, field, here)
        present = {spec.match(k)[0].name for k in data if spec.match(k)[0] is not None}  # type: ignore[union-attr]
        required = list(spec.required)
        if spec.name == "RunnerConfig":
            required += ["url", "token"]
        for name in required:
            if name not in present:
                self.error("required", (*path, name), f"{display_path(path)}: {name} is required")
        if spec.name == "RunnerConfig" and "executor" not in present:
            self.warn(
                "no-executor",
                path,
                f"{display_path(path)}: no executor; gitlab-runner marks this runner unhealthy",
            )

    def unknown_key(self, spec: SectionSpec, path: Path_, key: str) -> None:
        close = difflib.get_close_matches(key, list(spec.fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        severity = IssueSeverity.ERROR if self.strict else IssueSeverity.WARNING
        self.add(
            severity,
            "unknown-key",
            path,
            f"unknown key {display_path(path)}{hint}: gitlab-runner ignores it",
        )

    # ---- values

    def check_value(self, value: Any, field: FieldSpec, path: Path_) -> None:  # noqa: PLR0912
        kind = field.type
        shown = display_path(path)
        if isinstance(value, datetime | date | time) and kind != "datetime":
            self.type_error(path, field, value)
            return
        if kind.startswith("@"):
            if isinstance(value, list):
                self.error(
                    "type",
                    path,
                    f"{shown} must be a single table [{_header(path)}], not an array of tables",
                )
            elif not isinstance(value, dict):
                self.type_error(path, field, value)
            else:
                self.check_section(value, schema.section(kind[1:]), path)
            return
        if kind.startswith("array<"):
            self.check_array(value, field, path)
            return
        if kind.startswith("map<"):
            self.check_map(value, field, path)
            return
        if kind == "string|array<string>":
            items = value if isinstance(value, list) else [value]
            for index, item in enumerate(items):
                sub = (*path, index) if isinstance(value, list) else path
                if not isinstance(item, str):
                    self.type_error(sub, field, item)
                elif field.enum and item not in field.enum:
                    self.enum_error(sub, field, item)
            return
        if kind == "duration":
            self.check_duration(value, field, path)
            return
        if kind == "datetime":
            if isinstance(value, datetime) and value.tzinfo is not None:
                return
            if isinstance(value, str) and _is_rfc3339(value):
                return
            self.error("type", path, f"{shown} must be an RFC 3339 date-time with a time zone")
            return
        if not _scalar_ok(kind, value):
            self.type_error(path, field, value)
            return
        self.check_constraints(value, field, path)

    def check_constraints(self, value: Any, field: FieldSpec, path: Path_) -> None:
        shown = display_path(path)
        if field.enum and isinstance(value, str):
            candidates = [e.casefold() for e in field.enum] if field.enum_ci else list(field.enum)
            if (value.casefold() if field.enum_ci else value) not in candidates:
                self.enum_error(path, field, value)
        if field.pattern and isinstance(value, str) and not re.search(field.pattern, value):
            self.error("pattern", path, f"{shown} = {value!r} does not match {field.pattern}")
        if (
            field.min_length is not None
            and isinstance(value, str)
            and len(value) < field.min_length
        ):
            self.error("required", path, f"{shown} must not be empty")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if field.name in NON_NEGATIVE and value < 0:
                self.error(
                    "range",
                    path,
                    f"{shown} = {value} is negative; {NON_NEGATIVE[field.name]}",
                )
            if field.minimum is not None and value < field.minimum:
                self.error(
                    "range", path, f"{shown} = {value} is below the minimum {field.minimum:g}"
                )
            if field.maximum is not None and value > field.maximum:
                self.error(
                    "range", path, f"{shown} = {value} is above the maximum {field.maximum:g}"
                )

    def check_array(self, value: Any, field: FieldSpec, path: Path_) -> None:
        item_type = field.item_type
        if not isinstance(value, list):
            if item_type.startswith("@") and isinstance(value, dict):
                self.error(
                    "type",
                    path,
                    f"{display_path(path)} must be an array of tables ([[{_header(path)}]]), "
                    f"not a single table [{_header(path)}]",
                )
            else:
                self.type_error(path, field, value)
            return
        item_field = FieldSpec(
            name=field.name, type=item_type, enum=field.enum, pattern=field.pattern
        )
        for index, item in enumerate(value):
            self.check_value(item, item_field, (*path, index))

    def check_map(self, value: Any, field: FieldSpec, path: Path_) -> None:
        if not isinstance(value, dict):
            self.type_error(path, field, value)
            return
        is_flags = field.name == "feature_flags"
        if field.max_items is not None and len(value) > field.max_items:
            self.error(
                "range", path, f"{display_path(path)} has more than {field.max_items} entries"
            )
        value_field = FieldSpec(name=field.name, type=field.item_type, pattern=field.pattern)
        for key, item in value.items():
            here = (*path, key)
            bad_name = (field.key_pattern and not re.search(field.key_pattern, key)) or (
                field.key_enum and key not in field.key_enum
            )
            if bad_name and is_flags:
                self.warn(
                    "unknown-key", here, f"{display_path(here)}: feature flags start with FF_"
                )
            elif bad_name:
                self.error("pattern", here, f"{display_path(here)}: {key!r} is not an allowed key")
            self.check_value(item, value_field, here)

    def check_duration(self, value: Any, field: FieldSpec, path: Path_) -> None:
        shown = display_path(path)
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.type_error(path, field, value)
        elif isinstance(value, int):
            if value != 0:
                self.warn(
                    "duration-integer",
                    path,
                    f"{shown} = {value} is read as {value} nanoseconds; write a duration "
                    f'string such as "{value}s" instead',
                )
        elif not GO_DURATION_RE.match(value):
            self.error(
                "duration",
                path,
                f'{shown} = {value!r} is not a Go duration (examples: "90s", "15m", "1h30m")',
            )

    def type_error(self, path: Path_, field: FieldSpec, value: Any) -> None:
        self.error(
            "type",
            path,
            f"{display_path(path)} must be {_describe(field.type)}, not {_toml_type(value)}",
        )

    def enum_error(self, path: Path_, field: FieldSpec, value: str) -> None:
        allowed = ", ".join(repr(e) for e in field.enum if e)
        self.error("enum", path, f"{display_path(path)} = {value!r} is not one of {allowed}")


def _header(path: Path_) -> str:
    return ".".join(p for p in path if isinstance(p, str))


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        # BurntSushi/toml accepts an integer for a float field.
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    return True


def _is_rfc3339(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


_DESCRIPTIONS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "a table",
    "duration": 'a duration string (e.g. "15m")',
    "datetime": "a date-time",
    "string|array<string>": "a string or an array of strings",
}


def _describe(kind: str) -> str:
    if kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[kind]
    if kind.startswith("@"):
        return "a table"
    if kind.startswith("map<"):
        return "a table"
    if kind.startswith("array<@"):
        return "an array of tables"
    if kind.startswith("array<"):
        return f"an array of {_describe(kind[6:-1]).removeprefix('a ').removeprefix('an ')}s"
    return kind


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime | date | time):
        return "a date-time"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
