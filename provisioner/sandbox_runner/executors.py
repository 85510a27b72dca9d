"""The shell and docker executors: where a job's scripts run.

Both share one layout: the project directory (what ``CI_PROJECT_DIR`` names) and a sibling
``<project dir>.tmp`` for generated scripts and file-type variables, as gitlab-runner has them.
Sources are fetched and artifacts moved on the host side of that directory; for the docker
executor it is bind-mounted into every job container at the runner's ``builds_dir``
(``/builds`` by default), the way gitlab-runner's helper container shares the build volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provisioner.sandbox_runner.config import RunnerEntry
from provisioner.sandbox_runner.job import Job
from provisioner.sandbox_runner.process import ProcessOutcome, StopCheck, run_process
from provisioner.sandbox_runner.trace import JobTrace

if TYPE_CHECKING:
    from provisioner.docker_api import DockerAPI, Mount

# Environment the shell executor passes on from the runner's own (everything else, such as
# a GITLAB_TOKEN of the person who started the runner, stays out of jobs).
PASS_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# gitlab-runner's shell detection for docker images: the first bash found, else sh.
DETECT_SHELL = (
    'if [ -x /usr/local/bin/bash ]; then exec /usr/local/bin/bash <"$0"; '
    'elif [ -x /usr/bin/bash ]; then exec /usr/bin/bash <"$0"; '
    'elif [ -x /bin/bash ]; then exec /bin/bash <"$0"; '
    'elif [ -x /bin/sh ]; then exec /bin/sh <"$0"; '
    'else echo "shell not found"; exit 1; fi'
)
RESTRICTING_IMAGES_URL = (
    "https://docs.gitlab.com/runner/configuration/advanced-configuration.html"
    "#restricting-docker-images-and-services"
)


class JobFailure(Exception):
    """The job cannot go on: how to report it and the line that says why."""

    def __init__(
        self, message: str, *, reason: str = "runner_system_failure", exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.exit_code = exit_code


class Executor(Protocol):
    """What the build needs from an executor."""

    kind: str
    builds_dir: str
    project_dir: str
    tmp_dir: str
    host_project_dir: Path
    host_tmp_dir: Path
    world_writable: bool

    def prepare(self, trace: JobTrace) -> None:
        """Check and set up what the job needs; raise :class:`JobFailure` when it cannot run."""
        ...

    def host_env(self) -> dict[str, str]:
        """The environment of host-side processes (git)."""
        ...

    def run_script(
        self, script: Path, *, trace: JobTrace, timeout: float, should_stop: StopCheck
    ) -> ProcessOutcome:
        """Run one generated script (one shell session)."""
        ...

    def cleanup(self) -> None:
        """Remove what the job left that must not outlive it (containers)."""
        ...


def _passed_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


@dataclass
class ShellExecutor:
    """Jobs as ``bash`` (or ``sh``) processes on this machine, in the build directory."""

    entry: RunnerEntry
    job: Job
    work_dir: Path
    concurrent_id: int
    user: str | None = None
    kind: str = "shell"
    world_writable: bool = False

    def __post_init__(self) -> None:
        root = Path(self.entry.builds_dir) if self.entry.builds_dir else self.work_dir / "builds"
        self.builds_dir = str(root)
        self.host_project_dir = (
            root / self.entry.short_token / str(self.concurrent_id) / self.job.project_path
        )
        self.project_dir = str(self.host_project_dir)
        self.host_tmp_dir = self.host_project_dir.with_name(self.host_project_dir.name + ".tmp")
        self.tmp_dir = str(self.host_tmp_dir)

    def prepare(self, trace: JobTrace) -> None:
        if self.user:
            import pwd

            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise JobFailure(f"user {self.user!r} does not exist on this host") from None
        shell = self.entry.shell or "bash"
        if shell not in ("bash", "sh"):
            raise JobFailure(
                f'shell "{shell}" is not supported by the stand-in runner (use bash or sh)',
                reason="runner_configuration_error",
            )
        if shutil.which(shell) is None:
            raise JobFailure(f"executable file not found in $PATH: {shell}")
        trace.line(f"Using Shell ({shell}) executor...")

    def host_env(self) -> dict[str, str]:
        return _passed_env()

    def run_script(
        self, script: Path, *, trace: JobTrace, timeout: float, should_stop: StopCheck
    ) -> ProcessOutcome:
        shell = shutil.which(self.entry.shell or "bash") or "/bin/bash"
        env = self.host_env()
        if self.user:
            import pwd

            info = pwd.getpwnam(self.user)
            env.update(HOME=info.pw_dir, USER=self.user, LOGNAME=self.user)
            # Sources were fetched by the runner: hand the build over to the job's user.
            for top in (self.host_project_dir, self.host_tmp_dir):
                _chown_tree(top, info.pw_uid, info.pw_gid)
        return run_process(
            [shell],
            cwd=self.host_project_dir,
            env=env,
            write=trace.write,
            timeout=timeout,
            should_stop=should_stop,
            stdin_path=script,
            user=self.user,
        )

    def cleanup(self) -> None:
        return None


_VARIABLE_REF = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand_variables(text: str, job: Job) -> str:
    """Expand ``$VAR`` / ``${VAR}`` from the job's variables, as gitlab-runner expands the
    image name (``image: $PYTHON_IMAGE``); an unknown variable expands to ""."""
    return _VARIABLE_REF.sub(lambda m: job.variable(m.group(1) or m.group(2)) or "", text)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    if not top.exists():
        return
    os.chown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


DockerFactory = Callable[[str], "DockerAPI"]


def _doublestar(pattern: str, name: str) -> bool:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.fullmatch(out, name) is not None


def docker_connect_message(host: str, detail: str) -> str:
    """The Docker CLI's own wording for an unreachable or forbidden daemon socket."""
    lowered = detail.lower()
    if "permission denied" in lowered:
        sock = host.removeprefix("unix://")
        return (
            "permission denied while trying to connect to the Docker daemon socket at "
            f'{host}: Get "http://%2F{sock.strip("/").replace("/", "%2F")}/_ping": '
            f"dial unix {sock}: connect: permission denied"
        )
    return f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running?"


