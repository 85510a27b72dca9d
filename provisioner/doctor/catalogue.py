"""The catalogue of failure signatures doctor knows, shipped as package data (catalogue.toml).

A :class:`Signature` names one known failure: the line that shows it (a regular expression), its
category, causes, fixes, the probes that can confirm or refute it, its sources and real example
lines. :func:`load_catalogue` reads and checks the file once; a broken entry is a bug in the
package, reported with the entry's id.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.gitlab.models import FailureReason

CATALOGUE_FILE = "catalogue.toml"


class Category(StrEnum):
    """The ten kinds of failure doctor sorts findings into."""

    CLONE_AUTH = "clone/auth"
    TLS_CERTS = "TLS/certs"
    DNS_NETWORK = "DNS/network"
    PERMISSIONS = "permissions"
    DOCKER_DAEMON = "docker daemon"
    IMAGE_PULL = "image pull"
    CACHE_ARTIFACTS = "cache/artifacts"
    RESOURCES = "resources/OOM/disk"
    CONFIG = "config"
    REGISTRATION = "runner registration/token"

    @property
    def runner_side(self) -> bool:
        """True when a failure of this kind is the runner's or its host's fault, not the code's."""
        return self is not Category.CONFIG


@dataclass(frozen=True)
class Signature:
    """One known failure and how to recognise, explain, confirm and fix it."""

    id: str
    category: Category
    title: str
    pattern: re.Pattern[str]
    anchors: tuple[str, ...]
    causes: tuple[str, ...]
    fixes: tuple[str, ...]
    sources: tuple[str, ...]
    examples: tuple[str, ...]
    probes: tuple[str, ...] = ()
    failure_reasons: frozenset[FailureReason] = frozenset()
    generic: bool = False
    runner_log: bool = False


@dataclass(frozen=True)
class Catalogue:
    """Every signature, in file order."""

    signatures: tuple[Signature, ...]

    def runner_log(self) -> Catalogue:
        """The signatures of lines gitlab-runner itself logs (matched against its journal)."""
        return Catalogue(tuple(s for s in self.signatures if s.runner_log))

    def get(self, signature_id: str) -> Signature:
        """The signature called ``signature_id``."""
        for signature in self.signatures:
            if signature.id == signature_id:
                return signature
        raise KeyError(signature_id)


class CatalogueError(ProvisionerError):
    """The shipped catalogue is broken (a packaging bug, exit 1)."""


@cache
def load_catalogue() -> Catalogue:
    """The catalogue shipped with the package (read once per process)."""
    text = resources.files("provisioner.doctor").joinpath(CATALOGUE_FILE).read_text("utf-8")
    return parse_catalogue(text)


@cache
def runner_log_catalogue() -> Catalogue:
    """The shipped catalogue's runner-log signatures (built once per process)."""
    return load_catalogue().runner_log()


def parse_catalogue(text: str) -> Catalogue:
    """Build a :class:`Catalogue` from TOML ``text``.

    Raises:
        CatalogueError: when an entry lacks a field, names an unknown category, probe or
            failure reason, has a pattern that does not compile or does not match its examples.
    """
    from provisioner.doctor.anchors import required_literals
    from provisioner.doctor.probes import PROBE_NAMES

    seen: set[str] = set()
    signatures: list[Signature] = []
    for entry in tomllib.loads(text).get("signature", []):
        sid = str(entry.get("id", "?"))
        try:
            signature = _signature(entry, required_literals)
        except (KeyError, ValueError, re.error) as exc:
            raise CatalogueError(f"catalogue entry {sid}: {exc}") from exc
        unknown = set(signature.probes) - PROBE_NAMES
        if unknown:
            raise CatalogueError(f"catalogue entry {sid}: unknown probes {sorted(unknown)}")
        if sid in seen:
            raise CatalogueError(f"catalogue entry {sid} appears twice")
        seen.add(sid)
        signatures.append(signature)
    return Catalogue(tuple(signatures))


def _strings(entry: dict[str, Any], key: str, *, required: bool = True) -> tuple[str, ...]:
    values = entry.get(key)
    if values is None and not required:
        return ()
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key} must be a non-empty list of strings")
    return tuple(values)


def _signature(entry: dict[str, Any], literals: Any) -> Signature:
    pattern = re.compile(str(entry["pattern"]))
    examples = _strings(entry, "examples")
    for example in examples:
        if not pattern.search(example):
            raise ValueError(f"pattern does not match its example {example!r}")
    anchors = tuple(literals(pattern.pattern))
    if not anchors:
        raise ValueError("pattern has no literal text to look for")
    return Signature(
        id=str(entry["id"]),
        category=Category(entry["category"]),
        title=str(entry["title"]),
        pattern=pattern,
        anchors=anchors,
        causes=_strings(entry, "causes"),
        fixes=_strings(entry, "fixes"),
        sources=_strings(entry, "sources"),
        examples=examples,
        probes=_strings(entry, "probes", required=False),
        failure_reasons=frozenset(
            FailureReason(r) for r in _strings(entry, "failure_reasons", required=False)
        ),
        generic=bool(entry.get("generic", False)),
        runner_log=bool(entry.get("runner_log", False)),
    )
