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

    The same text :func:`provisioner.joblog.clean_line` gives line by line, computed with
    whole-text passes (a large log has tens of thousands of lines).
    """
    text = trace.replace("\r\n", "\n")
    if "\r" in text:  # a terminal shows what follows a line's last carriage return
        text = "\n".join(
            raw.rsplit("\r", 1)[-1] if "\r" in raw else raw for raw in text.split("\n")
        )
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

    Literals are looked for in the raw trace and only the lines holding one are cleaned and
    matched, so a large log is never cleaned whole (a literal split by a colour code inside it
    would be missed; gitlab-runner and the tools it runs colour whole lines). A generic wrapper
    is dropped when a specific finding quotes the same line.
    """
    catalogue = catalogue or load_catalogue()
    raw = trace.replace("\r\n", "\n").split("\n")
    text = "\n".join(raw)
    starts = _line_starts(raw)
    scan = _Scan(text, raw, starts)
    found: list[Finding] = []
    for signature in catalogue.signatures:
        index = scan.first_line(signature)
        if index is not None:
            confidence = Confidence.INFERRED if signature.generic else Confidence.MATCHED
            found.append(Finding(signature, Evidence(index + 1, scan.clean(index)), confidence))
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


class _Scan:
    """One log being searched: where each literal occurs, and clean lines on demand."""

    def __init__(self, text: str, raw: list[str], starts: list[int]) -> None:
        self.text, self.raw, self.starts = text, raw, starts
        self._hits: dict[str, list[int]] = {}
        self._clean: dict[int, str] = {}

    def clean(self, index: int) -> str:
        if index not in self._clean:
            self._clean[index] = clean_line(self.raw[index])
        return self._clean[index]

    def lines_with(self, anchor: str) -> list[int]:
        """Indexes of the raw lines containing ``anchor``, in order."""
        if anchor not in self._hits:
            found: list[int] = []
            pos = self.text.find(anchor)
            while pos != -1:
                index = bisect_right(self.starts, pos) - 1
                found.append(index)
                following = index + 1
                if following >= len(self.starts):
                    break
                pos = self.text.find(anchor, self.starts[following])
            self._hits[anchor] = found
        return self._hits[anchor]

    def first_line(self, signature: Signature) -> int | None:
        """The first line whose clean text matches ``signature``."""
        best: int | None = None
        for anchor in signature.anchors:
            for index in self.lines_with(anchor):
                if best is not None and index >= best:
                    break
                if signature.pattern.search(self.clean(index)):
                    best = index
                    break
        return best
