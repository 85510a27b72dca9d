"""The offline rehearsal behind ``runnerctl demo`` and ``make demo``.

It walks the journey a newcomer takes, on one machine with no registry and no GitLab:
Docker answers, the job image exists (built from a Debian mirror when missing), a GitLab
sandbox runs, a docker-executor runner with a pip-cache volume is registered into a demo
``config.toml`` (twice, to show the second run changes nothing), and that file validates and
passes the security lint. Then the stand-in runner starts on that config.toml and the smoke
pipeline runs on it: test, build, sign, verify, publish, publish the signatures and verify as a
consumer; runnerctl then checks the registries and the signatures itself. What the demo
started is stopped at the end unless it is asked to keep running.

Everything is injected, so tests can drive the same path with their own pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from provisioner.errors import ProvisionerError, SandboxError, SmokeError
from provisioner.events import Reporter, StepFinished
from provisioner.registration import DockerOptions, Executor, ExecutorConfig, parse_scope
from provisioner.registration.service import (
    Action,
    RegisterRequest,
    RunnerAPI,
    register,
)
from provisioner.runner_config import (
    ConfigDocument,
    ConfigStore,
    Severity,
    at_or_above,
    lint_document,
    validate_text,
)
from provisioner.smoke import SmokeResult, SmokeStatus
from provisioner.smoke.service import pipeline_api_url

DEMO_RUNNER_NAME = "runnerctl-demo-docker"
DEMO_RUNNER_TAG = "runnerctl-demo"
DEMO_PIP_CACHE_VOLUME = "runnerctl-demo-pip-cache"
DEMO_SMOKE_PROJECT = "root/runnerctl-smoke"
# Job containers reach the sandbox on 127.0.0.1 through the host's network, as the stand-in
# runner's docker executor documents for a loopback GitLab.
DEMO_NETWORK_MODE = "host"


class StepStatus(StrEnum):
    """How one demo step ended."""

    DONE = "done"
    REUSED = "reused"


@dataclass(frozen=True)
class DemoStep(StepFinished[StepStatus]):
    """One step of the rehearsal, as shown to the user."""


@dataclass(frozen=True)
class DemoResult:
    """The whole rehearsal: its steps and where to look afterwards."""

    steps: tuple[DemoStep, ...]
    gitlab_url: str
    config_path: Path
    data_dir: Path
    image: str
    kept_running: bool
    smoke: SmokeResult | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """The job image the demo runner uses, and whether this run had to build it."""

    tag: str
    built: bool


class Sandbox(Protocol):
    """A running GitLab sandbox (``provisioner.sandbox.start_background`` returns one)."""

    @property
    def url(self) -> str: ...

    @property
    def root_token(self) -> str: ...

    def stop(self) -> None: ...


class Runner(Protocol):
    """A running stand-in runner (``provisioner.sandbox_runner.start_background`` returns one)."""

    def stop(self, *, force: bool = False, timeout: float | None = None) -> object: ...


@dataclass(frozen=True)
class DemoPieces:
    """The real (or test) parts the rehearsal drives."""

    docker_version: Callable[[], str]
    ensure_image: Callable[[], ImageOutcome]
    start_sandbox: Callable[[Path], Sandbox]
    connect: Callable[[str, str], RunnerAPI]
    on_secret: Callable[[str], None]
    start_runner: Callable[[Path], Runner]
    smoke: Callable[[str, str], SmokeResult]


def run_demo(
    data_dir: Path,
    *,
    pieces: DemoPieces,
    on_step: Reporter[DemoStep] | None = None,
    keep_running: bool = False,
) -> DemoResult:
    """Run the rehearsal in ``data_dir`` (created if missing); raise on the first broken step.

    Args:
        data_dir: where the sandbox state and the demo config.toml live; a second run reuses it.
        pieces: Docker, image, sandbox and GitLab wiring.
        on_step: told about each step as soon as it ends.
        keep_running: leave the sandbox up (the caller stops it later).
    """
    _prepare(data_dir)
    steps: list[DemoStep] = []

    def record(step: DemoStep) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    started = time.monotonic()
    version = pieces.docker_version()
    record(_step("docker", StepStatus.DONE, f"Docker Engine {version} answers", started))

    started = time.monotonic()
    image = pieces.ensure_image()
    status = StepStatus.DONE if image.built else StepStatus.REUSED
    verb = "built" if image.built else "already present"
    record(_step("job image", status, f"{image.tag} {verb}", started))

    started = time.monotonic()
    sandbox = pieces.start_sandbox(data_dir / "gitlab")
    pieces.on_secret(sandbox.root_token)
    config_path = data_dir / "config.toml"
    runner: Runner | None = None
    smoke: SmokeResult | None = None
    try:
        record(_step("sandbox", StepStatus.DONE, f"GitLab sandbox at {sandbox.url}", started))
        moved_from = _follow_the_port(config_path, sandbox.url)
        if moved_from:
            detail = f"runner entry moved from {moved_from} to {sandbox.url}"
            record(_step("runner entry", StepStatus.DONE, detail, started))
        _register_twice(sandbox, config_path, image.tag, pieces, record)
        _check_config(config_path, record)

        started = time.monotonic()
        runner = pieces.start_runner(config_path)
        detail = (
            f"stand-in runner polling for jobs tagged {DEMO_RUNNER_TAG} "
            f"(docker executor, {DEMO_NETWORK_MODE} network)"
        )
        record(_step("runner", StepStatus.DONE, detail, started))

        started = time.monotonic()
        smoke = pieces.smoke(sandbox.url, sandbox.root_token)
        if smoke.status is not SmokeStatus.PASSED:
            raise SmokeError(
                f"the smoke pipeline did not pass: {smoke.message}",
                hint=f"see {pipeline_api_url(smoke)} (the sandbox has no web UI); the failing "
                "job's log: "
                f"{smoke.trace_tail.splitlines()[-1] if smoke.trace_tail else 'none'}",
            )
        passed = sum(c.passed for c in smoke.checks)
        detail = (
            f"pipeline #{smoke.pipeline_id} green in {smoke.time_to_green or 0:.1f} s, "
            f"{passed}/{len(smoke.checks)} checks passed ({smoke.package_name} {smoke.version})"
        )
        record(_step("smoke pipeline", StepStatus.DONE, detail, started))
    finally:
        if not keep_running:
            if runner is not None:
                runner.stop(timeout=60)
            sandbox.stop()
    return DemoResult(
        steps=tuple(steps),
        gitlab_url=sandbox.url,
        config_path=config_path,
        data_dir=data_dir,
        image=image.tag,
        kept_running=keep_running,
        smoke=smoke,
    )


def _prepare(data_dir: Path) -> None:
    """Create ``data_dir`` (a writable directory) or say why it cannot be used."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".runnerctl-write-test"
        probe.touch()
        probe.unlink()
    except FileExistsError:
        raise SandboxError(
            f"--data-dir {data_dir} is a file, not a directory.",
            hint="Pass a directory (it is created if missing), e.g. --data-dir ~/runnerctl-demo.",
        ) from None
    except OSError as exc:
        raise SandboxError(
            f"Cannot use --data-dir {data_dir}: {exc.strerror or exc}.",
            hint="Pass a directory you can write to, e.g. --data-dir ~/runnerctl-demo.",
        ) from None


