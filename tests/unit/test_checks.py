"""The shared check model: verdicts, aggregation, and AllOf."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from provisioner.checks import AllOf, CheckResult, Verdict, aggregate
from provisioner.errors import HostError, UsageError


@dataclass(frozen=True)
class Threshold:
    """Passes when the subject is at least ``minimum``."""

    minimum: int
    name: str = "threshold"

    def run(self, subject: int) -> CheckResult:
        if subject >= self.minimum:
            return CheckResult(self.name, Verdict.PASS, f"{subject} >= {self.minimum}")
        return CheckResult(self.name, Verdict.FAIL, f"{subject} < {self.minimum}", "raise it")


@dataclass(frozen=True)
class Broken:
    """Raises like a check whose session dropped."""

    name: str = "broken"

    def run(self, subject: int) -> CheckResult:
        raise HostError("connection lost", hint="reconnect")


def test_all_of_refuses_an_empty_list() -> None:
    with pytest.raises(UsageError, match="no checks to run") as caught:
        AllOf[int]([])
    assert caught.value.exit_code == 2


def test_all_of_runs_every_check_in_order() -> None:
    every = AllOf([Threshold(1, "one"), Threshold(5, "five"), Threshold(3, "three")])
    results = every.results(4)
    assert [(r.check, r.verdict) for r in results] == [
        ("one", Verdict.PASS),
        ("five", Verdict.FAIL),
        ("three", Verdict.PASS),
    ]
    assert results[1].evidence == "4 < 5"
    assert results[1].fix == "raise it"
    assert not results[1].ok
    assert results[0].ok


def test_a_check_that_raises_fails_with_the_errors_message_and_hint() -> None:
    results = AllOf[int]([Broken(), Threshold(1)]).results(2)
    assert results == (
        CheckResult("broken", Verdict.FAIL, "connection lost", "reconnect"),
        CheckResult("threshold", Verdict.PASS, "2 >= 1"),
    )


def test_skipped_names_every_check() -> None:
    every = AllOf([Threshold(1, "a"), Threshold(2, "b")])
    assert every.skipped("no session") == (
        CheckResult("a", Verdict.SKIP, "no session"),
        CheckResult("b", Verdict.SKIP, "no session"),
    )


@pytest.mark.parametrize(
    ("verdicts", "worst"),
    [
        ((), Verdict.SKIP),
        ((Verdict.SKIP, Verdict.SKIP), Verdict.SKIP),
        ((Verdict.SKIP, Verdict.PASS), Verdict.PASS),
        ((Verdict.PASS, Verdict.WARN, Verdict.PASS), Verdict.WARN),
        ((Verdict.WARN, Verdict.FAIL, Verdict.SKIP), Verdict.FAIL),
        ((Verdict.FAIL, Verdict.PASS), Verdict.FAIL),
    ],
)
def test_aggregate_is_the_worst_verdict(verdicts: tuple[Verdict, ...], worst: Verdict) -> None:
    assert aggregate(CheckResult(f"c{i}", v, "") for i, v in enumerate(verdicts)) is worst


def test_a_warning_does_not_block() -> None:
    assert CheckResult("c", Verdict.WARN, "slow").ok
    assert CheckResult("c", Verdict.SKIP, "n/a").ok
