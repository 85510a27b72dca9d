"""``include``: merging included files into the root (the including file wins).

Supported as GitLab does them: ``local``, ``project`` (with ``ref`` and ``file``, one file or a
list), ``component`` (``<fqdn>/<project path>/<name>@<version>``, resolved against the
sandbox's own projects and tags; ``~latest`` is the highest semantic-version tag), each with
``inputs`` checked against the included file's ``spec:inputs`` header and ``rules``. ``remote``
and ``template`` need the network or GitLab's bundled templates and are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from provisioner.mappings import deep_merge
from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.inputs import load_with_inputs
from provisioner.sandbox.ci.keys import MAX_INCLUDES
from provisioner.sandbox.ci.rules import evaluate_rules, flatten_rules

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_PROJECT_KEYS = frozenset({"project", "ref", "file", "inputs", "rules"})


class ProjectFiles(Protocol):
    """Other projects' repositories, for ``include: project`` and ``include: component``."""

    def exists(self, project: str) -> bool:
        """Whether the project exists (the sandbox does not check the pipeline user's access)."""

    def commit(self, project: str, ref: str | None) -> str | None:
        """The commit of ``ref`` (the default branch when None); None if there is no such ref."""

    def tags(self, project: str) -> list[str]:
        """The project's tag names."""

    def read(self, project: str, commit: str, path: str) -> str | None:
        """A file's text at ``commit``; None when it does not exist."""


class NoProjects:
    """The default :class:`ProjectFiles`: no other project exists."""

    def exists(self, project: str) -> bool:  # noqa: ARG002
        return False

    def commit(self, project: str, ref: str | None) -> str | None:  # noqa: ARG002
        return None

    def tags(self, project: str) -> list[str]:  # noqa: ARG002
        return []

    def read(self, project: str, commit: str, path: str) -> str | None:  # noqa: ARG002
        return None


@dataclass(frozen=True)
class _Location:
    kind: str  # local | project | component
    path: str
    project: str = ""
    ref: str | None = None
    inputs: Any = None
    label: str = ""

    def key(self) -> str:
        inputs = json.dumps(self.inputs, sort_keys=True, default=str)
        return f"{self.kind}\0{self.project}\0{self.ref}\0{self.path}\0{inputs}"


def expand_variables(text: str, env: Mapping[str, str]) -> str:
    """``$VAR``/``${VAR}`` in include locations (GitLab expands them; unknown ones stay)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, match.group(0))

    return _VARIABLE.sub(one, text)


def _include_wanted(item: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """``include:rules``: ``if`` over the pipeline's variables; ``exists``/``changes`` are true."""
    if "rules" not in item:
        return True
    outcome = evaluate_rules(
        flatten_rules(item["rules"], "include:rules"),
        env,
        "include:rules",
        allowed_keys=frozenset({"if", "exists", "changes", "when"}),
        allowed_when=("always", "never"),
    )
    return outcome.included


def _component(value: Any, env: Mapping[str, str], files: ProjectFiles) -> _Location:
    if not isinstance(value, str):
        raise CiConfigError("include config should be a hash or a string")
    location = expand_variables(value, env)
    address, at, version = location.partition("@")
    host, _, rest = address.partition("/")
    project, _, name = rest.rpartition("/")
    fqdn = env.get("CI_SERVER_FQDN")
    if not at or not version or not project or not name or (fqdn and host != fqdn):
        raise CiConfigError(f"Component '{location}' - content not found")
    if not files.exists(project):
        raise CiConfigError(
            f"Component '{location}' - project does not exist or you don't have sufficient "
            "permissions"
        )
    if version == "~latest":
        semver = {
            tuple(int(part) for part in match.groups()): tag
            for tag in files.tags(project)
            if (match := _SEMVER.match(tag)) is not None
        }
        if not semver:
            raise CiConfigError(f"Component '{location}' - content not found")
        version = semver[max(semver)]
    commit = files.commit(project, version)
    if commit is None:
        raise CiConfigError(f"Component '{location}' - content not found")
    for path in (f"templates/{name}.yml", f"templates/{name}/template.yml"):
        if files.read(project, commit, path) is not None:
            return _Location("component", path, project, commit, None, location)
    raise CiConfigError(f"Component '{location}' - content not found")


