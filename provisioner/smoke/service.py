"""``runnerctl smoke``: push the smoke project, run its pipeline on a runner, check the results.

A failed or timed-out pipeline is a *result* (:class:`SmokeResult` with a status); a broken
precondition (no GitLab, no cosign, bad options) is an exception.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from hashlib import sha256
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from provisioner import joblog
from provisioner.errors import UsageError
from provisioner.events import NULL_REPORTER, Reporter
from provisioner.gitlab.models import (
    DistFile,
    Job,
    JobStatus,
    Namespace,
    Package,
    Pipeline,
    PipelineStatus,
    Project,
    Variable,
)
from provisioner.images.wheelhouse import normalize  # PEP 503, as the jobs compute it
from provisioner.smoke import signing
from provisioner.smoke.events import (
    CheckFinished,
    JobsChanged,
    KeyPairReady,
    OldVersionsDeleted,
    PipelineCreated,
    ProjectReady,
    SmokeEvent,
    TemplateSynced,
)
from provisioner.smoke.template import MARKER_FILE, template_digest, template_files

DEFAULT_IMAGE = "runnerctl/python:3.11"
DEFAULT_PROJECT_NAME = "runnerctl-smoke"
VERSION_BASE = "0.1.0"  # the version_base input in the template's .gitlab-ci.yml
STAGES = (
    "test",
    "build",
    "sign",
    "verify",
    "publish",
    "publish_signatures",
    "consumer_verify",
)
TERMINAL = frozenset(s for s in PipelineStatus if s.finished)
KEYLESS_HOSTS = frozenset({"gitlab.com"})
STUCK_TEXT = (
    "This job is stuck because you don't have any active runners online or available with "
    "any of these tags assigned to them: {tags}"
)
TRACE_TAIL_LINES = 40


class SmokeStatus(StrEnum):
    """How a smoke run ended."""

    PASSED = "passed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"  # Ctrl-C while following: the pipeline was canceled


class SigningMode(StrEnum):
    """Key pair (offline, the default) or keyless (Sigstore public good, gitlab.com only)."""

    KEY = "key"
    KEYLESS = "keyless"


@dataclass(frozen=True)
class SmokeRequest:
    """What to smoke-test and how."""

    tag: str
    project: str | None = None
    signing: SigningMode = SigningMode.KEY
    image: str = DEFAULT_IMAGE
    timeout: float = 900.0
    keep: int = 5
    variables: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 1.0


@dataclass(frozen=True)
class StageOutcome:
    """One pipeline stage: its status, wall time and jobs."""

    name: str
    status: str
    seconds: float | None
    jobs: tuple[str, ...]


@dataclass(frozen=True)
class CheckOutcome:
    """One independent check runnerctl made after the pipeline went green."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class SmokeResult:
    """Everything a smoke run found out."""

    status: SmokeStatus
    project: str
    project_url: str
    pipeline_id: int
    pipeline_url: str
    package_name: str
    version: str
    stages: tuple[StageOutcome, ...]
    checks: tuple[CheckOutcome, ...]
    elapsed: float
    time_to_green: float | None
    message: str
    failing_job: str | None = None
    trace_tail: str = ""
    pypi_index_url: str = ""
    generic_url: str = ""
    key_created: bool = False
    pushed: bool = False
    deleted_versions: tuple[str, ...] = ()


