"""doctor's entry points: a saved log, a job on GitLab, a group's failed jobs; and the probes.

Each returns a typed result the CLI renders; nothing here prints or exits.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from provisioner.checks import CheckResult, Verdict
from provisioner.doctor.catalogue import runner_log_catalogue
from provisioner.doctor.matcher import RUNNER_LOG, Finding, ProbeEvidence, classify
from provisioner.doctor.probes import Facts, Runner, gather, journal_lines, judge, run_probes
from provisioner.errors import HostError, ProvisionerError, UsageError
from provisioner.gitlab.jobs import JobDetail

if TYPE_CHECKING:
    from provisioner.gitlab.models import VerifyResult
    from provisioner.runner_config import Runner as RunnerEntry

_JOB_URL = re.compile(r"^https?://[^/]+/(?P<project>[^#\s]+?)/-/jobs/(?P<id>\d+)/?$")
_SHORT_REF = re.compile(r"^(?P<project>[^#\s]+/[^#\s]+)#(?P<id>\d+)$")


@dataclass(frozen=True)
class JobRef:
    """A job named on the command line: its project path and id."""

    project: str
    job_id: int

    @classmethod
    def parse(cls, text: str) -> JobRef:
        """A job URL (``…/group/project/-/jobs/42``) or ``GROUP/PROJECT#ID``.

        Raises:
            UsageError: for anything else.
        """
        for pattern in (_JOB_URL, _SHORT_REF):
            found = pattern.match(text.strip())
            if found:
                return cls(found.group("project"), int(found.group("id")))
        raise UsageError(
            f"not a job: {text!r}",
            hint="Pass a job URL (https://gitlab.example.com/grp/app/-/jobs/42), GROUP/PROJECT#ID, "
            "or --project P --job ID.",
        )


@dataclass(frozen=True)
class Diagnosis:
    """What doctor found for one log: the findings (best first) and the probes it ran."""

    source: str
    findings: tuple[Finding, ...]
    job: JobDetail | None = None
    lines: int = 0
    probes: tuple[CheckResult, ...] = ()
    runner: str | None = None

    @property
    def found(self) -> bool:
        """True when at least one known failure was found."""
        return bool(self.findings)


def _count_lines(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def diagnose_log(text: str, *, source: str, job: JobDetail | None = None) -> Diagnosis:
    """Classify a job log (offline)."""
    reason = job.failure_reason if job is not None else None
    return Diagnosis(
        source=source,
        findings=classify(text, failure_reason=reason),
        job=job,
        lines=_count_lines(text),
    )


class JobSource(Protocol):
    """What doctor needs from GitLab for one job."""

    def job_detail(self, project: str, job_id: int) -> JobDetail: ...

    def job_log(self, project: str, job_id: int) -> str: ...


def diagnose_job(ref: JobRef, *, gitlab: JobSource) -> Diagnosis:
    """Fetch a job and its log from GitLab and classify it, keyed on its ``failure_reason``."""
    job = gitlab.job_detail(ref.project, ref.job_id)
    text = gitlab.job_log(ref.project, ref.job_id)
    return diagnose_log(text, source=job.web_url or f"{ref.project}#{ref.job_id}", job=job)


# --------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class ProbePlan:
    """Where and what to probe: the runner's entry and the places to run the probe script."""

    entry: RunnerEntry
    host: Runner
    container: Runner | None = None
    verify: Callable[[str], VerifyResult] | None = None
    users: tuple[str, ...] = ()


def pick_runner(
    entries: Iterable[RunnerEntry],
    job: JobDetail | None,
    verify: Callable[[str], VerifyResult] | None,
) -> RunnerEntry:
    """The config.toml entry that ran ``job`` (by id, else by verifying tokens), else the first.

    Raises:
        UsageError: when config.toml has no runners.
    """
    runners = list(entries)
    if not runners:
        raise UsageError("config.toml has no [[runners]] entry to probe.")
    if job is None or job.runner_id is None:
        return runners[0]
    for entry in runners:
        if entry.id == job.runner_id:
            return entry
    if verify is not None:
        for entry in runners:
            if entry.token and verify(entry.token).runner_id == job.runner_id:
                return entry
    return runners[0]


def probe_request(entry: RunnerEntry, users: tuple[str, ...]) -> dict[str, Any]:
    """What the probe script looks at for ``entry`` (never its token)."""
    dirs = {"builds": entry.builds_dir, "cache": entry.cache_dir}
    return {
        "url": entry.url,
        "clone_url": entry.clone_url,
        "ca_file": entry.extra.get("tls-ca-file"),
        "dirs": {k: v for k, v in dirs.items() if v},
        "users": list(users),
        "socket": _socket_path(entry),
    }


