"""The Docker adapter: the only module that imports the ``docker`` SDK.

Everything above it (images, the stand-in runner's docker executor) talks to :class:`DockerAPI`
and receives our frozen dataclasses; every ``docker.errors.*`` and connection failure becomes a
:class:`DockerError` with a hint. The SDK is imported lazily so ``runnerctl --help`` stays fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from provisioner.errors import ImageError
from provisioner.events import Event, Reporter

T = TypeVar("T")

log = logging.getLogger(__name__)

NO_DAEMON_HINT = "start dockerd or run make setup"


class DockerError(ImageError):
    """The Docker Engine refused a request or cannot be reached (exit 6)."""


class BuildEventKind(StrEnum):
    """What a line of a build stream is."""

    STEP = "step"
    OUTPUT = "output"
    STATUS = "status"


@dataclass(frozen=True)
class BuildEvent(Event):
    """One event of an image build, import or push stream."""

    kind: BuildEventKind
    text: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class ImageInfo:
    """What ``docker image inspect`` says about an image."""

    id: str
    tags: tuple[str, ...]
    size: int
    labels: Mapping[str, str]
    created: str
    user: str
    env: tuple[str, ...]
    digests: tuple[str, ...] = ()

    def env_value(self, name: str) -> str | None:
        """The value of one ``ENV`` variable baked into the image, if set."""
        prefix = f"{name}="
        for item in self.env:
            if item.startswith(prefix):
                return item[len(prefix) :]
        return None


@dataclass(frozen=True)
class Mount:
    """A bind mount (``source`` is a host path) or a named volume (``source`` is a name)."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """A container to create: what runs, as whom, with which mounts, network and limits.

    ``privileged`` is deliberately absent: it cannot be asked for through this adapter.
    """

    image: str
    command: Sequence[str]
    entrypoint: Sequence[str] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[Mount] = ()
    user: str | None = None
    workdir: str | None = None
    network_mode: str = "none"
    extra_hosts: Mapping[str, str] | None = None
    shm_size: int | None = None
    mem_limit: int | None = None
    nano_cpus: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class RunResult:
    """The outcome of a throwaway container: exit code and combined stdout+stderr."""

    exit_code: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its time limit."""
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class PushResult:
    """Where a pushed image landed: ``reference`` (registry/repo:tag) and its manifest digest."""

    reference: str
    digest: str

    @property
    def pinned(self) -> str:
        """``registry/repo@sha256:…``: the reference signatures are attached to."""
        repo = split_reference(self.reference)[0]
        return f"{repo}@{self.digest}"


BuildCallback = Reporter[BuildEvent]