class SmokeAPI(Protocol):
    """The GitLab calls a smoke run makes (``provisioner.gitlab.client.GitLabAPI`` has them)."""

    @property
    def settings(self) -> object: ...

    def current_username(self) -> str: ...
    def find_project(self, path: str) -> Project | None: ...
    def create_project(self, path: str, *, namespace_id: int | None = None) -> Project: ...
    def resolve_group(self, path_or_id: str) -> Namespace: ...
    def read_file(self, project_id: int, file_path: str, ref: str) -> str | None: ...
    def list_tree(self, project_id: int, ref: str) -> frozenset[str]: ...
    def commit_files(
        self,
        project_id: int,
        *,
        branch: str,
        message: str,
        files: Mapping[str, str],
        existing: frozenset[str] = frozenset(),
    ) -> str: ...
    def get_variable(self, project_id: int, key: str) -> Variable | None: ...
    def set_variable(self, project_id: int, variable: Variable) -> None: ...
    def create_pipeline(
        self, project_id: int, ref: str, variables: Mapping[str, str] | None = None
    ) -> Pipeline: ...
    def get_pipeline(self, project_id: int, pipeline_id: int) -> Pipeline: ...
    def cancel_pipeline(self, project_id: int, pipeline_id: int) -> None: ...
    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> tuple[Job, ...]: ...
    def job_trace(self, project_id: int, job_id: int) -> str: ...
    def list_packages(
        self, project_id: int, *, package_name: str | None = None, package_type: str | None = None
    ) -> tuple[Package, ...]: ...
    def delete_package(self, project_id: int, package_id: int) -> bool: ...
    def download_generic(
        self, project_id: int, package_name: str, version: str, file_name: str
    ) -> bytes | None: ...
    def pypi_files(self, project_id: int, package_name: str) -> tuple[DistFile, ...]: ...
    def download_url(self, url: str) -> bytes: ...


def _ignore(_secret: str) -> None:
    """No one to tell about secrets."""


def check_request(request: SmokeRequest, gitlab_url: str) -> None:
    """Refuse bad options before anything changes in GitLab."""
    if not request.tag.strip():
        raise UsageError(
            "No runner tag given.",
            hint="Pass --tag with a tag of the runner under test (or set SMOKE_RUNNER_TAG).",
        )
    if request.keep < 1:
        raise UsageError("--keep must be at least 1.", hint="Keep the last N versions, N >= 1.")
    if request.timeout <= 0:
        raise UsageError("--timeout must be positive.", hint="For example --timeout 15m.")
    host = urlsplit(gitlab_url).hostname or ""
    if request.signing is SigningMode.KEYLESS and host not in KEYLESS_HOSTS:
        raise UsageError(
            f"Keyless signing cannot run against {host}: the public Sigstore (Fulcio) trusts "
            "GitLab OIDC tokens from gitlab.com only, and it needs the internet.",
            hint="Use --signing key (the default): a cosign key pair kept in CI/CD variables.",
        )


