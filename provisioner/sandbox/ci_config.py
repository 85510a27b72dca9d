"""The sandbox's `.gitlab-ci.yml` processor: YAML in, a frozen :class:`PipelineSpec` out.

It follows GitLab's own pipeline of transformations (``Gitlab::Ci::Config#build_config``):

1. load the YAML safely (GitLab's ``!reference`` tag included);
2. merge ``include: local`` files (the including file wins);
3. resolve ``extends`` (hashes deep-merged, arrays and scalars replaced, later bases win, the
   job's own keys win; nesting deeper than 10 or a cycle is an error);
4. resolve ``!reference`` tags against the extended configuration;
5. validate the entries (unknown keys, missing ``script``, bad ``when``...) and the cross-job
   rules (stages, ``needs``, ``dependencies``), raising the *first* error as GitLab does;
6. evaluate ``workflow:rules``, then each job's ``rules`` (or ``only``/``except``).

Error texts reproduce GitLab's (``lib/gitlab/ci/config/entry/*.rb``,
``lib/gitlab/ci/yaml_processor.rb``, ``lib/gitlab/ci/config/external/file/local.rb``), so a
pipeline's ``yaml_errors`` read as they would on a real instance.

Jobs' ``variables`` are the *effective* YAML variables of the job: the inherited global
variables (subject to ``inherit:variables``), the job's own, and those set by the matching rule.
When a job uses ``needs`` without ``dependencies``, ``dependencies`` lists the needed jobs whose
artifacts it downloads (``needs:artifacts`` defaults to true), which is what GitLab does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import yaml

from provisioner.errors import SandboxError

__all__ = [
    "ArtifactsSpec",
    "CiConfigError",
    "JobSpec",
    "PipelineSpec",
    "evaluate_expression",
    "load_pipeline",
    "parse_duration",
]

DEFAULT_STAGES = ("build", "test", "deploy")
EDGE_STAGES = (".pre", ".post")
MAX_EXTENDS_DEPTH = 10
MAX_REFERENCE_DEPTH = 10
MAX_SCRIPT_DEPTH = 10
MAX_INCLUDES = 150

JOB_WHEN = ("on_success", "on_failure", "always", "manual", "delayed")
RULE_WHEN = ("on_success", "on_failure", "always", "never", "manual", "delayed")
WORKFLOW_WHEN = ("always", "never")
ARTIFACTS_WHEN = ("on_success", "on_failure", "always")

# Root keys that are not jobs (``lib/gitlab/ci/config/entry/root.rb``).
RESERVED_ROOT_KEYS = frozenset(
    {
        "default",
        "include",
        "stages",
        "types",
        "variables",
        "workflow",
        "spec",
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
    }
)
LEGACY_GLOBAL_KEYS = ("image", "services", "before_script", "after_script", "cache")

JOB_KEYS = frozenset(
    {
        "after_script",
        "allow_failure",
        "artifacts",
        "before_script",
        "cache",
        "coverage",
        "dast_configuration",
        "dependencies",
        "environment",
        "extends",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "inherit",
        "interruptible",
        "manual_confirmation",
        "needs",
        "only",
        "except",
        "pages",
        "parallel",
        "publish",
        "release",
        "resource_group",
        "retry",
        "rules",
        "run",
        "script",
        "secrets",
        "services",
        "stage",
        "start_in",
        "tags",
        "timeout",
        "trigger",
        "variables",
        "when",
    }
)
DEFAULT_KEYS = frozenset(
    {
        "after_script",
        "artifacts",
        "before_script",
        "cache",
        "hooks",
        "id_tokens",
        "identity",
        "image",
        "interruptible",
        "retry",
        "services",
        "tags",
        "timeout",
    }
)
ARTIFACTS_KEYS = frozenset(
    {
        "access",
        "exclude",
        "expire_in",
        "expose_as",
        "name",
        "paths",
        "public",
        "reports",
        "untracked",
        "when",
    }
)
RULE_KEYS = frozenset(
    {
        "allow_failure",
        "changes",
        "exists",
        "if",
        "interruptible",
        "needs",
        "start_in",
        "variables",
        "when",
    }
)
WORKFLOW_RULE_KEYS = frozenset({"if", "changes", "exists", "when", "variables", "auto_cancel"})

_FILTERED_OUT = "Pipeline filtered out by workflow rules."


class CiConfigError(SandboxError):
    """The `.gitlab-ci.yml` cannot become a pipeline; the message is GitLab's wording."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="Fix .gitlab-ci.yml; GitLab would refuse it the same way.")


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ArtifactsSpec:
    """A job's ``artifacts:`` section, normalised."""

    paths: tuple[str, ...]
    reports: Mapping[str, tuple[str, ...]]
    expire_in: str | None
    when: str
    name: str | None
    exclude: tuple[str, ...]
    untracked: bool = False
    coverage_format: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """One job of the pipeline, after extends, default inheritance and rules."""

    name: str
    stage: str
    image: str | None
    services: tuple[str, ...]
    before_script: tuple[str, ...]
    script: tuple[str, ...]
    after_script: tuple[str, ...]
    variables: Mapping[str, str]
    artifacts: ArtifactsSpec | None
    dependencies: tuple[str, ...] | None
    needs: tuple[str, ...] | None
    tags: tuple[str, ...]
    allow_failure: bool
    when: str
    timeout_seconds: int | None
    id_tokens: Mapping[str, Mapping[str, Any]]
    cache: tuple[Mapping[str, Any], ...]
    retry: int
    allow_failure_exit_codes: tuple[int, ...] = ()
    interruptible: bool = False
    start_in: str | None = None
    coverage: str | None = None
    image_entrypoint: tuple[str, ...] | None = None
    trigger: Mapping[str, Any] | None = None
    environment: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """The stages (``.pre``/``.post`` included), global variables and the jobs to create."""

    stages: tuple[str, ...]
    variables: Mapping[str, str]
    jobs: tuple[JobSpec, ...]

    def job(self, name: str) -> JobSpec:
        """Return the job called ``name`` (KeyError if the pipeline has none)."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# YAML loading


@dataclass(frozen=True)
class _Reference:
    """A ``!reference [key, subkey, ...]`` tag, resolved after ``extends``."""

    path: tuple[str, ...]

    def __str__(self) -> str:
        inner = ", ".join(f'"{part}"' for part in self.path)
        return f"!reference [{inner}]"


class _CiLoader(yaml.SafeLoader):
    """Safe loader that understands GitLab's ``!reference`` tag."""


