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
from typing import Any

from provisioner.errors import ImageError

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
class BuildEvent:
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


BuildCallback = Callable[[BuildEvent], None]


def split_reference(reference: str) -> tuple[str, str]:
    """Split ``host:5000/repo:tag`` into ``(host:5000/repo, tag)``; the tag defaults to latest."""
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, "latest"
    return name, tag


@dataclass
class DockerAPI:
    """A small, typed facade over the docker SDK's client."""

    client: Any = field(repr=False)

    @classmethod
    def from_env(cls, *, timeout: int = 600) -> DockerAPI:
        """Connect like the docker CLI does (``DOCKER_HOST`` or the local socket) and ping."""
        import docker
        import docker.errors

        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except docker.errors.DockerException as exc:
            raise DockerError(
                f"Cannot reach the Docker daemon: {_short(exc)}", hint=NO_DAEMON_HINT
            ) from exc
        except OSError as exc:  # requests' connection errors are OSErrors
            raise DockerError(
                f"Cannot reach the Docker daemon: {_short(exc)}", hint=NO_DAEMON_HINT
            ) from exc
        return cls(client=client)

    # -- images ------------------------------------------------------------------------------

    def server_version(self) -> str:
        """The engine version, e.g. ``20.10.24+dfsg1``."""
        with _translate("docker version"):
            return str(self.client.version().get("Version", "unknown"))

    def inspect_image(self, reference: str) -> ImageInfo | None:
        """The image behind a tag or id, or ``None`` when it does not exist."""
        import docker.errors

        try:
            attrs = self.client.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise _as_error(f"inspect {reference}", exc) from exc
        except docker.errors.DockerException as exc:
            raise _as_error(f"inspect {reference}", exc) from exc
        return _image_info(attrs)

    def image_exists(self, reference: str) -> bool:
        """True when ``reference`` (tag or id) names a local image."""
        return self.inspect_image(reference) is not None

    def remove_image(self, reference: str, *, force: bool = False) -> bool:
        """Remove a tag (or an image by id); False when it did not exist."""
        import docker.errors

        try:
            self.client.api.remove_image(reference, force=force, noprune=False)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return False
            raise _as_error(f"remove {reference}", exc) from exc
        return True

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
        chunks: list[str] = []
        if on_output is not None:
            pending = ""
            for raw in self.client.api.logs(
                container, stdout=True, stderr=True, stream=True, follow=True
            ):
                pending += raw.decode("utf-8", "replace")
                *lines, pending = pending.split("\n")
                for line in lines:
                    chunks.append(line + "\n")
                    on_output(line)
            if pending:
                chunks.append(pending)
                on_output(pending)
        status = self.client.api.wait(container)
        if on_output is None:
            logs = self.client.api.logs(container, stdout=True, stderr=True)
            chunks.append(logs.decode("utf-8", "replace"))
        return int(status.get("StatusCode", -1)), "".join(chunks)

    def create_volume(self, name: str, *, labels: Mapping[str, str] | None = None) -> str:
        """Create (or reuse) a named volume; returns its name."""
        with _translate(f"create volume {name}"):
            vol = self.client.api.create_volume(name=name, labels=dict(labels or {}))
        return str(vol.get("Name", name))

    def remove_volume(self, name: str) -> bool:
        """Remove a named volume; False when it did not exist."""
        import docker.errors

        try:
            self.client.api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.DockerException as exc:
            raise _as_error(f"remove volume {name}", exc) from exc
        return True

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
