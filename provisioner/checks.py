"""The check model shared by ``host check`` and ``doctor``.

A :class:`Check` looks at one subject (a connected host, a GitLab instance, a job) and returns a
:class:`CheckResult`: a :class:`Verdict`, the evidence it saw, and a concrete fix when it did not
pass. :class:`AllOf` runs several checks against one subject and refuses an empty list, as
sigstore's ``AllOf`` policy does: a composite of nothing would pass vacuously.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from provisioner.errors import ProvisionerError, UsageError

SubjectT_contra = TypeVar("SubjectT_contra", contravariant=True)
SubjectT = TypeVar("SubjectT")


class Verdict(StrEnum):
    """Outcome of one check, from best to worst: skip, pass, warn, fail."""

    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    @property
    def severity(self) -> int:
        """Rank for aggregation: a skipped check weighs least, a failed one most."""
        return _SEVERITY[self]


_SEVERITY = {Verdict.SKIP: 0, Verdict.PASS: 1, Verdict.WARN: 2, Verdict.FAIL: 3}


@dataclass(frozen=True)
class CheckResult:
    """What one check found: its verdict, the evidence, and the fix when it did not pass."""

    check: str
    verdict: Verdict
    evidence: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """True unless the check failed (a warning or a skip does not block)."""
        return self.verdict is not Verdict.FAIL


class Check(Protocol[SubjectT_contra]):
    """One check: a name for the report and one method returning its result."""

    @property
    def name(self) -> str:
        """Short name shown in the report."""
        ...

    def run(self, subject: SubjectT_contra) -> CheckResult:
        """Look at ``subject`` and say whether it passes, and how to fix it if not."""
        ...


def aggregate(results: Iterable[CheckResult]) -> Verdict:
    """The worst verdict of ``results``; :attr:`Verdict.SKIP` when there are none."""
    return max((r.verdict for r in results), key=lambda v: v.severity, default=Verdict.SKIP)


class AllOf(Generic[SubjectT]):
    """Every check of a non-empty list, run in order against one subject.

    A check that raises a :class:`~provisioner.errors.ProvisionerError` (a lost SSH session, a
    refused API call) fails with the error's message as evidence and its hint as the fix; the
    remaining checks still run.
    """

    def __init__(self, checks: Sequence[Check[SubjectT]]) -> None:
        """Keep ``checks``.

        Raises:
            UsageError: when ``checks`` is empty.
        """
        if not checks:
            raise UsageError("no checks to run", hint="Pass at least one check.")
        self.checks: tuple[Check[SubjectT], ...] = tuple(checks)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the checks, in order."""
        return tuple(check.name for check in self.checks)

    def results(self, subject: SubjectT) -> tuple[CheckResult, ...]:
        """The result of every check, in order."""
        found: list[CheckResult] = []
        for check in self.checks:
            try:
                found.append(check.run(subject))
            except ProvisionerError as exc:
                found.append(CheckResult(check.name, Verdict.FAIL, exc.message, exc.hint or ""))
        return tuple(found)

    def skipped(self, reason: str) -> tuple[CheckResult, ...]:
        """A skip result for every check, when the subject could not be reached at all."""
        return tuple(CheckResult(name, Verdict.SKIP, reason) for name in self.names)