@dataclass
class DockerExecutor:
    """Jobs in containers of the job's image, one container per shell session."""

    entry: RunnerEntry
    job: Job
    work_dir: Path
    concurrent_id: int
    connect: DockerFactory
    kind: str = "docker"
    world_writable: bool = True  # gitlab-runner clones with umask 0000 for non-root images

    def __post_init__(self) -> None:
        self.builds_dir = (self.entry.builds_dir or "/builds").rstrip("/") or "/builds"
        self.host_builds_root = (
            self.work_dir / "docker" / self.entry.short_token / str(self.concurrent_id)
        )
        self.host_project_dir = self.host_builds_root / self.job.project_path
        self.project_dir = f"{self.builds_dir}/{self.job.project_path}"
        self.host_tmp_dir = self.host_project_dir.with_name(self.host_project_dir.name + ".tmp")
        self.tmp_dir = self.project_dir + ".tmp"
        self.image = ""
        self._docker: DockerAPI | None = None
        self._mounts: list[Mount] = []
        self._containers: list[str] = []
        self._lock = threading.Lock()

    def host_env(self) -> dict[str, str]:
        return _passed_env()

    def _daemon(self) -> DockerAPI:
        from provisioner.docker_api import DockerError

        settings = self.entry.docker
        host = (settings.host if settings else None) or os.environ.get(
            "DOCKER_HOST", DEFAULT_DOCKER_HOST
        )
        try:
            return self.connect(host)
        except DockerError as exc:
            raise JobFailure(docker_connect_message(host, exc.message)) from None

    def prepare(self, trace: JobTrace) -> None:
        from provisioner.docker_api import DockerError

        settings = self.entry.docker
        assert settings is not None
        image = expand_variables(self.job.image or "", self.job) or settings.image
        if not image:
            raise JobFailure(
                "no Docker image specified to run the job (set image in .gitlab-ci.yml or "
                "[runners.docker] image)",
                reason="runner_configuration_error",
            )
        self.image = image
        trace.line(f"Using Docker executor with image {image} ...")
        if settings.allowed_images is not None and not any(
            _doublestar(p, image) for p in settings.allowed_images
        ):
            allowed = "\n".join(f"- {p}" for p in settings.allowed_images)
            trace.error(
                f'The "{image}" image is not present on list of allowed images:\n{allowed}\n'
                f"Please check runner's configuration: {RESTRICTING_IMAGES_URL}"
            )
            raise JobFailure("invalid image", reason="runner_configuration_error")
        docker = self._daemon()
        self._docker = docker
        policies = self._policies()
        self._pull(docker, image, policies, trace)
        try:
            self._mounts = self._volumes(docker)
        except DockerError as exc:
            raise JobFailure(exc.message) from None

    def _policies(self) -> tuple[str, ...]:
        settings = self.entry.docker
        assert settings is not None
        policies = self.job.image_pull_policy or settings.pull_policy or ("always",)
        allowed = settings.allowed_pull_policies or settings.pull_policy or ("always",)
        bad = [p for p in policies if p not in allowed]
        if bad:
            raise JobFailure(
                f"invalid pull policy for image {self.image!r}: [{' '.join(policies)}] "
                f"(allowed: [{' '.join(allowed)}])",
                reason="runner_configuration_error",
            )
        return tuple(policies)

    def _pull(
        self, docker: DockerAPI, image: str, policies: tuple[str, ...], trace: JobTrace
    ) -> None:
        from provisioner.docker_api import DockerError

        last_error = ""
        for policy in policies:
            if policy in ("never", "if-not-present"):
                info = docker.inspect_image(image)
                if info is not None:
                    trace.line(f"Using docker image {info.id} for {image} ...")
                    return
                if policy == "never":
                    last_error = f"Error response from daemon: No such image: {image}"
                    continue
            trace.line(f"Pulling docker image {image} ...")
            try:
                info = docker.pull(image)
            except DockerError as exc:
                detail = exc.message.split(f"pull {image}: ", 1)[-1]
                last_error = f"Error response from daemon: {detail}"
                trace.warning(f'Failed to pull image with policy "{policy}": {detail}')
                continue
            trace.line(f"Using docker image {info.id} for {image} ...")
            return
        raise JobFailure(
            f'failed to pull image "{image}" with specified policies '
            f"[{' '.join(policies)}]: {last_error}",
            reason="image_pull_failure",
        )

    def _volumes(self, docker: DockerAPI) -> list[Mount]:
        from provisioner.docker_api import Mount

        settings = self.entry.docker
        assert settings is not None
        self.host_builds_root.mkdir(parents=True, exist_ok=True)
        mounts = [Mount(str(self.host_builds_root), self.builds_dir)]
        for volume in settings.volumes:
            parts = volume.split(":")
            read_only = len(parts) == 3 and parts[2] == "ro"
            if len(parts) == 1:
                # A bare path is a cache volume kept per runner and project, as gitlab-runner does.
                digest = hashlib.md5(parts[0].encode(), usedforsecurity=False).hexdigest()
                name = (
                    f"runner-{self.entry.short_token}-project-{self.job.project_id}"
                    f"-concurrent-{self.concurrent_id}-cache-{digest}"
                )
                docker.create_volume(name, labels={"com.gitlab.gitlab-runner.type": "cache"})
                mounts.append(Mount(name, parts[0]))
            else:
                mounts.append(Mount(parts[0], parts[1], read_only=read_only))
        return mounts

    def run_script(
        self, script: Path, *, trace: JobTrace, timeout: float, should_stop: StopCheck
    ) -> ProcessOutcome:
        import time

        from provisioner.docker_api import ContainerSpec, DockerError

        settings = self.entry.docker
        assert settings is not None
        assert self._docker is not None
        docker = self._docker
        inside = f"{self.tmp_dir}/{script.name}"
        hosts: dict[str, str] = {}
        for item in settings.extra_hosts:
            name, _, addr = item.partition(":")
            if name and addr:
                hosts[name] = addr
        spec = ContainerSpec(
            image=self.image,
            command=["sh", "-c", DETECT_SHELL, inside],
            entrypoint=list(self.job.image_entrypoint) if self.job.image_entrypoint else None,
            mounts=self._mounts,
            user=settings.user,
            workdir=self.project_dir,
            network_mode=settings.network_mode or "bridge",
            extra_hosts=hosts or None,
            shm_size=settings.shm_size,
            mem_limit=settings.memory,
            nano_cpus=int(settings.cpus * 1e9) if settings.cpus else None,
            labels={
                "com.gitlab.gitlab-runner.job.id": str(self.job.id),
                "com.gitlab.gitlab-runner.job.url": self.job.variable("CI_JOB_URL") or "",
                "com.gitlab.gitlab-runner.project.id": str(self.job.project_id),
                "io.runnerctl.runner": self.entry.short_token,
                "io.runnerctl.job": str(self.job.id),
            },
            name=(
                f"runner-{self.entry.short_token}-project-{self.job.project_id}"
                f"-concurrent-{self.concurrent_id}-{self.job.id}-{script.stem}"
            ),
        )
        try:
            container = docker.create_container(spec)
            with self._lock:
                self._containers.append(container)
            docker.start_container(container)
        except DockerError as exc:
            raise JobFailure(exc.message) from None

        def pump() -> None:
            try:
                for text in docker.follow_output(container):
                    trace.write(text)
            except DockerError:
                return

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        timed_out = False
        stopped: str | None = None
        try:
            while True:
                code = docker.wait_container(container, timeout=0.3)
                if code is not None:
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                else:
                    stopped = should_stop()
                if timed_out or stopped:
                    docker.kill_container(container)
                    code = docker.wait_container(container, timeout=30) or 137
                    break
        except DockerError as exc:
            raise JobFailure(exc.message) from None
        finally:
            reader.join(timeout=5)
            self._remove(container)
        return ProcessOutcome(exit_code=code, timed_out=timed_out, stopped=stopped)

    def _remove(self, container: str) -> None:
        from provisioner.docker_api import DockerError

        if self._docker is None:
            return
        try:
            self._docker.remove_container(container)
        except DockerError:
            return
        with self._lock:
            if container in self._containers:
                self._containers.remove(container)

    def cleanup(self) -> None:
        for container in list(self._containers):
            if self._docker is not None:
                from provisioner.docker_api import DockerError

                with contextlib.suppress(DockerError):
                    self._docker.kill_container(container)
            self._remove(container)


def executor_for(
    entry: RunnerEntry,
    job: Job,
    *,
    work_dir: Path,
    concurrent_id: int,
    connect: DockerFactory,
    user: str | None = None,
) -> Executor:
    """The executor ``entry`` names."""
    if entry.executor == "docker":
        return DockerExecutor(entry, job, work_dir, concurrent_id, connect)
    return ShellExecutor(entry, job, work_dir, concurrent_id, user=user)


def environment_pairs(entries: tuple[str, ...]) -> list[tuple[str, str]]:
    """``environment = ["A=b"]`` from config.toml as key/value pairs."""
    pairs = []
    for item in entries:
        key, sep, value = item.partition("=")
        if sep and key:
            pairs.append((key, value))
    return pairs
