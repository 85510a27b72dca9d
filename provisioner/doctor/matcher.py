"""Classify a job log against the catalogue: every finding quotes the line it rests on.

The log is cleaned as a terminal shows it (:mod:`provisioner.joblog`: colours, ``\\r`` redraws
and section markers removed), keeping one entry per raw line so line numbers are the log's own.
Signatures are found by their required literals first (:mod:`provisioner.doctor.anchors`), all
of them in one pass (:mod:`provisioner.doctor.literal_search`), and each regular expression
only runs on the few lines that contain one of its literals.

Ranking, best first: a specific signature before a generic wrapper (``Job failed (system
failure): …``), then one that explains the job's ``failure_reason`` before one that does not
name it and before one made for other reasons, then the earliest line (the first error is the
cause, later ones are its echoes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from provisioner.doctor.catalogue import Catalogue, Category, Signature, load_catalogue
from provisioner.doctor.literal_search import LiteralSearch
from provisioner.gitlab.models import FailureReason
from provisioner.joblog import clean_line

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MARKER = re.compile(r"^section_(?:start|end):\d+:\S*[^\S\n]*", re.MULTILINE)


#: Where a finding's evidence line comes from.
JOB_LOG = "job-log"
RUNNER_LOG = "runner-log"


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


_PATH_CATEGORIES = frozenset({Category.DNS_NETWORK, Category.TLS_CERTS})


@dataclass(frozen=True)
class Finding:
    """One known failure found in a log."""

    signature: Signature
    evidence: Evidence
    confidence: Confidence
    probes: tuple[ProbeEvidence, ...] = ()
    source: str = JOB_LOG

    @property
    def id(self) -> str:
        """The signature's id."""
        return self.signature.id

    @property
    def category(self) -> Category:
        """The signature's category."""
        return self.signature.category

    def with_probes(self, results: Sequence[ProbeEvidence]) -> Finding:
        """This finding judged by probe results.

        For a network or TLS failure the probes are the steps of one connection (DNS, TCP,
        TLS): one failing step confirms it, and it is refuted only when every step passed. For
        the other categories a probe of the very thing the log blames (the token, the socket,
        the directory) refutes it by passing, whatever else failed.
        """
        if not results:
            return self
        if self.signature.category in _PATH_CATEGORIES:
            confirmed = any(r.confirms for r in results)
        else:
            confirmed = all(r.confirms for r in results)
        confidence = Confidence.PROBE_CONFIRMED if confirmed else Confidence.PROBE_REFUTED
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
    source: str = JOB_LOG,
) -> tuple[Finding, ...]:
    """The findings of ``trace``, best first; one per signature, at its first line.

    Every required literal of the catalogue is looked for in one pass over the raw trace
    (:class:`~provisioner.doctor.literal_search.LiteralSearch`), and only the lines holding one
    are cleaned and matched, so a large log is never cleaned whole (a literal split by a colour
    code inside it would be missed; gitlab-runner and the tools it runs colour whole lines). A
    generic wrapper is dropped when a specific finding quotes the same line. ``source`` names
    where ``trace`` comes from (the job's log, or the runner's own journal).
    """
    catalogue = catalogue or load_catalogue()
    text = trace.replace("\r\n", "\n") if "\r\n" in trace else trace
    scan = _Scan(text.encode("utf-8", "surrogatepass"), _prefilter(catalogue))
    found: list[Finding] = []
    for signature in catalogue.signatures:
        index = scan.first_line(signature)
        if index is not None:
            confidence = Confidence.INFERRED if signature.generic else Confidence.MATCHED
            evidence = Evidence(index + 1, scan.clean(index))
            found.append(Finding(signature, evidence, confidence, source=source))
    specific_lines = {f.evidence.line for f in found if not f.signature.generic}
    found = [f for f in found if not f.signature.generic or f.evidence.line not in specific_lines]
    found.sort(
        key=lambda f: (f.signature.generic, _rank(f.signature, failure_reason), f.evidence.line)
    )
    return tuple(found)


_PREFILTERS: dict[int, tuple[Catalogue, LiteralSearch]] = {}


def _prefilter(catalogue: Catalogue) -> LiteralSearch:
    """One automaton of every required literal of ``catalogue`` (built once per catalogue)."""
    cached = _PREFILTERS.get(id(catalogue))
    if cached is not None and cached[0] is catalogue:
        return cached[1]
    literals = sorted({a for signature in catalogue.signatures for a in signature.anchors})
    search = LiteralSearch(literals)
    if len(_PREFILTERS) >= 8:
        _PREFILTERS.clear()
    _PREFILTERS[id(catalogue)] = (catalogue, search)
    return search


class _Scan:
    """One log being searched: the lines each literal occurs on, and clean lines on demand.

    ``data`` is the log in UTF-8 with ``\\r\\n`` already made ``\\n``; line indexes count
    ``\\n`` from its start, so they are the raw log's own line numbers minus one.
    """

    def __init__(self, data: bytes, search: LiteralSearch) -> None:
        self.data = data
        self._hits: dict[str, list[int]] = {literal: [] for literal in search.literals}
        self._spans: dict[int, tuple[int, int]] = {}
        self._clean: dict[int, str] = {}
        line, counted = 0, 0
        for literal, offset in sorted(search.occurrences(data), key=lambda hit: hit[1]):
            line += data.count(b"\n", counted, offset)
            counted = offset
            lines = self._hits[search.literals[literal]]
            if not lines or lines[-1] != line:
                lines.append(line)
            if line not in self._spans:
                end = data.find(b"\n", offset)
                self._spans[line] = (
                    data.rfind(b"\n", 0, offset) + 1,
                    len(data) if end < 0 else end,
                )

    def clean(self, index: int) -> str:
        if index not in self._clean:
            start, end = self._spans[index]
            self._clean[index] = clean_line(self.data[start:end].decode("utf-8", "surrogatepass"))
        return self._clean[index]

    def lines_with(self, anchor: str) -> list[int]:
        """Indexes of the raw lines containing ``anchor``, in order."""
        return self._hits.get(anchor, [])

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
