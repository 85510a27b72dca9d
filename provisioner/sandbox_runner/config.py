"""What the stand-in runner reads from config.toml, checked before any job is taken.

The file is validated with the project's own validator (the same verdicts as ``gitlab-runner
verify``'s config load); an invalid file is refused with exit 3 and nothing starts. The typed
model of :mod:`provisioner.runner_config` is then narrowed to the settings this runner honours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import ConfigError
from provisioner.runner_config import (
    ConfigDocument,
    Runner,
    build_model,
    read_config_text,
    validate_text,
)

DEFAULT_CHECK_INTERVAL = 3  # seconds, gitlab-runner's default
DEFAULT_SHUTDOWN_TIMEOUT = 30
DEFAULT_CONCURRENT = 1
SUPPORTED_EXECUTORS = ("shell", "docker")
PRIVILEGED_HINT = (
    "set privileged = false in [runners.docker]: this machine cannot run privileged containers "
    "(CAP_SYS_RESOURCE is outside the bounding set), so the stand-in runner never starts them"
)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@dataclass(frozen=True)
class DockerJobSettings:
    """``[runners.docker]`` as the docker executor uses it."""

    host: str | None = None
    image: str | None = None
    pull_policy: tuple[str, ...] = ()
    allowed_pull_policies: tuple[str, ...] | None = None
    allowed_images: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    network_mode: str | None = None
    user: str | None = None
    extra_hosts: tuple[str, ...] = ()
    shm_size: int | None = None
    memory: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class RunnerEntry:
    """One ``[[runners]]`` entry, reduced to what running jobs needs."""

    index: int
    name: str
    url: str
    token: str
    executor: str
    shell: str = "bash"
    builds_dir: str | None = None
    clone_url: str | None = None
    environment: tuple[str, ...] = ()
    limit: int = 0
    request_concurrency: int = 1
    output_limit: int = 4096  # KiB, gitlab-runner's default
    docker: DockerJobSettings | None = None
    pre_get_sources_script: str | None = None
    pre_build_script: str | None = None
    post_build_script: str | None = None

    @property
    def short_token(self) -> str:
        """What gitlab-runner prints as ``runner=``: the token's first 8 characters after glrt-."""
        return self.token.removeprefix("glrt-")[:8]

    @property
    def supported(self) -> bool:
        """True for the executors the stand-in runner can run."""
        return self.executor in SUPPORTED_EXECUTORS


@dataclass(frozen=True)
class RunnerSetup:
    """The whole file: global limits and the runners, in file order."""

    path: Path
    concurrent: int
    check_interval: float
    shutdown_timeout: float
    runners: tuple[RunnerEntry, ...]


def parse_size(value: object, *, what: str) -> int | None:
    """Docker sizes: ``512m``, ``1g``, ``67108864`` (bytes) -> bytes; ``0``/empty -> ``None``."""
    if value is None or value in {"", 0}:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise ConfigError(
            f"{what} = {value!r} is not a size", hint="use bytes or a unit: 256m, 1g, 1.5g"
        )
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def _docker(runner: Runner) -> DockerJobSettings | None:
    docker = runner.docker
    if docker is None:
        return None
    if docker.privileged:
        raise ConfigError(
            f"runner {runner.label!r}: privileged = true is refused", hint=PRIVILEGED_HINT
        )
    extra = docker.extra
    cpus_raw = extra.get("cpus")
    try:
        cpus = float(cpus_raw) if cpus_raw not in (None, "", 0) else None
    except (TypeError, ValueError):
        raise ConfigError(
            f"runner {runner.label!r}: cpus = {cpus_raw!r} is not a number",
            hint='use a decimal string such as cpus = "1.5"',
        ) from None
    hosts = extra.get("extra_hosts")
    return DockerJobSettings(
        host=docker.host or None,
        image=docker.image or None,
        pull_policy=docker.pull_policy,
        allowed_pull_policies=docker.allowed_pull_policies or None,
        allowed_images=docker.allowed_images or None,
        volumes=docker.volumes,
        network_mode=docker.network_mode or None,
        user=docker.user or None,
        extra_hosts=tuple(h for h in hosts if isinstance(h, str))
        if isinstance(hosts, list)
        else (),
        shm_size=parse_size(extra.get("shm_size"), what="shm_size"),
        memory=parse_size(extra.get("memory"), what="memory"),
        cpus=cpus,
    )


def _entry(index: int, runner: Runner) -> RunnerEntry:
    label = runner.name or f"runners[{index}]"
    if not runner.url or not runner.token:
        raise ConfigError(
            f"runner {label!r} has no url or token",
            hint="register it first: runnerctl register ... --config PATH",
        )
    executor = runner.executor or ""
    return RunnerEntry(
        index=index,
        name=label,
        url=runner.url,
        token=runner.token,
        executor=executor,
        shell=runner.shell or "bash",
        builds_dir=runner.builds_dir or None,
        clone_url=runner.clone_url or None,
        environment=runner.environment,
        limit=max(runner.limit or 0, 0),
        request_concurrency=max(runner.request_concurrency or 1, 1),
        output_limit=runner.output_limit or 4096,
        docker=_docker(runner) if executor == "docker" else None,
        pre_get_sources_script=runner.pre_get_sources_script,
        pre_build_script=runner.pre_build_script,
        post_build_script=runner.post_build_script,
    )


def load_setup(path: Path) -> RunnerSetup:
    """Read, validate and narrow config.toml.

    Raises:
        ConfigError: the file is missing, unreadable, invalid, has no runners, or asks for
            something this machine must not do (privileged containers). Exit code 3.
    """
    text = read_config_text(path)
    report = validate_text(text, source=str(path))
    if not report.valid:
        lines = "\n".join(issue.render(str(path)) for issue in report.errors)
        raise ConfigError(
            f"{path} is not a valid gitlab-runner config:\n{lines}",
            hint=f"fix it, then check with: runnerctl config validate --config {path}",
        )
    model = build_model(ConfigDocument.parse(text, source=str(path)).plain())
    if not model.runners:
        raise ConfigError(
            f"{path} has no [[runners]] entry",
            hint="register one first: runnerctl register --executor shell ... --config PATH",
        )
    runners = tuple(_entry(i, r) for i, r in enumerate(model.runners))
    settings = model.settings
    return RunnerSetup(
        path=path,
        concurrent=max(settings.concurrent or DEFAULT_CONCURRENT, 1),
        check_interval=float(settings.check_interval or DEFAULT_CHECK_INTERVAL),
        shutdown_timeout=float(settings.shutdown_timeout or DEFAULT_SHUTDOWN_TIMEOUT),
        runners=runners,
    )