def _project_files(item: Mapping[str, Any], env: Mapping[str, str]) -> Iterator[_Location]:
    unknown = sorted(str(key) for key in item if key not in _PROJECT_KEYS)
    if unknown:
        raise CiConfigError(f"include config contains unknown keys: {', '.join(unknown)}")
    project = item["project"]
    if not isinstance(project, str):
        raise CiConfigError("include config should be a hash or a string")
    ref = item.get("ref")
    file_value = item.get("file")
    if file_value is None:
        raise CiConfigError("Included file `` does not have YAML extension!")
    names = file_value if isinstance(file_value, list) else [file_value]
    for name in names:
        if not isinstance(name, str):
            raise CiConfigError("include config should be a hash or a string")
        yield _Location(
            "project",
            expand_variables(name, env).lstrip("/"),
            expand_variables(project, env).strip("/"),
            expand_variables(str(ref), env) if ref is not None else None,
            item.get("inputs"),
        )


def _include_locations(
    value: Any, env: Mapping[str, str], files: ProjectFiles
) -> Iterator[_Location]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, dict) and not _include_wanted(item, env):
            continue
        if isinstance(item, str):
            if item.startswith(("http://", "https://")):
                raise CiConfigError(
                    f"Remote file `{item}` could not be fetched: the sandbox has no network"
                )
            yield _Location("local", expand_variables(item, env).lstrip("/"))
        elif isinstance(item, dict) and "local" in item:
            local = item["local"]
            if not isinstance(local, str):
                raise CiConfigError("include config should be a hash or a string")
            yield _Location(
                "local", expand_variables(local, env).lstrip("/"), inputs=item.get("inputs")
            )
        elif isinstance(item, dict) and "project" in item:
            yield from _project_files(item, env)
        elif isinstance(item, dict) and "component" in item:
            found = _component(item["component"], env, files)
            yield _Location(
                found.kind, found.path, found.project, found.ref, item.get("inputs"), found.label
            )
        elif isinstance(item, dict):
            kinds = ", ".join(sorted(str(key) for key in item if key not in {"rules", "inputs"}))
            raise CiConfigError(
                f"Included file type `{kinds}` is not supported by the sandbox (only `local`, "
                "`project` and `component`)"
            )
        else:
            raise CiConfigError("include config should be a hash or a string")


def _read(
    location: _Location, read_file: Callable[[str], str | None], files: ProjectFiles
) -> tuple[str, Callable[[str], str | None]]:
    """The file's text, and the reader its own ``include: local`` entries resolve against."""
    path = location.path
    if location.kind == "local":
        content = read_file(path)
        if content is None:
            raise CiConfigError(f"Local file `{path}` does not exist!")
        if not content.strip():
            raise CiConfigError(f"Local file `{path}` is empty!")
        return content, read_file
    project = location.project
    if location.kind == "project" and not files.exists(project):
        raise CiConfigError(
            f"Project `{project}` not found or access denied! Make sure any includes in the "
            "pipeline configuration are correctly defined."
        )
    commit = location.ref if location.kind == "component" else files.commit(project, location.ref)
    if commit is None:
        raise CiConfigError(f"Project `{project}` reference `{location.ref}` does not exist!")
    content = files.read(project, commit, path)
    if content is None:
        raise CiConfigError(f"Project `{project}` file `{path}` does not exist!")
    if not content.strip():
        raise CiConfigError(f"Project `{project}` file `{path}` is empty!")

    def nested(name: str) -> str | None:
        # A project file's own `include: local` means a file of *that* project at that commit.
        return files.read(project, commit, name)

    return content, nested


def expand_includes(
    config: dict[str, Any],
    read_file: Callable[[str], str | None],
    seen: set[str],
    env: Mapping[str, str],
    files: ProjectFiles | None = None,
) -> dict[str, Any]:
    if "include" not in config:
        return config
    files = files or NoProjects()
    includes = config.pop("include")
    merged: dict[str, Any] = {}
    for location in _include_locations(includes, env, files):
        key = location.key()
        if key in seen:
            continue  # GitLab de-duplicates identical includes
        seen.add(key)
        if len(seen) > MAX_INCLUDES:
            raise CiConfigError(f"Maximum of {MAX_INCLUDES} nested includes are allowed!")
        path = location.path
        if not path.endswith((".yml", ".yaml")):
            raise CiConfigError(f"Included file `{path}` does not have YAML extension!")
        content, nested_reader = _read(location, read_file, files)
        where = f"`{location.label or path}`"
        data = load_with_inputs(content, location.inputs, where)
        if not isinstance(data, dict):
            raise CiConfigError(f"Included file `{path}` does not have valid YAML syntax!")
        included = expand_includes(
            {str(k): v for k, v in data.items()}, nested_reader, seen, env, files
        )
        merged = deep_merge(merged, included)
    return deep_merge(merged, config)
