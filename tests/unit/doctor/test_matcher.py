"""Classification: the right line wins in real noisy logs; successful logs give nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.doctor.matcher import Confidence, classify, clean_log_lines
from provisioner.gitlab.models import FailureReason
from provisioner.joblog import clean_line

DATA = Path(__file__).parent / "data"
FIXTURES = sorted((DATA / "fixtures").glob("*.log"))
SUCCESS = sorted((DATA / "success").glob("*.log"))
MARK = "#=MATCH=#"


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # keep \r: it is part of a raw trace


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_the_marked_line_wins(path: Path) -> None:
    """pytorch log-classifier style: a real log window and the line that must win."""
    expect, reason, *body = _read(path).split("\n")
    assert expect.startswith("#=EXPECT=# ")
    assert reason.startswith("#=REASON=# ")
    marked = [i for i, line in enumerate(body) if line.startswith(MARK)]
    assert len(marked) == 1
    body[marked[0]] = body[marked[0]].removeprefix(MARK)
    trace = "\n".join(body)
    findings = classify(trace, failure_reason=FailureReason(reason.split()[1]))
    best = findings[0]
    assert best.id == expect.split()[1]
    assert best.evidence.line == marked[0] + 1
    assert best.evidence.text == clean_line(body[marked[0]])
    assert best.confidence is Confidence.MATCHED


def test_the_corpus_covers_real_failures_and_noise() -> None:
    assert len(FIXTURES) >= 10
    assert len([p for p in FIXTURES if p.name.startswith("sandbox-")]) >= 7
    assert len(SUCCESS) >= 3


@pytest.mark.parametrize("path", SUCCESS, ids=lambda p: p.stem)
def test_successful_logs_have_no_findings(path: Path) -> None:
    assert classify(_read(path)) == ()


def test_clean_lines_keep_numbering_and_equal_the_joblog_cleaner() -> None:
    trace = "\n".join(
        [
            "plain",
            "\x1b[32;1m$ make\x1b[0;m",
            "section_start:1:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting\x1b[0;m",
            "",
            "progress 10%\rprogress 100%",
            "section_end:2:step_script\r\x1b[0K",
        ]
    )
    cleaned = clean_log_lines(trace)
    assert cleaned == [clean_line(raw) for raw in trace.split("\n")]
    assert cleaned[:3] == ["plain", "$ make", "Executing"]
    no_cr = trace.replace("progress 10%\r", "").replace("\r", "")
    assert clean_log_lines(no_cr) == [clean_line(raw) for raw in no_cr.split("\n")]


def test_generic_wrapper_never_wins_and_is_dropped_on_a_specific_line() -> None:
    trace = "\n".join(
        [
            "ERROR: Job failed (system failure): something odd",
            "Error response from daemon: manifest for x:1 not found: manifest unknown",
            'ERROR: Job failed (system failure): failed to pull image "x:1" with specified '
            "policies [never]: Error response from daemon: No such image: x:1",
        ]
    )
    findings = classify(trace, failure_reason=FailureReason.RUNNER_SYSTEM_FAILURE)
    ids = [f.id for f in findings]
    assert ids[:2] == ["manifest-unknown", "image-not-present-pull-never"]
    assert ids[-1] == "job-system-failure"  # the generic line 1 comes last, though first in log
    assert findings[-1].evidence.line == 1
    assert findings[-1].confidence is Confidence.INFERRED
    assert "image-pull-failed" not in ids  # generic, and its line has a specific finding


def test_one_finding_per_signature_at_its_first_line() -> None:
    trace = "Could not resolve host: a.invalid\nnoise\nCould not resolve host: b.invalid\n"
    (finding,) = classify(trace)
    assert finding.evidence.line == 1


def test_a_log_without_known_failure() -> None:
    assert classify("") == ()
    assert classify("$ make test\nERROR: Job failed: exit code 1\n") == ()


def test_literal_search_reports_every_occurrence_in_bytes() -> None:
    from provisioner.doctor.literal_search import LiteralSearch

    search = LiteralSearch(["abab", "bab", "x"])
    hits = sorted(search.occurrences("ababab é x".encode()))
    assert hits == [(0, 0), (0, 2), (1, 1), (1, 3), (2, 10)]


def test_line_numbers_survive_crlf_and_non_ascii_text() -> None:
    """Offsets are UTF-8 bytes: lines of multi-byte text before the evidence keep its number."""
    noise = ["Übersetzung läuft… ✓ 日本語", "\x1b[31mrot\x1b[0m", "progress 10%\rprogress 100%"]
    line = "fatal: unable to access 'http://h.invalid/g/p.git/': Could not resolve host: h.invalid"
    trace = "\r\n".join([*noise * 40, "\x1b[31;1m" + line + "\x1b[0m", "after"])
    findings = classify(trace)
    assert findings[0].id == "could-not-resolve-host"
    assert findings[0].evidence.line == len(noise) * 40 + 1
    assert findings[0].evidence.text == line


def test_one_failing_probe_on_the_path_confirms_and_only_all_passing_refute() -> None:
    from provisioner.doctor.matcher import ProbeEvidence

    (finding,) = classify(
        "ERROR: Checking for jobs... failed  runner=abc status=couldn't execute POST\n"
    )
    dns_ok = ProbeEvidence("dns@host", confirms=False, evidence="gitlab.example.com resolves")
    tcp_down = ProbeEvidence("tcp@host", confirms=True, evidence="connect to :443 refused")
    tcp_ok = ProbeEvidence("tcp@host", confirms=False, evidence="connected to :443")
    # DNS works but TCP does not: the network path is broken where the log says.
    assert finding.with_probes([dns_ok, tcp_down]).confidence is Confidence.PROBE_CONFIRMED
    assert finding.with_probes([tcp_down, dns_ok]).confidence is Confidence.PROBE_CONFIRMED
    assert finding.with_probes([dns_ok, tcp_ok]).confidence is Confidence.PROBE_REFUTED
    assert finding.with_probes([]).confidence is finding.confidence
