"""Stamp name, version and project.urls.Homepage into pyproject.toml, TOML-aware.

GitLab's tutorial uses sed, whose greedy `name = ".*"` also rewrites the authors' `name` and
drops their email. This step edits only the three keys in their own tables, re-parses the
result with tomllib and refuses to write anything else but exactly those changes.

Usage: python ci/stamp.py pyproject.toml NAME VERSION HOMEPAGE
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib

_TABLE = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
_KEY = re.compile(r'^(\s*)("?)([A-Za-z0-9_.-]+)\2(\s*=\s*)(.*)$')


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def stamp(text: str, name: str, version: str, homepage: str) -> str:
    """Return ``text`` with the three keys replaced; raise ValueError when one is missing."""
    wanted = {
        ("project", "name"): name,
        ("project", "version"): version,
        ("project.urls", "Homepage"): homepage,
    }
    seen = set()
    table = ""
    out = []
    for line in text.splitlines(keepends=True):
        header = _TABLE.match(line)
        if header:
            table = header.group(1).strip().replace('"', "")
        else:
            key = _KEY.match(line.rstrip("\r\n"))
            if key and (table, key.group(3)) in wanted:
                indent, quote, bare, eq, _ = key.groups()
                ending = line[len(line.rstrip("\r\n")) :]
                value = wanted[(table, bare)]
                line = f"{indent}{quote}{bare}{quote}{eq}{_quote(value)}{ending}"
                seen.add((table, bare))
        out.append(line)
    missing = sorted(f"{t}.{k}" for t, k in set(wanted) - seen)
    if missing:
        raise ValueError(f"pyproject.toml lacks {', '.join(missing)} (as plain keys)")
    result = "".join(out)
    before, after = tomllib.loads(text), tomllib.loads(result)
    if (
        after["project"]["name"] != name
        or after["project"]["version"] != version
        or after["project"]["urls"]["Homepage"] != homepage
    ):
        raise ValueError("stamping did not produce the expected values")
    for data in (before, after):
        del data["project"]["name"], data["project"]["version"]
        del data["project"]["urls"]["Homepage"]
    if before != after:
        raise ValueError("stamping would change more than name, version and Homepage")
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    path, name, version, homepage = argv[1:]
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        result = stamp(text, name, version, homepage)
    except (ValueError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"stamp: {exc}", file=sys.stderr)
        return 1
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, encoding="utf-8") as tmp:
        tmp.write(result)
    os.replace(tmp.name, path)
    print(f"stamped {path}: name={name} version={version} Homepage={homepage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
