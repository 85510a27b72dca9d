"""``include: local``: merging included files into the root (the including file wins)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml

from provisioner.sandbox.ci.errors import CiConfigError
from provisioner.sandbox.ci.keys import MAX_INCLUDES
from provisioner.sandbox.ci.loading import CiLoader
from provisioner.sandbox.ci.rules import evaluate_rules, flatten_rules


def deep_merge(base: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Rails' ``Hash#deep_merge``: hashes merge recursively, anything else is replaced."""
    merged = dict(base)
    for key, value in other.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


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


def expand_includes(
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
            data = yaml.load(content, Loader=CiLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError:
            raise CiConfigError(
                f"Included file `{path}` does not have valid YAML syntax!"
            ) from None
        if not isinstance(data, dict):
            raise CiConfigError(f"Included file `{path}` does not have valid YAML syntax!")
        included = expand_includes({str(k): v for k, v in data.items()}, read_file, seen, env)
        merged = deep_merge(merged, included)
    return deep_merge(merged, config)
