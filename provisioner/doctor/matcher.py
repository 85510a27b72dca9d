"""Classify a job log against the catalogue: every finding quotes the line it rests on.

The log is cleaned as a terminal shows it (:mod:`provisioner.joblog`: colours, ``\\r`` redraws
and section markers removed), keeping one entry per raw line so line numbers are the log's own.
Signatures are found by their required literals first (:mod:`provisioner.doctor.anchors`), and
each regular expression only runs on the few lines that contain one of its literals.

Ranking, best first: a specific signature before a generic wrapper (``Job failed (system
failure): …``), then one that explains the job's ``failure_reason`` before one that does not
name it and before one made for other reasons, then the earliest line (the first error is the
cause, later ones are its echoes).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from provisioner.doctor.catalogue import Catalogue, Category, Signature, load_catalogue
from provisioner.gitlab.models import FailureReason
from provisioner.joblog import clean_line

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MARKER = re.compile(r"^section_(?:start|end):\d+:\S*[^\S\n]*", re.MULTILINE)


class Confidence(StrEnum):
    """How sure doctor is of a finding."""

    MATCHED = "matched"
    PROBE_CONFIRMED = "probe-confirmed"
    PROBE_REFUTED = "probe-refuted"
    INFERRED = "inferred"


@dataclass(frozen=True)
class Evidence:
    """The line a finding rests on: its 1-based number in the log and its clean text."""

    line: int
    text: str


@dataclass(frozen=True)
class ProbeEvidence:
    """A probe's verdict on a finding, with what it saw."""

    probe: str
    confirms: bool
    evidence: str


@dataclass(frozen=True)
class Finding:
    """One known failure found in a log."""

    signature: Signature
    evidence: Evidence
    confidence: Confidence
    probes: tuple[ProbeEvidence, ...] = ()

    @property
    def id(self) -> str:
        """The signature's id."""
        return self.signature.id

    @property
    def category(self) -> Category:
        """The signature's category."""
        return self.signature.category

    def with_probes(self, results: Sequence[ProbeEvidence]) -> Finding:
        """This finding judged by probe results: any refutation wins over confirmations."""
        if not results:
            return self
        refuted = any(not r.confirms for r in results)
        confidence = Confidence.PROBE_REFUTED if refuted else Confidence.PROBE_CONFIRMED
        return replace(self, probes=tuple(results), confidence=confidence)


def clean_log_lines(trace: str) -> list[str]:
    """One clean line per raw line of ``trace`` (empty ones kept, so numbers stay right).

    The same text :func:`provisioner.joblog.clean_line` gives line by line; whole-text passes
    are used when the log has no carriage returns, which is most of a large log.
    """
    text = trace.replace("\r\n", "\n")
    if "\r" in text:
        return [clean_line(raw) for raw in text.split("\n")]
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    if "section_" in text:
        text = _MARKER.sub("", text)
    return [line.rstrip() for line in text.split("\n")]


def _rank(signature: Signature, reason: FailureReason | None) -> int:
    if reason is None or not signature.failure_reasons:
        return 1
    return 0 if reason in signature.failure_reasons else 2


def classify(
    trace: str,
    *,
    failure_reason: FailureReason | None = None,
    catalogue: Catalogue | None = None,
) -> tuple[Finding, ...]:
    """The findings of ``trace``, best first; one per signature, at its first line.

    A generic wrapper is dropped when a specific finding quotes the same line.
    """
    catalogue = catalogue or load_catalogue()
    lines = clean_log_lines(trace)
    text = "\n".join(lines)
    starts = _line_starts(lines)
    first: dict[str, int] = {}
    for signature in catalogue.signatures:
        index = _first_line(signature, text, lines, starts)
        if index is not None:
            first[signature.id] = index
    found = [
        Finding(
            signature=catalogue.get(sid),
            evidence=Evidence(index + 1, lines[index]),
            confidence=Confidence.INFERRED if catalogue.get(sid).generic else Confidence.MATCHED,
        )
        for sid, index in first.items()
    ]
    specific_lines = {f.evidence.line for f in found if not f.signature.generic}
    found = [f for f in found if not f.signature.generic or f.evidence.line not in specific_lines]
    found.sort(
        key=lambda f: (f.signature.generic, _rank(f.signature, failure_reason), f.evidence.line)
    )
    return tuple(found)


def _line_starts(lines: Sequence[str]) -> list[int]:
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    return starts


def _first_line(
    signature: Signature, text: str, lines: Sequence[str], starts: Sequence[int]
) -> int | None:
    """The index of the first line matching ``signature``, looking only where its literals are."""
    best: int | None = None
    for anchor in signature.anchors:
        pos = text.find(anchor)
        while pos != -1:
            index = bisect_right(starts, pos) - 1
            if best is not None and index >= best:
                break
            if signature.pattern.search(lines[index]):
                best = index
                break
            next_line = index + 1
            if next_line >= len(starts):
                break
            pos = text.find(anchor, starts[next_line])
    return best