def _register_twice(
    sandbox: Sandbox,
    config_path: Path,
    image: str,
    pieces: DemoPieces,
    record: Callable[[DemoStep], None],
) -> None:
    request = RegisterRequest(
        name=DEMO_RUNNER_NAME,
        scope=parse_scope("instance"),
        gitlab_url=sandbox.url,
        executor=ExecutorConfig(
            Executor.DOCKER,
            docker=DockerOptions(image=image, pip_cache_volume=DEMO_PIP_CACHE_VOLUME),
        ),
        tags=(DEMO_RUNNER_TAG,),
    )
    store = ConfigStore(config_path)
    for attempt in ("register", "register again"):
        started = time.monotonic()
        gitlab = pieces.connect(sandbox.url, sandbox.root_token)
        result = register(request, gitlab=gitlab, store=store, on_secret=pieces.on_secret)
        reused = result.action is Action.UNCHANGED and not result.config_changed
        detail = (
            f"runner #{result.runner_id} {result.action.value}, "
            f"{'config.toml unchanged' if not result.config_changed else 'config.toml written'}, "
            f"{result.requests} API requests"
        )
        if attempt == "register again" and not reused:
            raise ProvisionerError(
                f"the second registration was not a no-op: {detail}",
                hint="this is a bug in runnerctl's idempotency: please report it with --debug",
            )
        record(_step(attempt, StepStatus.REUSED if reused else StepStatus.DONE, detail, started))
    store.update(_host_network)


def _follow_the_port(config_path: Path, url: str) -> str | None:
    """Point the demo runner's entry at ``url``; return the URL it had, if that differed.

    A data dir reused with another ``--port`` holds the same sandbox state, so the runner and
    its token are still valid: only the address changed. Without this, register would add a
    second entry for the new URL and leave the old one pointing at a port nobody listens on.
    """
    if not config_path.is_file():
        return None
    moved: list[str] = []

    def move(doc: ConfigDocument) -> None:
        for table in doc.runner_tables():
            old = str(table.get("url", ""))
            if table.get("name") == DEMO_RUNNER_NAME and old.rstrip("/") != url.rstrip("/"):
                table["url"] = url
                moved.append(old)

    ConfigStore(config_path).update(move)
    return moved[0] if moved else None


def _host_network(doc: ConfigDocument) -> None:
    """Job containers must reach the loopback sandbox; set once, so a rerun changes nothing."""
    for table in doc.runner_tables():
        if (
            table.get("name") == DEMO_RUNNER_NAME
            and "docker" in table
            and table["docker"].get("network_mode") != DEMO_NETWORK_MODE
        ):
            table["docker"]["network_mode"] = DEMO_NETWORK_MODE


def _check_config(config_path: Path, record: Callable[[DemoStep], None]) -> None:
    started = time.monotonic()
    report = validate_text(config_path.read_text(), source=str(config_path), strict=True)
    if report.errors:
        raise ProvisionerError(
            f"the demo config.toml does not validate: {report.errors[0]}",
            hint=f"run 'runnerctl config validate --config {config_path}' for every problem",
            exit_code=3,
        )
    record(_step("validate", StepStatus.DONE, f"{config_path} is valid (strict)", started))

    started = time.monotonic()
    findings = lint_document(ConfigDocument.parse(config_path.read_text()), path=config_path)
    high = at_or_above(findings, Severity.HIGH)
    if high:
        raise ProvisionerError(
            f"the demo config.toml has a high-severity finding: {high[0].message}",
            hint=high[0].fix,
            exit_code=3,
        )
    summary = ", ".join(f"{f.rule} {f.severity.value}" for f in findings) or "no findings"
    record(_step("lint", StepStatus.DONE, f"no high-severity finding ({summary})", started))


def _step(name: str, status: StepStatus, detail: str, started: float) -> DemoStep:
    return DemoStep(name, status, detail, round(time.monotonic() - started, 2))