#: The runner's systemd unit, and how much of its journal doctor reads.
RUNNER_UNIT = "gitlab-runner.service"
JOURNAL_LINES = 200
#: With a job's end time: its runner log from this long before it to a little after.
JOURNAL_BEFORE = timedelta(hours=1)
JOURNAL_AFTER = timedelta(minutes=5)


def journal_request(job: JobDetail | None) -> dict[str, Any]:
    """What the probe script reads of the runner's journal (around the job, when known)."""
    request: dict[str, Any] = {"unit": RUNNER_UNIT, "lines": JOURNAL_LINES}
    if job is not None and job.finished_at is not None:
        moment = job.finished_at.astimezone(UTC)
        request["since"] = f"{moment - JOURNAL_BEFORE:%Y-%m-%d %H:%M:%S} UTC"
        request["until"] = f"{moment + JOURNAL_AFTER:%Y-%m-%d %H:%M:%S} UTC"
    return request


def _socket_path(entry: RunnerEntry) -> str:
    host = entry.docker.host if entry.docker is not None else None
    if host and host.startswith("unix://"):
        return urlsplit(host).path
    return "/var/run/docker.sock"


def probe(diagnosis: Diagnosis, plan: ProbePlan) -> Diagnosis:
    """Run the probes on the runner host (and in a container for docker) and judge findings.

    The runner's own journal, read on the host, is matched against the catalogue's runner-log
    signatures; those findings follow the job log's, quoting the journal line.
    """
    request = probe_request(plan.entry, plan.users)
    places: list[Facts] = []
    tokens: dict[str, bool | None] = {}
    if plan.verify is not None and plan.entry.token:
        try:
            tokens[plan.entry.label] = plan.verify(plan.entry.token).valid
        except ProvisionerError:  # GitLab unreachable: the network probes say why
            tokens[plan.entry.label] = None
    host = gather(plan.host, {**request, "journal": journal_request(diagnosis.job)}, where="host")
    places.append(replace(host, token_checks=tokens))
    runner_findings = classify(
        "\n".join(journal_lines(host)), catalogue=runner_log_catalogue(), source=RUNNER_LOG
    )
    skipped: list[CheckResult] = []
    if plan.container is not None:
        try:
            places.append(gather(plan.container, request, where="container"))
        except HostError as exc:  # no container could run: say so, probe the host anyway
            reason = f"{exc.message}: {exc.hint}" if exc.hint else exc.message
            skipped.append(CheckResult("container", Verdict.SKIP, reason))
    results = (*(r for facts in places for r in run_probes(facts)), *skipped)
    findings = tuple(
        f.with_probes(
            [ProbeEvidence(name, ok, text) for name, ok, text in judge(f.signature.probes, results)]
        )
        for f in (*diagnosis.findings, *runner_findings)
    )
    return replace(diagnosis, findings=findings, probes=results, runner=plan.entry.label)


# --------------------------------------------------------------------------- group scan


@dataclass(frozen=True)
class GroupJob:
    """One failed job of a group scan and its best finding (None: no known failure)."""

    job: JobDetail
    finding: Finding | None


@dataclass(frozen=True)
class GroupReport:
    """Every failed job of the window, classified and counted."""

    group: str
    since: datetime | None
    jobs: tuple[GroupJob, ...]
    by_category: dict[str, int] = field(default_factory=dict)
    by_runner: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def runner_faults(self) -> int:
        """Failed jobs whose best finding blames the runner side rather than the code."""
        return sum(1 for j in self.jobs if j.finding and j.finding.category.runner_side)


class GroupSource(JobSource, Protocol):
    """What a group scan needs from GitLab."""

    def group_failed_jobs(self, group: str, *, since: datetime | None) -> Iterable[JobDetail]: ...


UNCLASSIFIED = "unclassified"


def scan_group(group: str, *, since: datetime | None, gitlab: GroupSource) -> GroupReport:
    """Classify every failed job of ``group`` (subgroups included) finished after ``since``."""
    found: list[GroupJob] = []
    for job in gitlab.group_failed_jobs(group, since=since):
        findings = classify(gitlab.job_log(job.project, job.id), failure_reason=job.failure_reason)
        found.append(GroupJob(job, findings[0] if findings else None))
    by_category: Counter[str] = Counter()
    by_runner: dict[str, Counter[str]] = {}
    for item in found:
        category = item.finding.category.value if item.finding else UNCLASSIFIED
        by_category[category] += 1
        runner = item.job.runner or (f"id {item.job.runner_id}" if item.job.runner_id else "?")
        by_runner.setdefault(runner, Counter())[category] += 1
    return GroupReport(
        group=group,
        since=since,
        jobs=tuple(found),
        by_category=dict(by_category.most_common()),
        by_runner={r: dict(c.most_common()) for r, c in sorted(by_runner.items())},
    )
