"""One job from start to end, in gitlab-runner's stages.

prepare executor -> prepare environment -> get sources -> download artifacts -> step_script ->
after_script -> upload artifacts -> cleanup, then the final ``PUT /jobs/:id``. The trace says
what each stage did, with gitlab-runner's section markers and wording, so logs read (and are
diagnosed by ``runnerctl doctor``) like real ones.
"""

from __future__ import annotations

import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from provisioner.errors import GitLabError
from provisioner.sandbox_runner import artifacts as art
from provisioner.sandbox_runner.config import RunnerEntry
from provisioner.sandbox_runner.executors import Executor, JobFailure, environment_pairs
from provisioner.sandbox_runner.job import Job
from provisioner.sandbox_runner.process import ProcessOutcome
from provisioner.sandbox_runner.protocol import (
    PROTOCOL_VERSION,
    REVISION,
    JobClient,
    map_failure_reason,
    status_text,
)
from provisioner.sandbox_runner.sources import fetch_sources
from provisioner.sandbox_runner.trace import BOLD_GREEN, RESET, JobTrace, Masker

AFTER_SCRIPT_TIMEOUT = 300  # gitlab-runner's default after_script timeout
RUNNER_NAME = "runnerctl sandbox runner"


class JobState(StrEnum):
    """How a job ended, from the runner's side."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True)
class JobResult:
    """What happened to one job."""

    job_id: int
    name: str
    project_path: str
    runner: str
    state: JobState
    failure_reason: str | None
    exit_code: int | None
    started_at: datetime
    finished_at: datetime

    @property
    def duration(self) -> float:
        """Seconds from pick-up to the final report."""
        return (self.finished_at - self.started_at).total_seconds()


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration`` string: ``1h0m0s``, ``1m30s``, ``5s``."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def quote(value: str) -> str:
    """POSIX single-quoting."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _valid_name(key: str) -> bool:
    return key.replace("_", "a").isalnum() and not key[0].isdigit()


def render_script(
    commands: tuple[str, ...],
    *,
    exports: list[tuple[str, str]],
    workdir: str,
    errexit: bool = True,
) -> str:
    """A POSIX shell script: exports, ``cd``, then each command echoed as ``$ command``."""
    lines = ["(set -o pipefail) 2>/dev/null && set -o pipefail"]
    if errexit:
        lines.append("set -e")
    lines += [f"export {key}={quote(value)}" for key, value in exports if _valid_name(key)]
    lines.append(f"cd {quote(workdir)}")
    for command in commands:
        first, _, more = command.strip("\n").partition("\n")
        shown = f"$ {first}" + (" # collapsed multi-line command" if more else "")
        lines.append(f"printf '%s\\n' {quote(BOLD_GREEN + shown + RESET)}")
        lines.append(command)
    return "\n".join(lines) + "\n"


@dataclass
class JobContext:
    """Where and how a job runs (given by the runner service)."""

    entry: RunnerEntry
    client: JobClient
    executor: Executor
    system_id: str
    concurrent_id: int
    stop_reason: Callable[[], str | None]