def _construct_reference(loader: yaml.SafeLoader, node: yaml.Node) -> _Reference:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference should be an array", node.start_mark
        )
    parts = loader.construct_sequence(node, deep=True)
    return _Reference(tuple(str(part) for part in parts))


_CiLoader.add_constructor("!reference", _construct_reference)


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
        return yaml.load(text, Loader=_CiLoader)  # noqa: S506 - _CiLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise CiConfigError(_psych_message(exc)) from None


def _load_root(text: str) -> dict[str, Any]:
    if not text or not text.strip():
        raise CiConfigError("Please provide content of .gitlab-ci.yml")
    data = _load_yaml(text)
    if not isinstance(data, dict):
        raise CiConfigError("Invalid configuration format")
    return {str(key): value for key, value in data.items()}


# --------------------------------------------------------------------------------------------
# include: local


def _deep_merge(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Rails' ``Hash#deep_merge``: hashes merge recursively, anything else is replaced."""
    merged = dict(base)
    for key, value in other.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _include_wanted(item: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """``include:rules``: ``if`` over the pipeline's variables; ``exists``/``changes`` are true."""
    if "rules" not in item:
        return True
    outcome = _evaluate_rules(
        _flatten_rules(item["rules"], "include:rules"),
        env,
        "include:rules",
        allowed_keys=frozenset({"if", "exists", "changes", "when"}),
        allowed_when=("always", "never"),
    )
    return outcome.included


def _include_locations(value: Any, env: Mapping[str, str]) -> Iterator[str]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and not _include_wanted(item, env):
            continue
        if isinstance(item, str):
            if item.startswith(("http://", "https://")):
                raise CiConfigError(
                    f"Remote file `{item}` could not be fetched: the sandbox has no network"
                )
            yield item
        elif isinstance(item, dict) and "local" in item:
            local = item["local"]
            if not isinstance(local, str):
                raise CiConfigError("include config should be a hash or a string")
            yield local
        elif isinstance(item, dict):
            kinds = ", ".join(sorted(str(key) for key in item if key not in {"rules", "inputs"}))
            raise CiConfigError(
                f"Included file type `{kinds}` is not supported by the sandbox (only `local`)"
            )
        else:
            raise CiConfigError("include config should be a hash or a string")


def _expand_includes(
    config: dict[str, Any],
    read_file: Callable[[str], str | None],
    seen: set[str],
    env: Mapping[str, str],
) -> dict[str, Any]:
    if "include" not in config:
        return config
    includes = config.pop("include")
    merged: dict[str, Any] = {}
    for location in _include_locations(includes, env):
        path = location.lstrip("/")
        if path in seen:
            continue  # GitLab de-duplicates identical includes
        seen.add(path)
        if len(seen) > MAX_INCLUDES:
            raise CiConfigError(f"Maximum of {MAX_INCLUDES} nested includes are allowed!")
        if not path.endswith((".yml", ".yaml")):
            raise CiConfigError(f"Included file `{path}` does not have YAML extension!")
        content = read_file(path)
        if content is None:
            raise CiConfigError(f"Local file `{path}` does not exist!")
        if not content.strip():
            raise CiConfigError(f"Local file `{path}` is empty!")
        try:
            data = yaml.load(content, Loader=_CiLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            raise CiConfigError(
                f"Included file `{path}` does not have valid YAML syntax!"
            ) from None
        if not isinstance(data, dict):
            raise CiConfigError(f"Included file `{path}` does not have valid YAML syntax!")
        included = _expand_includes({str(k): v for k, v in data.items()}, read_file, seen, env)
        merged = _deep_merge(merged, included)
    return _deep_merge(merged, config)


# --------------------------------------------------------------------------------------------
# extends and !reference


def _extend(key: str, context: dict[str, Any], ancestors: tuple[str, ...]) -> Any:
    value = context[key]
    if not (isinstance(value, dict) and "extends" in value):
        return value
    raw = value["extends"]
    bases = [raw] if isinstance(raw, str) else raw
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise CiConfigError(f"jobs:{key} extends should be an array of strings or a string")
    unknown = [b for b in bases if b not in context]
    if unknown:
        raise CiConfigError(f"{key}: unknown keys in `extends` ({', '.join(unknown)})")
    invalid = [b for b in bases if not isinstance(context[b], dict)]
    if invalid:
        raise CiConfigError(f"{key}: invalid base hashes in `extends` ({', '.join(invalid)})")
    if len(ancestors) > MAX_EXTENDS_DEPTH:
        raise CiConfigError(f"{key}: nesting too deep in `extends`")
    if key in ancestors:
        raise CiConfigError(f"{key}: circular dependency detected in `extends`")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _deep_merge(merged, _extend(base, context, (*ancestors, key)))
    result = _deep_merge(merged, value)
    context[key] = result
    return result


def _resolve_extends(config: dict[str, Any]) -> dict[str, Any]:
    context = dict(config)
    for key in list(context):
        _extend(key, context, ())
    return context


def _resolve_references(node: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    if isinstance(node, _Reference):
        if depth >= MAX_REFERENCE_DEPTH:
            raise CiConfigError(f"{node} is part of a circular chain")
        target: Any = root
        for part in node.path:
            if not isinstance(target, dict) or part not in target:
                raise CiConfigError(f"{node} could not be found")
            target = target[part]
        return _resolve_references(target, root, depth + 1)
    if isinstance(node, dict):
        return {key: _resolve_references(value, root, depth) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_references(item, root, depth) for item in node]
    return node


# --------------------------------------------------------------------------------------------
# Durations (ChronicDuration, as GitLab parses ``timeout`` and ``expire_in``)

_DURATION_UNITS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86400),
    (("mo", "mos", "month", "months"), 30 * 86400),
    (("y", "yr", "yrs", "year", "years"), 31_557_600),
):
    for _name in _names:
        _DURATION_UNITS[_name] = _seconds

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2})$")