def split_reference(reference: str) -> tuple[str, str]:
    """Split ``host:5000/repo:tag`` into ``(host:5000/repo, tag)``; the tag defaults to latest."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


@dataclass
class _ImageCalls:
    """The image half of :class:`DockerAPI` (kept apart so that neither half grows too big)."""

    client: Any = field(repr=False)

    # -- images ------------------------------------------------------------------------------

    def server_version(self) -> str:
        """The engine version, e.g. ``20.10.24+dfsg1``."""
        with _translate("docker version"):
            return str(self.client.version().get("Version", "unknown"))

    def inspect_image(self, reference: str) -> ImageInfo | None:
        """The image behind a tag or id, or ``None`` when it does not exist."""
        attrs = _unless_gone(
            f"inspect {reference}", lambda: self.client.api.inspect_image(reference)
        )
        return None if attrs is None else _image_info(attrs)

    def image_exists(self, reference: str) -> bool:
        """True when ``reference`` (tag or id) names a local image."""
        return self.inspect_image(reference) is not None

    def remove_image(self, reference: str, *, force: bool = False, prune: bool = True) -> bool:
        """Remove a tag (or an image by id); False when it did not exist.

        ``prune=False`` keeps the untagged parent images (the classic builder's layer cache),
        so a build running at the same time that reuses them is not pulled out from under.
        """
        return _done(
            f"remove {reference}",
            lambda: self.client.api.remove_image(reference, force=force, noprune=not prune),
        )

    def tag_image(self, image: str, reference: str) -> None:
        """Point ``reference`` (repo:tag) at ``image`` (id or tag)."""
        repo, tag = split_reference(reference)
        with _translate(f"tag {image} as {reference}"):
            ok = self.client.api.tag(image, repo, tag, force=True)
        if not ok:
            raise DockerError(f"Docker refused to tag {image} as {reference}")

    def build(
        self,
        context: Path,
        *,
        dockerfile: str = "Dockerfile",
        buildargs: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        nocache: bool = False,
        network_mode: str | None = "none",
        on_event: BuildCallback | None = None,
    ) -> str:
        """Build ``context`` without tagging it and return the image id.

        Tagging is the caller's job, after the build succeeded, so a failed build never leaves a
        half-built tag behind. Intermediate containers are always removed. The build runs with
        the network off by default: everything it needs must be in the context.
        """
        step_no: int | None = None
        total: int | None = None
        image_id: str | None = None
        last_lines: list[str] = []
        with _translate("build"):
            stream = self.client.api.build(
                path=str(context),
                dockerfile=dockerfile,
                buildargs=dict(buildargs or {}),
                labels=dict(labels or {}),
                nocache=nocache,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                network_mode=network_mode,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = str(chunk.get("error", "")).strip()
                    tail = "\n".join(last_lines[-15:])
                    raise DockerError(
                        f"Image build failed: {detail}" + (f"\n{tail}" if tail else ""),
                        hint="read the build output above; rerun with -v for every line",
                    )
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
                    continue
                text = str(chunk.get("stream", "") or chunk.get("status", "")).rstrip("\n")
                if not text.strip():
                    continue
                for line in text.splitlines():
                    if line.startswith("Step ") and " : " in line:
                        head = line.split(" : ", 1)[0].removeprefix("Step ")
                        num, _, tot = head.partition("/")
                        if num.isdigit() and tot.isdigit():
                            step_no, total = int(num), int(tot)
                        _emit(on_event, BuildEvent(BuildEventKind.STEP, line, step_no, total))
                    else:
                        last_lines.append(line)
                        del last_lines[:-50]
                        _emit(on_event, BuildEvent(BuildEventKind.OUTPUT, line, step_no, total))
                    if line.startswith("Successfully built ") and image_id is None:
                        image_id = line.removeprefix("Successfully built ").strip()
        if image_id is None:
            raise DockerError("Image build finished without an image id", hint="rerun with -v")
        info = self.inspect_image(image_id)
        if info is None:
            raise DockerError(f"Image {image_id} vanished right after its build")
        return info.id

    def import_tarball(self, tarball: Path, *, changes: Sequence[str] = ()) -> str:
        """``docker import`` a root filesystem tarball, untagged; return the image id."""
        import json

        with _translate(f"import {tarball}"):
            response = self.client.api.import_image_from_file(
                str(tarball), repository=None, tag=None, changes=list(changes) or None
            )
        image_id: str | None = None
        for raw in str(response).splitlines():
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if "error" in doc:
                raise DockerError(f"docker import failed: {doc['error']}")
            status = str(doc.get("status", ""))
            if status.startswith("sha256:"):
                image_id = status
        if image_id is None:
            raise DockerError(f"docker import of {tarball} returned no image id: {response!r}")
        return image_id

    def pull(self, reference: str) -> ImageInfo:
        """Pull an image from its registry; raises :class:`DockerError` when unreachable."""
        repo, tag = split_reference(reference)
        with _translate(f"pull {reference}", hint="no registry reachable? use a local base"):
            self.client.api.pull(repo, tag=tag)
        info = self.inspect_image(reference)
        if info is None:
            raise DockerError(f"Pulled {reference} but it is not there")
        return info

    def push(self, reference: str, *, on_event: BuildCallback | None = None) -> PushResult:
        """Push ``registry/repo:tag`` and return the manifest digest the registry stored."""
        repo, tag = split_reference(reference)
        digest: str | None = None
        with _translate(f"push {reference}", hint="is the registry running and reachable?"):
            for chunk in self.client.api.push(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise DockerError(
                        f"Push of {reference} failed: {chunk['error']}",
                        hint="is the registry running, reachable and writable?",
                    )
                aux = chunk.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = str(aux["Digest"])
                status = str(chunk.get("status", "")).strip()
                if status and not chunk.get("progressDetail"):
                    ident = chunk.get("id")
                    text = f"{ident}: {status}" if ident else status
                    _emit(on_event, BuildEvent(BuildEventKind.STATUS, text))
        if digest is None:
            raise DockerError(f"Push of {reference} reported no digest")
        return PushResult(reference=reference, digest=digest)


@dataclass
class DockerAPI(_ImageCalls):
    """A small, typed facade over the docker SDK's client: images (inherited) and containers."""

    @classmethod
    def from_host(cls, host: str, *, timeout: int = 600) -> DockerAPI:
        """Connect to an explicit daemon address (``unix:///path`` or ``tcp://host:port``)."""
        import docker

        return cls._connect(
            lambda: docker.DockerClient(base_url=host, timeout=timeout), f" at {host}"
        )

    @classmethod
    def from_env(cls, *, timeout: int = 600) -> DockerAPI:
        """Connect like the docker CLI does (``DOCKER_HOST`` or the local socket) and ping."""
        import docker

        return cls._connect(lambda: docker.from_env(timeout=timeout), "")

    @classmethod
    def _connect(cls, make: Callable[[], Any], where: str) -> DockerAPI:
        import docker.errors

        try:
            client = make()
            client.ping()
        except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
            raise DockerError(
                f"Cannot reach the Docker daemon{where}: {_short(exc)}", hint=NO_DAEMON_HINT
            ) from exc
        return cls(client=client)

    # -- containers --------------------------------------------------------------------------

    def run(
        self,
        image: str,
        command: Sequence[str],
        *,
        network_mode: str = "none",
        environment: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        user: str | None = None,
        workdir: str | None = None,
        entrypoint: Sequence[str] | None = None,
        extra_hosts: Mapping[str, str] | None = None,
        timeout: float = 300,
        on_output: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run ``command`` in a throwaway container and return its exit code and output.

        ``network_mode="none"`` (the default) disables the network; pass ``"bridge"`` or
        ``"host"`` when the command needs one. Environment values go through the API, never
        through argv of a process. The container is removed whatever happens.
        """
        import docker.errors

        binds = {
            m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in mounts
        }
        container = None
        try:
            host_config = self.client.api.create_host_config(
                binds=binds or None,
                network_mode=network_mode,
                extra_hosts=dict(extra_hosts) if extra_hosts else None,
            )
            created = self.client.api.create_container(
                image,
                command=list(command),
                environment=dict(environment or {}),
                user=user or "",
                working_dir=workdir,
                entrypoint=list(entrypoint) if entrypoint is not None else None,
                host_config=host_config,
                labels={"io.runnerctl.throwaway": "true"},
            )
            container = created["Id"]
            try:
                self.client.api.start(container)
            except docker.errors.APIError as exc:
                message = str(exc.explanation or exc)
                if "executable file not found" in message or "no such file" in message:
                    # Like a shell: a command that does not exist exits 127.
                    return RunResult(exit_code=127, output=message)
                raise
            timed_out = threading.Event()

            def _kill() -> None:
                timed_out.set()
                with suppress(docker.errors.DockerException):
                    self.client.api.kill(container)

            timer = threading.Timer(timeout, _kill)
            timer.daemon = True
            timer.start()
            try:
                code, output = self._wait_with_output(container, on_output)
            finally:
                timer.cancel()
            return RunResult(exit_code=code, output=output, timed_out=timed_out.is_set())
        except docker.errors.ImageNotFound as exc:
            raise DockerError(
                f"Image {image} not found", hint="build it first: runnerctl image build"
            ) from exc
        except docker.errors.DockerException as exc:
            raise _as_error(f"run a container from {image}", exc) from exc
        finally:
            if container is not None:
                try:
                    self.client.api.remove_container(container, force=True, v=True)
                except docker.errors.DockerException:
                    log.warning("could not remove container %s", container[:12])

    def _wait_with_output(
        self, container: str, on_output: Callable[[str], None] | None
    ) -> tuple[int, str]:
        """Wait for the container; return its exit code and output (streamed when asked)."""
        streamed = ""
        pending = ""
        if on_output is not None:
            for raw in self.client.api.logs(
                container, stdout=True, stderr=True, stream=True, follow=True
            ):
                pending += raw.decode("utf-8", "replace")
                *lines, pending = pending.split("\n")
                for line in lines:
                    streamed += line + "\n"
                    on_output(line)
        status = self.client.api.wait(container)
        # The follow stream can end before the log driver flushes a last line without a
        # newline; the stored log is complete, so emit whatever the stream missed.
        output = self.client.api.logs(container, stdout=True, stderr=True).decode(
            "utf-8", "replace"
        )
        if on_output is not None:
            rest = output[len(streamed) :] if output.startswith(streamed) else pending
            for line in rest.split("\n"):
                if line:
                    on_output(line)
        return int(status.get("StatusCode", -1)), output

    # -- long-lived containers (the stand-in runner's docker executor) ------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        """Create (not start) a container as ``spec`` says; returns its id.

        Raises:
            DockerError: the image is missing, the daemon refused, or cannot be reached.
        """
        import docker.errors

        binds = {
            m.source: {"bind": m.target, "mode": "ro" if m.read_only else "rw"} for m in spec.mounts
        }
        try:
            host_config = self.client.api.create_host_config(
                binds=binds or None,
                network_mode=spec.network_mode,
                extra_hosts=dict(spec.extra_hosts) if spec.extra_hosts else None,
                shm_size=spec.shm_size or None,
                mem_limit=spec.mem_limit or None,
                nano_cpus=spec.nano_cpus or None,
                privileged=False,
            )
            created = self.client.api.create_container(
                spec.image,
                command=list(spec.command),
                environment=dict(spec.environment),
                user=spec.user or "",
                working_dir=spec.workdir,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                host_config=host_config,
                labels=dict(spec.labels),
                name=spec.name,
            )
        except docker.errors.ImageNotFound as exc:
            raise DockerError(
                f"No such image: {spec.image}", hint="build or import the image first"
            ) from exc
        except docker.errors.DockerException as exc:
            raise _as_error(f"create a container from {spec.image}", exc) from exc
        except OSError as exc:
            raise DockerError(
                f"Cannot reach the Docker daemon (create a container): {_short(exc)}",
                hint=NO_DAEMON_HINT,
            ) from exc
        return str(created["Id"])

    def start_container(self, container: str) -> None:
        """Start a created container."""
        with _translate(f"start container {container[:12]}"):
            self.client.api.start(container)

    def follow_output(self, container: str) -> Iterator[str]:
        """The container's stdout and stderr as decoded text chunks, until it exits."""
        with _translate(f"read the output of {container[:12]}"):
            for raw in self.client.api.logs(
                container, stdout=True, stderr=True, stream=True, follow=True
            ):
                yield raw.decode("utf-8", "replace")

    def wait_container(self, container: str, *, timeout: float | None = None) -> int | None:
        """Wait for the container to exit; its exit code, or ``None`` when ``timeout`` passed."""
        import time

        if timeout is None:
            with _translate(f"wait for {container[:12]}"):
                status = self.client.api.wait(container)
            return int(status.get("StatusCode", -1))
        deadline = time.monotonic() + timeout
        while True:
            with _translate(f"inspect {container[:12]}"):
                state = (self.client.api.inspect_container(container).get("State")) or {}
            if not state.get("Running") and state.get("Status") != "created":
                return int(state.get("ExitCode", -1))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def kill_container(self, container: str) -> bool:
        """SIGKILL a running container; False when it was not running (or is gone)."""
        # 409: the container is not running.
        return _done(
            f"kill {container[:12]}", lambda: self.client.api.kill(container), gone=(404, 409)
        )

    def remove_container(self, container: str) -> bool:
        """Remove a container and its anonymous volumes; False when it did not exist."""
        return _done(
            f"remove {container[:12]}",
            lambda: self.client.api.remove_container(container, force=True, v=True),
        )

    def containers_with_label(self, label: str) -> tuple[str, ...]:
        """Ids of every container (running or not) carrying ``label`` (``key`` or ``key=value``)."""
        with _translate("list containers"):
            found = self.client.api.containers(all=True, filters={"label": label})
        return tuple(str(c["Id"]) for c in found)

    def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        """Create (or reuse) a named volume; returns its name."""
        with _translate(f"create volume {name}"):
            vol = self.client.api.create_volume(name=name, labels=dict(labels or {}))
        return str(vol.get("Name", name))

    def remove_volume(self, name: str) -> bool:
        """Remove a named volume; False when it did not exist."""
        return _done(
            f"remove volume {name}", lambda: self.client.api.remove_volume(name, force=True)
        )

    def bridge_gateway(self) -> str:
        """The docker bridge's gateway address (how containers reach host services)."""
        with _translate("inspect the bridge network"):
            net = self.client.api.inspect_network("bridge")
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            gateway = cfg.get("Gateway")
            if gateway:
                return str(gateway)
        return "172.17.0.1"


def _image_info(attrs: Mapping[str, Any]) -> ImageInfo:
    config = attrs.get("Config") or {}
    return ImageInfo(
        id=str(attrs.get("Id", "")),
        tags=tuple(attrs.get("RepoTags") or ()),
        size=int(attrs.get("Size") or 0),
        labels=dict(config.get("Labels") or {}),
        created=str(attrs.get("Created", "")),
        user=str(config.get("User") or ""),
        env=tuple(config.get("Env") or ()),
        digests=tuple(attrs.get("RepoDigests") or ()),
    )


def _emit(callback: BuildCallback | None, event: BuildEvent) -> None:
    if callback is not None:
        callback(event)
    else:
        log.debug("%s", event.text)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _unless_gone(what: str, call: Callable[[], T], *, gone: tuple[int, ...] = (404,)) -> T | None:
    """``call()``, or ``None`` when the engine answers that its object does not exist.

    "Missing is None" for Docker, as the GitLab transport's ``missing=`` is for GitLab; any
    other SDK error becomes a :class:`DockerError`.
    """
    import docker.errors

    try:
        return call()
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code in gone:
            return None
        raise _as_error(what, exc) from exc
    except docker.errors.DockerException as exc:
        raise _as_error(what, exc) from exc


def _done(what: str, call: Callable[[], object], *, gone: tuple[int, ...] = (404,)) -> bool:
    """Run ``call``; False when the engine answers that its object does not exist."""

    def run() -> bool:
        call()
        return True

    return _unless_gone(what, run, gone=gone) is not None


def _as_error(what: str, exc: BaseException, hint: str | None = None) -> DockerError:
    import docker.errors

    message = _short(exc)
    if isinstance(exc, docker.errors.APIError):
        message = str(exc.explanation or exc).strip()
    lowered = message.lower()
    if "connection" in lowered and ("refused" in lowered or "aborted" in lowered):
        return DockerError(
            f"Cannot reach the Docker daemon ({what}): {message}", hint=NO_DAEMON_HINT
        )
    if isinstance(exc, docker.errors.ImageNotFound) or "no such image" in lowered:
        return DockerError(
            f"Docker could not {what}: {message}",
            hint=hint or "check the image name; build or import it first",
        )
    return DockerError(f"Docker could not {what}: {message}", hint=hint)


@contextmanager
def _translate(what: str, *, hint: str | None = None) -> Iterator[None]:
    """Turn SDK and connection errors raised inside the block into :class:`DockerError`."""
    import docker.errors

    try:
        yield
    except DockerError:
        raise
    except docker.errors.DockerException as exc:
        raise _as_error(what, exc, hint) from exc
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise DockerError(
            f"Cannot reach the Docker daemon ({what}): {_short(exc)}", hint=NO_DAEMON_HINT
        ) from exc