def run_smoke(
    request: SmokeRequest,
    *,
    gitlab: SmokeAPI,
    gitlab_url: str,
    report: Reporter[SmokeEvent] = NULL_REPORTER,
    on_secret: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    """Run the smoke pipeline once and check what it published.

    Args:
        request: what to run.
        gitlab: the GitLab adapter.
        gitlab_url: GitLab's base URL (for the registry URLs in the result).
        report: told about progress (:mod:`provisioner.smoke.events`).
        on_secret: told about every secret this run creates (for output redaction).
        clock: monotonic seconds (tests).
        sleep: waits between polls (tests).
    """
    secret = on_secret or _ignore
    check_request(request, gitlab_url)
    started = clock()
    project = _ensure_project(request, gitlab, report)
    branch = project.default_branch or "main"
    public_pem, key_created = _ensure_keys(request, project, gitlab, report, secret)
    pushed = _push_template(project, branch, gitlab, report)
    variables = {
        "SMOKE_RUNNER_TAG": request.tag,
        "PYTHON_IMAGE": request.image,
        "SMOKE_SIGNING": request.signing.value,
        **request.variables,
    }
    triggered = clock()
    pipeline = gitlab.create_pipeline(project.id, branch, variables)
    report(PipelineCreated(pipeline.id, pipeline.web_url))
    pipeline, jobs, ended = _follow(
        request,
        project=project,
        pipeline=pipeline,
        gitlab=gitlab,
        report=report,
        clock=clock,
        sleep=sleep,
    )
    finished = clock()
    name = normalize(project.path_with_namespace.rsplit("/", 1)[-1])
    version = f"{VERSION_BASE}.dev{pipeline.iid}"
    api = f"{gitlab_url.rstrip('/')}/api/v4/projects/{project.id}/packages"
    base = SmokeResult(
        status=SmokeStatus.FAILED,
        project=project.path_with_namespace,
        project_url=project.web_url,
        pipeline_id=pipeline.id,
        pipeline_url=pipeline.web_url,
        package_name=name,
        version=version,
        stages=_stages(jobs),
        checks=(),
        elapsed=round(finished - started, 2),
        time_to_green=None,
        message="",
        pypi_index_url=f"{api}/pypi/simple/{name}/",
        generic_url=f"{api}/generic/{name}/{version}/",
        key_created=key_created,
        pushed=pushed,
    )
    if ended is _Ended.INTERRUPTED:
        return replace(
            base,
            status=SmokeStatus.INTERRUPTED,
            message=f"pipeline #{pipeline.id} canceled",
        )
    if ended is _Ended.TIMED_OUT:
        waiting = [j for j in jobs if j.status in (JobStatus.CREATED, JobStatus.PENDING)]
        running = [j for j in jobs if j.status is JobStatus.RUNNING]
        if running or not waiting:
            message = (
                f"The pipeline did not finish within {request.timeout:.0f} s "
                f"(still running: {', '.join(j.name for j in running) or 'none'}); cancelled."
            )
        else:
            message = (
                f"No runner picked up the job {waiting[0].name!r} within "
                f"{request.timeout:.0f} s. " + STUCK_TEXT.format(tags=request.tag)
            )
        return replace(base, status=SmokeStatus.TIMED_OUT, message=message)
    if pipeline.status is not PipelineStatus.SUCCESS:
        failing = next((j for j in jobs if j.status is JobStatus.FAILED), None)
        tail = ""
        if failing is not None:
            tail = joblog.tail(gitlab.job_trace(project.id, failing.id), TRACE_TAIL_LINES)
        what = f"job {failing.name!r} ({failing.stage})" if failing else "a job"
        return replace(
            base,
            message=f"Pipeline #{pipeline.id} {pipeline.status}: {what} failed.",
            failing_job=failing.name if failing else None,
            trace_tail=tail,
        )
    time_to_green = round(finished - triggered, 2)
    checks = _checks(
        request,
        project=project,
        name=name,
        version=version,
        public_pem=public_pem,
        gitlab=gitlab,
        report=report,
    )
    deleted = _prune(project, name, request.keep, gitlab, report)
    ok = all(c.passed for c in checks)
    failed_checks = [c.name for c in checks if not c.passed]
    return replace(
        base,
        status=SmokeStatus.PASSED if ok else SmokeStatus.FAILED,
        checks=tuple(checks),
        time_to_green=time_to_green,
        message=(
            f"Pipeline #{pipeline.id} green in {time_to_green:.1f} s; every check passed."
            if ok
            else f"Pipeline #{pipeline.id} green, but checks failed: {', '.join(failed_checks)}."
        ),
        deleted_versions=deleted,
    )


# -- steps -----------------------------------------------------------------------------------


def _ensure_project(
    request: SmokeRequest, gitlab: SmokeAPI, report: Reporter[SmokeEvent]
) -> Project:
    path = request.project
    username: str | None = None
    if not path:
        username = gitlab.current_username()
        path = f"{username}/{DEFAULT_PROJECT_NAME}"
    found = gitlab.find_project(path)
    if found is not None:
        report(ProjectReady(found.path_with_namespace, created=False))
        return found
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    namespace_id: int | None = None
    if parent:
        username = username or gitlab.current_username()
        if parent != username:
            namespace_id = gitlab.resolve_group(parent).id
    project = gitlab.create_project(path, namespace_id=namespace_id)
    report(ProjectReady(project.path_with_namespace, created=True))
    return project


def _ensure_keys(
    request: SmokeRequest,
    project: Project,
    gitlab: SmokeAPI,
    report: Reporter[SmokeEvent],
    secret: Callable[[str], None],
) -> tuple[str, bool]:
    if request.signing is SigningMode.KEYLESS:
        return "", False
    current = {
        key: gitlab.get_variable(project.id, key)
        for key in ("COSIGN_PRIVATE_KEY", "COSIGN_PUBLIC_KEY", "COSIGN_PASSWORD")
    }
    if all(current.values()):
        public = current["COSIGN_PUBLIC_KEY"]
        assert public is not None
        report(KeyPairReady(generated=False))
        return public.value, False
    pair = signing.generate_key_pair()
    secret(pair.password)
    gitlab.set_variable(
        project.id, Variable("COSIGN_PRIVATE_KEY", pair.private_pem, variable_type="file")
    )
    gitlab.set_variable(
        project.id, Variable("COSIGN_PUBLIC_KEY", pair.public_pem, variable_type="file")
    )
    gitlab.set_variable(project.id, Variable("COSIGN_PASSWORD", pair.password, masked=True))
    report(KeyPairReady(generated=True))
    return pair.public_pem, True


def _push_template(
    project: Project, branch: str, gitlab: SmokeAPI, report: Reporter[SmokeEvent]
) -> bool:
    files = template_files()
    digest = template_digest(files)
    if (gitlab.read_file(project.id, MARKER_FILE, branch) or "").strip() == digest:
        report(TemplateSynced(pushed=False))
        return False
    existing = gitlab.list_tree(project.id, branch)
    sha = gitlab.commit_files(
        project.id,
        branch=branch,
        message="runnerctl smoke: update the smoke project",
        files={**files, MARKER_FILE: digest + "\n"},
        existing=existing,
    )
    report(TemplateSynced(pushed=True, files=len(files), commit=sha))
    return True


class _Ended(StrEnum):
    """How following the pipeline ended."""

    FINISHED = "finished"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"


def _follow(
    request: SmokeRequest,
    *,
    project: Project,
    pipeline: Pipeline,
    gitlab: SmokeAPI,
    report: Reporter[SmokeEvent],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> tuple[Pipeline, tuple[Job, ...], _Ended]:
    deadline = clock() + request.timeout
    last: tuple[tuple[str, str], ...] = ()
    jobs: tuple[Job, ...] = ()
    try:
        while True:
            pipeline = gitlab.get_pipeline(project.id, pipeline.id)
            jobs = gitlab.pipeline_jobs(project.id, pipeline.id)
            state = tuple((j.name, j.status) for j in jobs)
            if state != last:
                report(JobsChanged(jobs))
                last = state
            if pipeline.status in TERMINAL:
                return pipeline, jobs, _Ended.FINISHED
            if clock() >= deadline:
                gitlab.cancel_pipeline(project.id, pipeline.id)
                return pipeline, jobs, _Ended.TIMED_OUT
            sleep(request.poll_interval)
    except KeyboardInterrupt:
        # Ctrl-C: the pipeline must not go on to publish; what ran so far is the result.
        gitlab.cancel_pipeline(project.id, pipeline.id)
        return pipeline, jobs, _Ended.INTERRUPTED


def _stages(jobs: tuple[Job, ...]) -> tuple[StageOutcome, ...]:
    order = [s for s in STAGES if any(j.stage == s for j in jobs)]
    order += sorted({j.stage for j in jobs} - set(order))
    stages = []
    for stage in order:
        members = [j for j in jobs if j.stage == stage]
        statuses = {j.status for j in members}
        status = next(
            (s for s in ("failed", "running", "pending", "created", "canceled") if s in statuses),
            "success" if "success" in statuses else members[0].status,
        )
        starts = [j.started_at for j in members if j.started_at]
        ends = [j.finished_at for j in members if j.finished_at]
        seconds: float | None = None
        if starts and ends and len(ends) == len(members):
            seconds = round((max(ends) - min(starts)).total_seconds(), 2)
        elif any(j.duration is not None for j in members):
            seconds = round(sum(j.duration or 0.0 for j in members), 2)
        stages.append(StageOutcome(stage, status, seconds, tuple(j.name for j in members)))
    return tuple(stages)


# -- independent checks ----------------------------------------------------------------------


def _checks(
    request: SmokeRequest,
    *,
    project: Project,
    name: str,
    version: str,
    public_pem: str,
    gitlab: SmokeAPI,
    report: Reporter[SmokeEvent],
) -> list[CheckOutcome]:
    checks: list[CheckOutcome] = []
    files = [
        f
        for f in gitlab.pypi_files(project.id, name)
        if f"-{version}" in f.filename and f.filename.endswith((".whl", ".tar.gz"))
    ]
    wheels = [f for f in files if f.filename.endswith(".whl")]
    sdists = [f for f in files if f.filename.endswith(".tar.gz")]
    listed = any(p.version == version for p in gitlab.list_packages(project.id, package_name=name))
    checks.append(
        CheckOutcome(
            "pypi registry",
            bool(wheels and sdists and listed),
            f"{name} {version}: {', '.join(f.filename for f in files) or 'no files'}",
        )
    )
    report(CheckFinished(checks[-1].name, checks[-1].passed))

    signatures: dict[str, dict[str, bytes]] = {}
    missing: list[str] = []
    for dist in files:
        for ext in ("sig", "bundle"):
            data = gitlab.download_generic(project.id, name, version, f"{dist.filename}.{ext}")
            if data is None:
                missing.append(f"{dist.filename}.{ext}")
            else:
                signatures.setdefault(dist.filename, {})[ext] = data
    if request.signing is SigningMode.KEY:
        pub = gitlab.download_generic(project.id, name, version, "cosign.pub")
        if pub is None or pub.decode(errors="replace").strip() != public_pem.strip():
            missing.append("cosign.pub (absent or not the project's key)")
    checks.append(
        CheckOutcome(
            "generic registry",
            bool(files) and not missing,
            f"missing: {', '.join(missing)}"
            if missing
            else f"{2 * len(files)} signatures and cosign.pub",
        )
    )
    report(CheckFinished(checks[-1].name, checks[-1].passed))

    if request.signing is SigningMode.KEYLESS:
        detail = "not run locally: keyless bundles are verified against Sigstore's trust root"
        checks.append(CheckOutcome("local verification", True, detail))
        return checks
    checks.append(_verify_locally(files, signatures, public_pem, gitlab))
    report(CheckFinished(checks[-1].name, checks[-1].passed))
    checks.append(_tamper_rejected(wheels, signatures, public_pem, gitlab))
    report(CheckFinished(checks[-1].name, checks[-1].passed))
    return checks


def _verify_locally(
    files: list[DistFile],
    signatures: dict[str, dict[str, bytes]],
    public_pem: str,
    gitlab: SmokeAPI,
) -> CheckOutcome:
    if not files:
        return CheckOutcome("local verification", False, "nothing to verify")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="runnerctl-smoke-") as tmp:
        for dist in files:
            blob = gitlab.download_url(dist.url)
            if sha256(blob).hexdigest() != dist.sha256:
                problems.append(f"{dist.filename}: sha256 differs from the index")
                continue
            sigs = signatures.get(dist.filename, {})
            if set(sigs) != {"sig", "bundle"}:
                problems.append(f"{dist.filename}: signatures missing")
                continue
            path = Path(tmp, dist.filename)
            path.write_bytes(blob)
            Path(tmp, f"{dist.filename}.sig").write_bytes(sigs["sig"])
            Path(tmp, f"{dist.filename}.bundle").write_bytes(sigs["bundle"])
            by_sig = signing.cosign_verify(
                public_pem, path, signature=Path(tmp, f"{dist.filename}.sig")
            )
            by_bundle = signing.cosign_verify(
                public_pem, path, bundle=Path(tmp, f"{dist.filename}.bundle")
            )
            for how, (ok, words) in (("cosign .sig", by_sig), ("cosign bundle", by_bundle)):
                if not ok:
                    problems.append(f"{dist.filename}: {how}: {words}")
            for ext in ("sig", "bundle"):
                if not signing.python_verify(public_pem, blob, sigs[ext]):
                    problems.append(f"{dist.filename}: pure-Python check of the .{ext} failed")
    detail = (
        "; ".join(problems)
        if problems
        else f"{len(files)} files: cosign (.sig and bundle) and pure Python agree"
    )
    return CheckOutcome("local verification", not problems, detail)


def _tamper_rejected(
    wheels: list[DistFile],
    signatures: dict[str, dict[str, bytes]],
    public_pem: str,
    gitlab: SmokeAPI,
) -> CheckOutcome:
    name = "altered copy rejected"
    if not wheels or "sig" not in signatures.get(wheels[0].filename, {}):
        return CheckOutcome(name, False, "no signed wheel to alter")
    wheel = wheels[0]
    altered = gitlab.download_url(wheel.url) + b"\0altered"
    sig = signatures[wheel.filename]["sig"]
    with tempfile.TemporaryDirectory(prefix="runnerctl-smoke-") as tmp:
        path = Path(tmp, wheel.filename)
        path.write_bytes(altered)
        Path(tmp, "x.sig").write_bytes(sig)
        cosign_ok, _ = signing.cosign_verify(public_pem, path, signature=Path(tmp, "x.sig"))
    python_ok = signing.python_verify(public_pem, altered, sig)
    rejected = not cosign_ok and not python_ok
    detail = (
        "cosign and the pure-Python check both reject an altered wheel"
        if rejected
        else f"an altered wheel verified (cosign: {cosign_ok}, python: {python_ok})"
    )
    return CheckOutcome(name, rejected, detail)


# -- retention -------------------------------------------------------------------------------


def _dev_number(version: str) -> int:
    match = re.search(r"\.dev(\d+)$", version)
    return int(match.group(1)) if match else -1


def _prune(
    project: Project, name: str, keep: int, gitlab: SmokeAPI, report: Reporter[SmokeEvent]
) -> tuple[str, ...]:
    packages = [
        p for p in gitlab.list_packages(project.id, package_name=name) if normalize(p.name) == name
    ]
    versions = sorted({p.version for p in packages}, key=_dev_number, reverse=True)
    old = versions[keep:]
    for package in packages:
        if package.version in old:
            gitlab.delete_package(project.id, package.id)
    if old:
        report(OldVersionsDeleted(len(old), keep))
    return tuple(sorted(old, key=_dev_number))


# -- presentation helpers (pure) ---------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_timeout(text: str) -> float:
    """``15m``, ``90s``, ``1h`` or plain seconds; raise UsageError otherwise."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(
            f"Cannot read the timeout {text!r}.", hint="Use seconds or a unit: 90s, 15m, 1h."
        )
    factor = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * factor


def how_to_look(result: SmokeResult) -> tuple[str, ...]:
    """Commands a newcomer can paste to see the package and its signatures.

    The token stays in ``$GITLAB_TOKEN`` (pip asks for it: user ``any``, the token as password),
    so none of these lines carries a secret.
    """
    project_id = result.pypi_index_url.split("/projects/", 1)[-1].split("/", 1)[0]
    base = result.pypi_index_url.split("/api/v4/", 1)[0]
    index = result.pypi_index_url.rsplit("/", 2)[0]
    return (
        f'curl -u "any:$GITLAB_TOKEN" {result.pypi_index_url}',
        f'curl -u "any:$GITLAB_TOKEN" -O {result.generic_url}cosign.pub',
        f"pip download --no-deps --index-url {index} {result.package_name}=={result.version}"
        "   # user any, the token as password",
        f"python -c \"import gitlab, os; p = gitlab.Gitlab('{base}', "
        f"private_token=os.environ['GITLAB_TOKEN']).projects.get({project_id}); "
        f'print([(x.name, x.version, x.package_type) for x in p.packages.list()])"',
        f'curl -u "any:$GITLAB_TOKEN" -O {result.generic_url}<file>.sig   # then:',
        "cosign verify-blob --key cosign.pub --insecure-ignore-tlog --signature <file>.sig <file>",
    )


def pipeline_api_url(result: SmokeResult) -> str:
    """The smoke pipeline's jobs in the REST API: served by GitLab and by the sandbox alike.

    The pipeline's web URL is a page only GitLab's UI serves; the sandbox has no UI.
    """
    from urllib.parse import quote

    base = result.project_url.removesuffix("/" + result.project)
    return (
        f"{base}/api/v4/projects/{quote(result.project, safe='')}"
        f"/pipelines/{result.pipeline_id}/jobs"
    )