def parse_duration(value: str | int) -> int | None:
    """Parse a GitLab human duration (``"1h 30m"``, ``"10 minutes"``, ``3600``) into seconds.

    Returns None when the text is not a duration.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    text = value.strip().lower().replace(",", " ").replace(" and ", " ")
    if not text:
        return None
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if text[position : match.start()].strip():
            return None
        number, unit = match.groups()
        if unit and unit not in _DURATION_UNITS:
            return None
        total += float(number) * _DURATION_UNITS.get(unit or "s", 1)
        position = match.end()
    if position == 0 or text[position:].strip():
        return None
    return int(total)


# --------------------------------------------------------------------------------------------
# rules:if expressions (``lib/gitlab/ci/pipeline/expression``)

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<re>/(?:[^/\\]|\\.)*/[a-z]*)
      | (?P<null>null\b)
      | (?P<op>==|!=|=~|!~|&&|\|\||\(|\))
    )""",
    re.VERBOSE,
)


class _ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class _Pattern:
    source: str
    flags: str

    def search(self, text: str) -> bool:
        flags = 0
        if "i" in self.flags:
            flags |= re.IGNORECASE
        if "m" in self.flags:
            flags |= re.MULTILINE
        if "s" in self.flags:
            flags |= re.DOTALL
        try:
            return re.search(self.source, text, flags) is not None
        except re.error as exc:
            raise _ExpressionError(str(exc)) from None


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise _ExpressionError(text)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise _ExpressionError(text)
    return tokens


def _as_pattern(value: str) -> _Pattern | None:
    match = re.fullmatch(r"/(.*)/([a-z]*)", value, re.DOTALL)
    return _Pattern(match.group(1), match.group(2)) if match else None