class Build:
    """Runs one job and reports it."""

    def __init__(self, job: Job, ctx: JobContext) -> None:
        self.job = job
        self.ctx = ctx
        self.trace = JobTrace(
            ctx.client,
            job.id,
            job.token,
            Masker(job.masked_values, job.token_mask_prefixes),
            limit=ctx.entry.output_limit * 1024,
        )
        self.trace.masker.add(job.token)
        self.started = datetime.now(UTC)
        self.deadline = time.monotonic() + job.timeout

    # -- helpers ----------------------------------------------------------------------------

    def _should_stop(self) -> str | None:
        if self.trace.aborted.is_set():
            return "canceled"
        return self.ctx.stop_reason()

    def _exports(self) -> list[tuple[str, str]]:
        ex = self.ctx.executor
        entry = self.ctx.entry
        pairs: list[tuple[str, str]] = [
            ("CI_BUILDS_DIR", ex.builds_dir),
            ("CI_PROJECT_DIR", ex.project_dir),
            ("CI_CONCURRENT_ID", str(self.ctx.concurrent_id)),
            ("CI_CONCURRENT_PROJECT_ID", str(self.ctx.concurrent_id)),
            ("CI_RUNNER_SHORT_TOKEN", entry.short_token),
            ("CI_RUNNER_VERSION", PROTOCOL_VERSION),
            ("CI_RUNNER_REVISION", REVISION),
            ("CI_RUNNER_EXECUTABLE_ARCH", f"linux/{platform.machine()}"),
            ("CI_JOB_TIMEOUT", str(self.job.timeout)),
            ("CI_SERVER_TLS_CA_FILE", ""),
        ]
        if ex.kind == "docker":
            pairs.append(("CI_DISPOSABLE_ENVIRONMENT", "true"))
        else:
            pairs.append(("CI_SHARED_ENVIRONMENT", "true"))
        pairs += environment_pairs(entry.environment)
        ex.host_tmp_dir.mkdir(parents=True, exist_ok=True)
        for var in self.job.variables:
            if var.file:
                host_file = ex.host_tmp_dir / var.key
                host_file.write_text(var.value, encoding="utf-8")
                host_file.chmod(0o644 if ex.world_writable else 0o600)
                pairs.append((var.key, f"{ex.tmp_dir}/{var.key}"))
            else:
                pairs.append((var.key, var.value))
        return pairs

    def _script(self, name: str, commands: tuple[str, ...], *, errexit: bool = True) -> Path:
        ex = self.ctx.executor
        text = render_script(
            commands, exports=self._exports(), workdir=ex.project_dir, errexit=errexit
        )
        path = ex.host_tmp_dir / f"script_{name}.sh"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644 if ex.world_writable else 0o600)
        return path

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    # -- stages -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        ex = self.ctx.executor
        self.trace.section_start("prepare_executor", f'Preparing the "{ex.kind}" executor')
        ex.prepare(self.trace)
        if self.job.services:
            self.trace.warning(
                f"services are not started by the stand-in runner: {', '.join(self.job.services)}"
            )
        self.trace.section_end("prepare_executor")
        self.trace.section_start("prepare_script", "Preparing environment")
        self.trace.line(f"Running on {socket.gethostname()}...")
        self.trace.section_end("prepare_script")

    def _sources(self) -> ProcessOutcome:
        ex = self.ctx.executor
        self.trace.section_start("get_sources", "Getting source from Git repository")
        outcome = fetch_sources(
            self.job,
            host_dir=ex.host_project_dir,
            shown_dir=ex.project_dir,
            clone_url=self.ctx.entry.clone_url,
            base_env=ex.host_env(),
            trace=self.trace,
            timeout=self._remaining(),
            should_stop=self._should_stop,
            umask=0 if ex.world_writable else -1,
        )
        if ex.world_writable and ex.host_project_dir.exists():
            ex.host_project_dir.chmod(0o777)
        self.trace.section_end("get_sources")
        return outcome

    def _download(self) -> None:
        deps = [d for d in self.job.dependencies if d.has_artifacts]
        if not deps:
            return
        ex = self.ctx.executor
        self.trace.section_start("download_artifacts", "Downloading artifacts")
        for dep in deps:
            self.trace.line(f"Downloading artifacts for {dep.name} ({dep.id})...")
            with tempfile.TemporaryDirectory(prefix="runnerctl-artifacts-") as tmp:
                target = Path(tmp) / "artifacts.zip"
                try:
                    status = self.ctx.client.download_artifacts(dep.id, dep.token, target)
                except GitLabError as exc:
                    self.trace.error(
                        f"Downloading artifacts from coordinator... error  {exc.message}"
                    )
                    raise JobFailure("exit code 1", reason="script_failure", exit_code=1) from None
                short = self.job.token[:8]
                if status != 200:
                    word = {403: "forbidden", 404: "not found", 401: "unauthorized"}.get(
                        status, "failed"
                    )
                    self.trace.error(
                        f"Downloading artifacts from coordinator... {word}  id={dep.id} "
                        f"responseStatus={status_text(status)} status={status_text(status)} "
                        f"token={short}"
                    )
                    raise JobFailure("exit code 1", reason="script_failure", exit_code=1)
                self.trace.line(
                    f"Downloading artifacts from coordinator... ok        id={dep.id} "
                    f"responseStatus={status_text(200)} token={short}"
                )
                art.extract_zip(target, ex.host_project_dir, world_writable=ex.world_writable)
        self.trace.section_end("download_artifacts")

    def _run_step(self, name: str, title: str, commands: tuple[str, ...]) -> ProcessOutcome:
        self.trace.section_start(name, title)
        script = self._script(name, commands)
        outcome = self.ctx.executor.run_script(
            script, trace=self.trace, timeout=self._remaining(), should_stop=self._should_stop
        )
        self.trace.section_end(name)
        return outcome

    def _after_script(self) -> None:
        step = self.job.step("after_script")
        if step is None or not step.script or self.trace.aborted.is_set():
            return
        self.trace.section_start("after_script", "Running after_script")
        self.trace.line("Running after script...")
        script = self._script("after_script", step.script)
        outcome = self.ctx.executor.run_script(
            script,
            trace=self.trace,
            timeout=min(AFTER_SCRIPT_TIMEOUT, step.timeout),
            should_stop=self._should_stop,
        )
        if outcome.timed_out:
            self.trace.warning("after_script failed, but job will continue unaffected: timed out")
        elif outcome.exit_code != 0:
            self.trace.warning(
                f"after_script failed, but job will continue unaffected: exit code "
                f"{outcome.exit_code}"
            )
        self.trace.section_end("after_script")

    def _upload(self, succeeded: bool) -> bool:
        wanted = [
            a
            for a in self.job.artifacts
            if a.when in ("always", "on_success" if succeeded else "on_failure")
        ]
        if not wanted:
            return True
        ex = self.ctx.executor
        name = "upload_artifacts_on_success" if succeeded else "upload_artifacts_on_failure"
        self.trace.section_start(
            name, f"Uploading artifacts for {'successful' if succeeded else 'failed'} job"
        )
        ok = True
        for spec in wanted:
            self.trace.line("Uploading artifacts...")
            entries = art.collect(ex.host_project_dir, spec, self.trace.line, self.trace.warning)
            if not entries:
                self.trace.error("No files to upload")
                continue
            with tempfile.TemporaryDirectory(prefix="runnerctl-upload-") as tmp:
                archive = Path(tmp) / "artifacts"
                if spec.artifact_format == "gzip":
                    art.write_gzip(ex.host_project_dir, entries, archive)
                    filename = spec.name or f"{spec.artifact_type}.gz"
                else:
                    art.write_zip(ex.host_project_dir, entries, archive)
                    filename = "artifacts.zip" if spec.artifact_type == "archive" else spec.name
                try:
                    status = self.ctx.client.upload_artifacts(
                        self.job.id,
                        self.job.token,
                        archive,
                        filename=filename,
                        artifact_type=spec.artifact_type,
                        artifact_format=spec.artifact_format,
                        expire_in=spec.expire_in,
                    )
                except GitLabError as exc:
                    self.trace.warning(
                        f'Uploading artifacts as "{spec.artifact_type}" to coordinator... '
                        f"error  {exc.message}"
                    )
                    ok = False
                    continue
            line = (
                f'Uploading artifacts as "{spec.artifact_type}" to coordinator... '
                f"{status_text(status) if status == 201 else 'failed'}  id={self.job.id} "
                f"responseStatus={status_text(status)} token={self.job.token[:8]}"
            )
            if status == 201:
                self.trace.line(line)
            else:
                self.trace.warning(line)
                ok = False
        self.trace.section_end(name)
        return ok

    def _cleanup(self) -> None:
        ex = self.ctx.executor
        self.trace.section_start(
            "cleanup_file_variables", "Cleaning up project directory and file based variables"
        )
        try:
            ex.cleanup()
        finally:
            shutil.rmtree(ex.host_tmp_dir, ignore_errors=True)
        self.trace.section_end("cleanup_file_variables")

    # -- the whole job ----------------------------------------------------------------------

    def run(self) -> JobResult:
        """Run every stage, report the final state, and return the result."""
        entry = self.ctx.entry
        self.trace.line(
            f"Running with {RUNNER_NAME} (gitlab-runner {PROTOCOL_VERSION} job protocol; "
            "a rehearsal stand-in: against a real GitLab, gitlab-runner runs jobs)"
        )
        self.trace.line(f"  on {entry.name} {entry.short_token}, system ID: {self.ctx.system_id}")
        state = JobState.FAILED
        reason: str | None = None
        exit_code: int | None = None
        final = ""
        try:
            state, reason, exit_code, final = self._stages()
        except JobFailure as failure:
            reason, exit_code = failure.reason, failure.exit_code
            if failure.reason == "runner_system_failure":
                self.trace.error(f"Preparation failed: {failure.message}")
                final = f"Job failed (system failure): {failure.message}"
            else:
                final = f"Job failed: {failure.message}"
        except Exception as exc:  # a runner bug must still end the job, as a system failure
            reason = "runner_system_failure"
            final = f"Job failed (system failure): {type(exc).__name__}: {exc}"
        finally:
            try:
                self._cleanup()
            except Exception as exc:
                self.trace.warning(f"cleanup failed: {exc}")
        if self.trace.aborted.is_set() and state is not JobState.SUCCESS:
            state = JobState.CANCELED
            self.trace.error("Job failed: canceled")
        elif state is JobState.SUCCESS:
            self.trace.notice("Job succeeded")
        else:
            self.trace.error(final)
        data = self.trace.finish()
        if state is not JobState.CANCELED:
            sent_reason = map_failure_reason(reason, self.job.failure_reasons) if reason else None
            result = self.ctx.client.finish_job(
                self.job.id,
                self.job.token,
                state.value,
                data,
                failure_reason=sent_reason if state is JobState.FAILED else None,
                exit_code=exit_code if state is JobState.FAILED else None,
            )
            reason = sent_reason
            if result.job_status == "canceled":
                state = JobState.CANCELED
        return JobResult(
            job_id=self.job.id,
            name=self.job.name,
            project_path=self.job.project_path,
            runner=entry.name,
            state=state,
            failure_reason=reason if state is JobState.FAILED else None,
            exit_code=exit_code,
            started_at=self.started,
            finished_at=datetime.now(UTC),
        )

    def _stages(self) -> tuple[JobState, str | None, int | None, str]:
        self._prepare()
        outcome = self._sources()
        if outcome.exit_code != 0 or outcome.timed_out or outcome.stopped:
            return self._verdict(outcome)
        self._download()
        step = self.job.step("script")
        entry = self.ctx.entry
        # pre_build_script and post_build_script run in the same shell session as the script.
        commands = (
            *((entry.pre_build_script,) if entry.pre_build_script else ()),
            *(step.script if step is not None else ()),
            *((entry.post_build_script,) if entry.post_build_script else ()),
        )
        outcome = self._run_step(
            "step_script", 'Executing "step_script" stage of the job script', commands
        )
        if not outcome.stopped:
            self._after_script()
        succeeded = outcome.exit_code == 0 and not outcome.timed_out and not outcome.stopped
        if not outcome.stopped and not self._upload(succeeded) and succeeded:
            return JobState.FAILED, "script_failure", 1, "Job failed: exit code 1"
        return self._verdict(outcome)

    def _verdict(self, outcome: ProcessOutcome) -> tuple[JobState, str | None, int | None, str]:
        if outcome.timed_out:
            return (
                JobState.FAILED,
                "job_execution_timeout",
                None,
                f"Job failed: execution took longer than {go_duration(self.job.timeout)} seconds",
            )
        if outcome.stopped == "canceled":
            return JobState.CANCELED, None, None, "Job failed: canceled"
        if outcome.stopped:
            return (
                JobState.FAILED,
                "runner_system_failure",
                None,
                f"Job failed (system failure): aborted: {outcome.stopped}",
            )
        if outcome.exit_code != 0:
            return (
                JobState.FAILED,
                "script_failure",
                outcome.exit_code,
                f"Job failed: exit code {outcome.exit_code}",
            )
        return JobState.SUCCESS, None, None, ""