class _Parser:
    """Recursive descent: ``||`` binds looser than ``&&``, comparisons bind tightest."""

    def __init__(self, tokens: list[tuple[str, str]], variables: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.position = 0
        self.variables = variables

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise _ExpressionError("unexpected end")
        self.position += 1
        return token

    def parse(self) -> bool:
        result = self.disjunction()
        if self.peek() is not None:
            raise _ExpressionError("trailing tokens")
        return result

    def disjunction(self) -> bool:
        result = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            result = result or right
        return result

    def conjunction(self) -> bool:
        result = self.comparison()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.comparison()
            result = result and right
        return result

    def comparison(self) -> bool:
        token = self.peek()
        if token == ("op", "("):
            self.take()
            result = self.disjunction()
            if self.take() != ("op", ")"):
                raise _ExpressionError("unbalanced parentheses")
            return result
        left = self.value()
        operator = self.peek()
        if operator is None or operator[0] != "op" or operator[1] not in {"==", "!=", "=~", "!~"}:
            return _truthy(left)
        self.take()
        right = self.value()
        if operator[1] in {"==", "!="}:
            left_text = left.source if isinstance(left, _Pattern) else left
            right_text = right.source if isinstance(right, _Pattern) else right
            equal = left_text == right_text
            return equal if operator[1] == "==" else not equal
        pattern = right if isinstance(right, _Pattern) else _as_pattern(right or "")
        if pattern is None:
            raise _ExpressionError("right side of a pattern match must be a regexp")
        matched = isinstance(left, str) and pattern.search(left)
        return matched if operator[1] == "=~" else not matched

    def value(self) -> str | _Pattern | None:
        kind, text = self.take()
        if kind == "var":
            name = text.lstrip("$").strip("{}")
            return self.variables.get(name)
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "re":
            pattern = _as_pattern(text)
            if pattern is None:
                raise _ExpressionError(text)
            return pattern
        if kind == "null":
            return None
        raise _ExpressionError(f"unexpected {text}")


def _truthy(value: str | _Pattern | None) -> bool:
    if isinstance(value, _Pattern):
        return True
    return bool(value)


def evaluate_expression(expression: str, variables: Mapping[str, str]) -> bool:
    """Evaluate a ``rules:if`` expression; raises ValueError on invalid syntax."""
    return _Parser(_tokenize(expression), variables).parse()


# --------------------------------------------------------------------------------------------
# Entry normalisation helpers


def _string_map(value: Any, where: str) -> dict[str, str]:
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


def _commands(value: Any, where: str) -> tuple[str, ...]:
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


def _string_list(value: Any, where: str, *, allow_string: bool = False) -> tuple[str, ...]:
    if allow_string and isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CiConfigError(f"{where} config should be an array of strings")
    return tuple(value)


def _image(value: Any, where: str) -> tuple[str | None, tuple[str, ...] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        entrypoint = value.get("entrypoint")
        if entrypoint is None:
            return value["name"], None
        return value["name"], _string_list(entrypoint, f"{where}:entrypoint")
    raise CiConfigError(f"{where} config should be a hash or a string")


def _services(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise CiConfigError(f"{where} config should be a array")
    names: list[str] = []
    for item in value:
        name, _ = _image(item, f"{where}:service")
        if name is not None:
            names.append(name)
    return tuple(names)


def _check_keys(value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = [str(key) for key in value if key not in allowed]
    if unknown:
        raise CiConfigError(f"{where} config contains unknown keys: {', '.join(unknown)}")


def _artifacts(value: Any, where: str) -> ArtifactsSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CiConfigError(f"{where} config should be a hash")
    _check_keys(value, ARTIFACTS_KEYS, where)
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
            reports[str(kind)] = _string_list(paths, f"{where}:reports {kind}", allow_string=True)
    name = value.get("name")
    return ArtifactsSpec(
        paths=_string_list(value.get("paths", []), f"{where}:paths"),
        reports=MappingProxyType(reports),
        expire_in=expire_in,
        when=str(when),
        name=None if name is None else str(name),
        exclude=_string_list(value.get("exclude", []), f"{where}:exclude"),
        untracked=bool(value.get("untracked", False)),
        coverage_format=coverage_format,
    )


def _caches(value: Any, where: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    result: list[Mapping[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise CiConfigError(f"{where} config should be a hash")
        normalised = {
            "key": item.get("key", "default"),
            "paths": list(_string_list(item.get("paths", []), f"{where}:paths")),
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


def _id_tokens(value: Any, where: str) -> Mapping[str, Mapping[str, Any]]:
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


def _retry(value: Any, where: str) -> int:
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


def _timeout(value: Any, where: str) -> int | None:
    if value is None:
        return None
    seconds = parse_duration(value) if isinstance(value, str | int) else None
    if seconds is None:
        raise CiConfigError(f"{where} config should be a duration")
    return seconds


def _allow_failure(value: Any, where: str) -> tuple[bool | None, tuple[int, ...]]:
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


def _needs(value: Any, where: str) -> tuple[_Need, ...] | None:
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


# --------------------------------------------------------------------------------------------
# Rules and only/except


@dataclass(frozen=True)
class _RuleOutcome:
    included: bool
    when: str | None = None
    allow_failure: bool | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    start_in: str | None = None


def _flatten_rules(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise CiConfigError(f"{where} config should be an array of hashes")
    rules: list[dict[str, Any]] = []
    for item in value:
        # `- !reference [.rules, rules]` inserts a nested array; GitLab flattens one level.
        for rule in item if isinstance(item, list) else [item]:
            if not isinstance(rule, dict):
                raise CiConfigError(f"{where} config should be an array of hashes")
            rules.append(rule)
    return rules


def _evaluate_rules(
    rules: list[dict[str, Any]],
    env: Mapping[str, str],
    where: str,
    *,
    allowed_keys: frozenset[str],
    allowed_when: tuple[str, ...],
) -> _RuleOutcome:
    for rule in rules:
        _check_keys(rule, allowed_keys, f"{where}:rule")
        when = rule.get("when")
        if when is not None and when not in allowed_when:
            raise CiConfigError(f"{where}:rule when unknown value: {when}")
        condition = rule.get("if")
        if condition is not None:
            if not isinstance(condition, str):
                raise CiConfigError(f"{where}:rule if should be a string")
            try:
                matched = evaluate_expression(condition, env)
            except ValueError:
                raise CiConfigError(f"{where}:rule if invalid expression syntax") from None
            if not matched:
                continue
        # changes: and exists: need a diff or a tree walk; the sandbox treats them as true.
        if when == "never":
            return _RuleOutcome(included=False)
        allow_failure = rule.get("allow_failure")
        if allow_failure is not None and not isinstance(allow_failure, bool):
            raise CiConfigError(f"{where}:rule allow_failure should be a boolean value")
        start_in = rule.get("start_in")
        return _RuleOutcome(
            included=True,
            when=when,
            allow_failure=allow_failure,
            variables=_string_map(rule.get("variables"), f"{where}:rule:variables"),
            start_in=None if start_in is None else str(start_in),
        )
    return _RuleOutcome(included=False)


_SOURCE_KEYWORDS = {
    "api": "api",
    "chat": "chats",
    "external": "external",
    "external_pull_request_event": "external_pull_requests",
    "merge_request_event": "merge_requests",
    "pipeline": "pipelines",
    "push": "pushes",
    "schedule": "schedules",
    "trigger": "triggers",
    "web": "web",
}


def _ref_policy_matches(refs: Sequence[str], ref: str, env: Mapping[str, str]) -> bool:
    is_tag = bool(env.get("CI_COMMIT_TAG"))
    source_keyword = _SOURCE_KEYWORDS.get(env.get("CI_PIPELINE_SOURCE", ""), "")
    for pattern in refs:
        if pattern == "branches" and not is_tag:
            return True
        if pattern == "tags" and is_tag:
            return True
        if source_keyword and pattern == source_keyword:
            return True
        compiled = _as_pattern(pattern) if pattern.startswith("/") else None
        if compiled is not None:
            try:
                if compiled.search(ref):
                    return True
            except _ExpressionError:
                continue
        elif pattern == ref:
            return True
    return False


def _policy(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (refs, variables expressions) of an ``only``/``except`` entry."""
    if isinstance(value, list):
        return _string_list(value, where), ()
    if isinstance(value, str):
        return (value,), ()
    if isinstance(value, dict):
        refs = _string_list(value.get("refs", []), f"{where}:refs")
        expressions = _string_list(value.get("variables", []), f"{where}:variables")
        return refs, expressions
    raise CiConfigError(f"{where} config should be an array of strings or regular expressions")


def _only_except(job: Mapping[str, Any], ref: str, env: Mapping[str, str], where: str) -> bool:
    only_refs, only_vars = _policy(job.get("only", ["branches", "tags"]), f"{where}:only")
    if only_refs and not _ref_policy_matches(only_refs, ref, env):
        return False
    if only_vars and not any(_safe_eval(expr, env, f"{where}:only") for expr in only_vars):
        return False
    if "except" in job:
        except_refs, except_vars = _policy(job["except"], f"{where}:except")
        if except_refs and _ref_policy_matches(except_refs, ref, env):
            return False
        if except_vars and any(_safe_eval(expr, env, f"{where}:except") for expr in except_vars):
            return False
    return True


def _safe_eval(expression: str, env: Mapping[str, str], where: str) -> bool:
    try:
        return evaluate_expression(expression, env)
    except ValueError:
        raise CiConfigError(f"{where} variables invalid expression syntax") from None


# --------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class _Context:
    ref: str
    base_env: Mapping[str, str]
    default: Mapping[str, Any]
    global_variables: Mapping[str, str]
    stages: tuple[str, ...]


def _inherit(job: Mapping[str, Any], kind: str, name: str, where: str) -> bool:
    inherit = job.get("inherit")
    if inherit is None:
        return True
    if not isinstance(inherit, dict):
        raise CiConfigError(f"{where}:inherit config should be a hash")
    setting = inherit.get(kind, True)
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, list):
        return name in setting
    raise CiConfigError(f"{where}:inherit:{kind} config should be a boolean or an array")


def _validate_job_entry(name: str, job: Any) -> dict[str, Any]:
    where = f"jobs:{name}"
    if not isinstance(job, dict) or not ("script" in job or "trigger" in job or "run" in job):
        raise CiConfigError(
            f"{where} config should implement the script:, run:, or trigger: keyword"
        )
    _check_keys(job, JOB_KEYS, where)
    if "rules" in job:
        clashing = [key for key in ("only", "except") if key in job]
        if clashing:
            raise CiConfigError(f"{where} config key may not be used with `rules`: {clashing[0]}")
    if "script" in job and not job["script"]:
        raise CiConfigError(f"{where} script can't be blank")
    when = job.get("when")
    if when is not None and when not in JOB_WHEN:
        raise CiConfigError(f"{where} when should be one of: {', '.join(JOB_WHEN)}")
    stage = job.get("stage")
    if stage is not None and not isinstance(stage, str):
        raise CiConfigError(f"{where}:stage config should be a string")
    # A key with a null value is unspecified (GitLab's Entry::Unspecified), except script.
    return {key: value for key, value in job.items() if value is not None or key == "script"}


def _job_variables(
    job: Mapping[str, Any], ctx: _Context, where: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (effective YAML variables, the job's own variables)."""
    own = _string_map(job.get("variables"), f"{where}:variables")
    inherited = {
        key: value
        for key, value in ctx.global_variables.items()
        if _inherit(job, "variables", key, where)
    }
    return {**inherited, **own}, own


def _from_default(job: Mapping[str, Any], key: str, ctx: _Context, where: str) -> Any:
    if key in job:
        return job[key]
    if key in ctx.default and _inherit(job, "default", key, where):
        return ctx.default[key]
    return None


def _build_job(name: str, job: dict[str, Any], ctx: _Context) -> list[JobSpec]:
    """Turn one validated job hash into JobSpecs (several for ``parallel``), or none."""
    where = f"jobs:{name}"
    yaml_vars, _ = _job_variables(job, ctx, where)
    env = {**yaml_vars, **ctx.base_env}
    explicit_when = job.get("when")
    when = explicit_when or "on_success"
    allow_failure, exit_codes = _allow_failure(job.get("allow_failure"), f"{where}:allow_failure")
    start_in = job.get("start_in")
    rule_variables: Mapping[str, str] = {}
    if "rules" in job:
        outcome = _evaluate_rules(
            _flatten_rules(job["rules"], f"{where}:rules"),
            env,
            f"{where}:rules",
            allowed_keys=RULE_KEYS,
            allowed_when=RULE_WHEN,
        )
        if not outcome.included:
            return []
        when = outcome.when or when
        if outcome.allow_failure is not None:
            allow_failure = outcome.allow_failure
        rule_variables = outcome.variables
        start_in = outcome.start_in or start_in
        if allow_failure is None:
            allow_failure = False  # a manual job from rules blocks the pipeline, as in GitLab
    elif not _only_except(job, ctx.ref, env, where):
        return []
    if allow_failure is None:
        allow_failure = when == "manual"
    image, entrypoint = _image(_from_default(job, "image", ctx, where), f"{where}:image")
    timeout = _timeout(_from_default(job, "timeout", ctx, where), f"{where}:timeout")
    needs = _needs(job.get("needs"), f"{where}:needs")
    dependencies = (
        _string_list(job["dependencies"], f"{where}:dependencies")
        if job.get("dependencies") is not None
        else None
    )
    if dependencies is None and needs is not None:
        dependencies = tuple(need.job for need in needs if need.artifacts)
    trigger = job.get("trigger")
    script = () if "script" not in job else _commands(job["script"], f"{where}:script")
    if "script" in job and not script:
        raise CiConfigError(f"{where} script can't be blank")
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    coverage = job.get("coverage")
    base = JobSpec(
        name=name,
        stage=str(job.get("stage", "test")),
        image=image,
        services=_services(_from_default(job, "services", ctx, where), f"{where}:services"),
        before_script=_optional_commands(job, "before_script", ctx, where),
        script=script,
        after_script=_optional_commands(job, "after_script", ctx, where),
        variables=MappingProxyType({**yaml_vars, **rule_variables}),
        artifacts=_artifacts(_from_default(job, "artifacts", ctx, where), f"{where}:artifacts"),
        dependencies=dependencies,
        needs=None if needs is None else tuple(need.job for need in needs),
        tags=_expand_tags(
            _tags(_from_default(job, "tags", ctx, where), f"{where}:tags"),
            {**env, **rule_variables},
        ),
        allow_failure=allow_failure,
        when=str(when),
        timeout_seconds=timeout,
        id_tokens=_id_tokens(_from_default(job, "id_tokens", ctx, where), f"{where}:id_tokens"),
        cache=_caches(_from_default(job, "cache", ctx, where), f"{where}:cache"),
        retry=_retry(_from_default(job, "retry", ctx, where), f"{where}:retry"),
        allow_failure_exit_codes=exit_codes,
        interruptible=bool(_from_default(job, "interruptible", ctx, where) or False),
        start_in=None if start_in is None else str(start_in),
        coverage=None if coverage is None else str(coverage),
        image_entrypoint=entrypoint,
        trigger=MappingProxyType(_trigger(trigger)) if trigger is not None else None,
        environment=None if environment is None else str(environment),
    )
    return _expand_parallel(base, job.get("parallel"), where)


def _trigger(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"project": value}
    if isinstance(value, dict):
        return dict(value)
    raise CiConfigError("trigger config should be a hash or a string")


def _optional_commands(
    job: Mapping[str, Any], key: str, ctx: _Context, where: str
) -> tuple[str, ...]:
    value = _from_default(job, key, ctx, where)
    return () if value is None else _commands(value, f"{where}:{key}")


def _tags(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(tag) for tag in _string_list(value, where))


_TAG_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand_tags(tags: tuple[str, ...], env: Mapping[str, str]) -> tuple[str, ...]:
    """GitLab expands CI/CD variables in ``tags`` (since 14.1); an unknown one expands to ""."""
    expanded = (
        _TAG_VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), tag) for tag in tags
    )
    return tuple(tag for tag in expanded if tag)


def _expand_parallel(job: JobSpec, parallel: Any, where: str) -> list[JobSpec]:
    if parallel is None:
        return [job]
    if isinstance(parallel, int) and not isinstance(parallel, bool):
        if not 1 <= parallel <= 200:
            raise CiConfigError(f"{where}:parallel config must be less than or equal to 200")
        return [
            replace(
                job,
                name=f"{job.name} {index}/{parallel}",
                variables=MappingProxyType(
                    {
                        **job.variables,
                        "CI_NODE_INDEX": str(index),
                        "CI_NODE_TOTAL": str(parallel),
                    }
                ),
            )
            for index in range(1, parallel + 1)
        ]
    matrix = parallel.get("matrix") if isinstance(parallel, dict) else None
    if not isinstance(matrix, list) or not all(isinstance(entry, dict) for entry in matrix):
        raise CiConfigError(f"{where}:parallel config should be an integer or a hash")
    combinations: list[dict[str, str]] = []
    for entry in matrix:
        keys = [str(key) for key in entry]
        values = [
            [str(v) for v in (entry[key] if isinstance(entry[key], list) else [entry[key]])]
            for key in entry
        ]
        combinations.extend(
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)
        )
    total = len(combinations)
    return [
        replace(
            job,
            name=f"{job.name}: [{', '.join(combo.values())}]",
            variables=MappingProxyType(
                {**job.variables, **combo, "CI_NODE_INDEX": str(i), "CI_NODE_TOTAL": str(total)}
            ),
        )
        for i, combo in enumerate(combinations, start=1)
    ]


def _stages(config: Mapping[str, Any]) -> tuple[str, ...]:
    raw = config.get("stages", config.get("types"))
    if raw is None:
        user: tuple[str, ...] = DEFAULT_STAGES
    elif isinstance(raw, list) and all(isinstance(stage, str) for stage in raw):
        flat: list[str] = []
        for stage in raw:
            if stage not in flat:
                flat.append(stage)
        user = tuple(flat)
    else:
        raise CiConfigError("stages config should be an array of strings")
    middle = tuple(stage for stage in user if stage not in EDGE_STAGES)
    return (EDGE_STAGES[0], *middle, EDGE_STAGES[1])


def _default_section(config: Mapping[str, Any]) -> dict[str, Any]:
    default = config.get("default") or {}
    if not isinstance(default, dict):
        raise CiConfigError("default config should be a hash")
    _check_keys(default, DEFAULT_KEYS, "default")
    merged = {key: config[key] for key in LEGACY_GLOBAL_KEYS if key in config}
    merged.update(default)
    return merged


def _check_cross_job(jobs: Mapping[str, dict[str, Any]], stages: tuple[str, ...]) -> None:
    """``YamlProcessor`` validations: stages exist, needs/dependencies name earlier jobs."""
    for name, job in jobs.items():
        stage = job.get("stage", "test")
        if stage not in stages:
            raise CiConfigError(
                f"{name} job: chosen stage {stage} does not exist; available stages are "
                f"{', '.join(stages)}"
            )
    index = {name: stages.index(job.get("stage", "test")) for name, job in jobs.items()}
    for name, job in jobs.items():
        needs = _needs(job.get("needs"), f"jobs:{name}:needs") or ()
        for need in needs:
            if need.job not in jobs:
                if need.optional:
                    continue
                raise CiConfigError(f"{name} job: undefined need: {need.job}")
            if index[need.job] > index[name]:
                raise CiConfigError(
                    f"{name} job: need {need.job} is not defined in current or prior stages"
                )
        dependencies = job.get("dependencies")
        if dependencies is None:
            continue
        for dependency in _string_list(dependencies, f"jobs:{name}:dependencies"):
            if dependency not in jobs:
                raise CiConfigError(f"{name} job: undefined dependency: {dependency}")
            if index[dependency] > index[name]:
                raise CiConfigError(
                    f"{name} job: dependency {dependency} is not defined in current or prior stages"
                )
        if job.get("needs") is not None:
            need_names = {need.job for need in needs}
            missing = [dep for dep in dependencies if dep not in need_names]
            if missing:
                raise CiConfigError(
                    f"jobs:{name} dependencies the {', '.join(missing)} should be part of needs"
                )


def _link_needs(
    specs: Sequence[tuple[str, JobSpec]], raw: Mapping[str, dict[str, Any]]
) -> list[JobSpec]:
    """Point needs/dependencies at the jobs that exist (``parallel`` instances expanded).

    A job excluded by rules cannot be needed unless the need is optional, as in GitLab.
    """
    instances: dict[str, list[str]] = {}
    for origin, spec in specs:
        instances.setdefault(origin, []).append(spec.name)
    linked: list[JobSpec] = []
    for origin, spec in specs:
        needs = _needs(raw[origin].get("needs"), "needs")
        for need in needs or ():
            if need.job not in instances and not need.optional:
                raise CiConfigError(
                    f"'{spec.name}' job needs '{need.job}' job, but '{need.job}' does not exist "
                    "in the pipeline. This might be because of the only, except, or rules "
                    "keywords. To need a job that sometimes does not exist in the pipeline, "
                    "use needs:optional."
                )

        def expand(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
            if names is None:
                return None
            result: list[str] = []
            for name in names:
                result.extend(instances.get(name, ()))
            return tuple(result)

        linked.append(
            replace(spec, needs=expand(spec.needs), dependencies=expand(spec.dependencies))
        )
    return linked


def load_pipeline(
    text: str,
    *,
    ref: str,
    variables: Mapping[str, str],
    read_file: Callable[[str], str | None],
) -> PipelineSpec:
    """Process a `.gitlab-ci.yml` for ``ref`` into the pipeline GitLab would create.

    Args:
        text: the `.gitlab-ci.yml` content at ``ref``.
        ref: the branch (or tag, when ``CI_COMMIT_TAG`` is among ``variables``) of the pipeline.
        variables: variables visible to ``rules``/``workflow`` (pipeline, project and predefined
            ones such as ``CI_PIPELINE_SOURCE`` or ``CI_DEFAULT_BRANCH``); they take precedence
            over YAML variables in expressions.
        read_file: returns a repository file's content at ``ref`` (None when it does not exist),
            for ``include: local``.

    Raises:
        CiConfigError: the configuration is invalid, or ``workflow:rules`` filter it out;
            the message is worded as GitLab words it.
    """
    base_env: dict[str, str] = dict(variables)
    base_env.setdefault("CI_COMMIT_REF_NAME", ref)
    if not base_env.get("CI_COMMIT_TAG"):
        base_env.setdefault("CI_COMMIT_BRANCH", ref)

    config = _load_root(text)
    config = _expand_includes(config, read_file, set(), base_env)
    config = _resolve_extends(config)
    resolved = _resolve_references(config, config)
    assert isinstance(resolved, dict)
    config = resolved

    stages = _stages(config)
    default = _default_section(config)
    global_variables = _string_map(config.get("variables"), "variables")
    raw_jobs: dict[str, dict[str, Any]] = {}
    for name, value in config.items():
        if name in RESERVED_ROOT_KEYS or name.startswith("."):
            continue
        raw_jobs[name] = _validate_job_entry(name, value)
    if not raw_jobs:
        raise CiConfigError("jobs config should contain at least one visible job")
    _check_cross_job(raw_jobs, stages)

    workflow = config.get("workflow")
    if workflow is not None:
        if not isinstance(workflow, dict):
            raise CiConfigError("workflow config should be a hash")
        if "rules" in workflow:
            outcome = _evaluate_rules(
                _flatten_rules(workflow["rules"], "workflow:rules"),
                {**global_variables, **base_env},
                "workflow:rules",
                allowed_keys=WORKFLOW_RULE_KEYS,
                allowed_when=WORKFLOW_WHEN,
            )
            if not outcome.included:
                raise CiConfigError(_FILTERED_OUT)
            global_variables = {**global_variables, **outcome.variables}

    ctx = _Context(
        ref=ref,
        base_env=MappingProxyType(base_env),
        default=MappingProxyType(default),
        global_variables=MappingProxyType(global_variables),
        stages=stages,
    )
    built = [(name, spec) for name, job in raw_jobs.items() for spec in _build_job(name, job, ctx)]
    return PipelineSpec(
        stages=stages,
        variables=MappingProxyType(dict(global_variables)),
        jobs=tuple(_link_needs(built, raw_jobs)),
    )
