"""``runnerctl image base | build | verify | push``: Python-ready job images."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provisioner.cli.context import AppContext, command_group, get_app
from provisioner.cli.render import to_jsonable

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from provisioner.docker_api import BuildEvent
    from provisioner.images import BuildResult, CheckResult, PushReport
    from provisioner.images.events import ImageStage

app = command_group(
    "Python-ready job images: cosign, a wheelhouse and an optional CA bundle baked in.\n\n"
    "Examples:\n\n"
    "  runnerctl image build --python 3.11\n"
    "  runnerctl image verify runnerctl/python:3.11\n"
)


def _round(digits: int) -> Any:
    return lambda seconds: round(seconds, digits)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


# The progress line of each image stage (keyed by its value, so that no domain module is imported
# before a command runs).
_STAGE_WORDING = {
    "base_exists": "{subject} exists ({short_id}): skipped",
    "rootfs_cached": "reusing cached root filesystem {subject}",
    "importing": "docker import {subject}",
    "imported": "{subject} is {short_id}",
    "bootstrapping": "debootstrap {subject} from {detail}",
    "stripping": "stripping apt lists, caches, docs and locales",
    "packing": "packing {subject}",
    "base_fallback": "{subject} could not be pulled (no registry reachable): using the local "
    "Debian {detail} base {base_tag} instead",
    "cosign_source": "cosign from {subject}",
    "cosign_ready": "cosign {subject} sha256 {short_sha}…",
    "wheelhouse": "wheelhouse for Python {subject} on {detail}",
    "wheels_ready": "{count} wheels ({origin})",
    "building": "building {subject} from {detail}",
    "pushing": "pushing {subject}",
    "signing": "signing {subject}",
    "verifying": "verifying the signature of {subject}",
}


def stage_sentence(event: ImageStage) -> str:
    """The progress line of a stage of making, building or pushing an image."""
    from provisioner.images.base import default_tag
    from provisioner.images.events import Stage

    detail = event.detail
    return _STAGE_WORDING[event.stage].format(
        subject=event.subject,
        detail=detail,
        short_id=detail[7:19],
        short_sha=detail[:16],
        count=event.count,
        origin="cached" if event.cached else "downloaded",
        base_tag=default_tag(detail) if event.stage is Stage.BASE_FALLBACK else "",
    )


class _Reporter:
    """Build/import/push events → a rich progress display (TTY) or plain lines on stderr."""

    def __init__(self, app: AppContext, title: str) -> None:
        self.app = app
        self.title = title
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> _Reporter:
        if self.app.interactive:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[steps]}"),
                console=self.app.err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=None, steps="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: BuildEvent | ImageStage) -> None:
        from provisioner.docker_api import BuildEvent, BuildEventKind

        if not isinstance(event, BuildEvent):
            event = BuildEvent(BuildEventKind.STATUS, stage_sentence(event))
        if self.progress is not None and self.task is not None:
            if event.kind is BuildEventKind.STEP and event.step and event.total:
                self.progress.update(
                    self.task,
                    completed=event.step - 1,
                    total=event.total,
                    description=event.text,
                    steps=f"step {event.step}/{event.total}",
                )
            elif event.kind is BuildEventKind.STATUS:
                self.progress.update(self.task, description=event.text)
                self.progress.console.print(f"  {event.text}", markup=False, highlight=False)
            elif self.app.verbose:
                self.progress.console.print(f"    {event.text}", markup=False, highlight=False)
            return
        if event.kind is BuildEventKind.OUTPUT and not self.app.verbose:
            return
        indent = "    " if event.kind is BuildEventKind.OUTPUT else "  "
        self.app.note(f"{indent}{event.text}")


@app.command("base")
def base_cmd(
    ctx: typer.Context,
    suite: Annotated[str, typer.Option(help="Debian suite: bookworm (3.11) or trixie (3.13).")] = (
        "bookworm"
    ),
    mirror: Annotated[
        str, typer.Option(help="Debian mirror URL.")
    ] = "http://deb.debian.org/debian",
    tag: Annotated[str | None, typer.Option(help="Tag (default runnerctl/base:<suite>).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild even if the tag exists.")] = (
        False
    ),
) -> None:
    """Build a minimal Debian base image with debootstrap and docker import (no registry needed).

    Examples:

      runnerctl image base --suite trixie
      runnerctl image base --mirror http://mirror.example/debian --rebuild
    """
    from provisioner.images import build_base
    from provisioner.images.base import check_suite

    app_ctx = get_app(ctx)
    check_suite(suite)  # a usage error, before Docker is needed
    with _Reporter(app_ctx, f"base {suite}") as report:
        result = build_base(
            suite, docker=app_ctx.docker(), mirror=mirror, tag=tag, rebuild=rebuild, on_event=report
        )
    if app_ctx.json:
        app_ctx.emit_json(to_jsonable(result, convert={"seconds": _round(1)}))
        return
    state = "exists (skipped)" if result.skipped else f"built in {result.seconds:.0f} s"
    app_ctx.echo(f"{result.tag}  {result.image_id}  {_mb(result.size)}  {state}")


@app.command("build")
def build_cmd(
    ctx: typer.Context,
    *,
    python: Annotated[
        list[str] | None, typer.Option("--python", help="Python version; repeat for a matrix.")
    ] = None,
    base: Annotated[
        str, typer.Option(help="Base image, or auto: pull python:<v>-slim, else a local base.")
    ] = "auto",
    tag: Annotated[
        str | None, typer.Option(help="Tag (default runnerctl/python:<v>); {python} is filled in.")
    ] = None,
    requirement: Annotated[
        list[Path] | None, typer.Option("--requirement", "-r", help="Add a requirements file.")
    ] = None,
    wheel: Annotated[
        list[str] | None, typer.Option("--wheel", help="Add a requirement spec to the wheelhouse.")
    ] = None,
    cosign_source: Annotated[
        str,
        typer.Option(help="debian:<v>, url:<url>#sha256=<hex> or file:<path>#sha256=<hex>."),
    ] = "debian:2.5.0-2+b4",
    ca_bundle: Annotated[
        Path | None, typer.Option(help="PEM bundle of extra CAs to trust inside the image.")
    ] = None,
    user: Annotated[str, typer.Option(help="Default user: root (like python images) or ci.")] = (
        "root"
    ),
    push: Annotated[
        str | None, typer.Option(help="Push to this registry (host:port) after the build.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore docker's layer cache.")] = (
        False
    ),
) -> None:
    """Build the Python job image(s): wheelhouse, cosign and CA bundle baked in, built offline.

    Examples:

      runnerctl image build --python 3.11 --python 3.13
      runnerctl image build --ca-bundle corp-ca.pem --wheel 'requests>=2.32'
    """
    from provisioner.errors import UsageError
    from provisioner.images import BuildSpec, ImageUser, build_matrix, push_image
    from provisioner.images.build import check_python

    app_ctx = get_app(ctx)
    try:
        image_user = ImageUser(user)
    except ValueError as exc:
        raise UsageError(f"Unknown --user {user!r}", hint="use root or ci") from exc
    versions = [check_python(v) for v in python or ["3.11"]]  # before Docker is needed
    specs = [
        BuildSpec(
            python=v,
            base=base,
            tag=tag,
            requirement_files=tuple(requirement or ()),
            wheels=tuple(wheel or ()),
            cosign_source=cosign_source,
            ca_bundle=ca_bundle,
            user=image_user,
            nocache=no_cache,
        )
        for v in versions
    ]
    docker = app_ctx.docker()
    with _Reporter(app_ctx, "build") as report:
        results = build_matrix(specs, docker=docker, on_event=report)
        pushes = [push_image(r.tag, push, docker=docker, on_event=report) for r in results if push]
    _render_builds(app_ctx, results, pushes)


_BUILD_FIELDS = (
    "tag",
    "tags",
    "image_id",
    "size",
    "base",
    "size_over_base",
    "python_version",
    "cosign_version",
    "wheels",
    "seconds",
    "labels",
    "notes",
)


def _render_builds(
    app_ctx: AppContext, results: list[BuildResult], pushes: list[PushReport]
) -> None:
    docs: list[dict[str, Any]] = []
    for n, r in enumerate(results):
        doc: dict[str, Any] = to_jsonable(
            r,
            only=_BUILD_FIELDS,
            rename={"python_version": "python", "cosign_version": "cosign"},
            convert={"seconds": _round(1)},
        )
        if n < len(pushes):
            doc["pushed"] = to_jsonable(pushes[n], only=("reference", "digest"))
        docs.append(doc)
    if app_ctx.json:
        app_ctx.emit_json(docs if len(docs) > 1 else docs[0])
        return
    for doc, r in zip(docs, results, strict=True):
        app_ctx.echo(f"{r.tag}")
        app_ctx.echo(f"  image id   {r.image_id}")
        app_ctx.echo(f"  tags       {', '.join(r.tags)}")
        app_ctx.echo(f"  size       {_mb(r.size)} ({_mb(r.size_over_base)} over {r.base})")
        app_ctx.echo(
            f"  contents   Python {r.python_version}, cosign {r.cosign_version}, {r.wheels} wheels"
        )
        app_ctx.echo(f"  built in   {r.seconds:.0f} s")
        if "pushed" in doc:
            app_ctx.echo(f"  pushed     {doc['pushed']['reference']}@{doc['pushed']['digest']}")


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Image to test.")] = "runnerctl/python:3.11",
) -> None:
    """Run the image's self-tests in throwaway containers; exit 6 unless every check passes.

    Examples:

      runnerctl image verify runnerctl/python:3.11
    """
    from provisioner.errors import ImageError
    from provisioner.images import verify_image

    app_ctx = get_app(ctx)

    def show(check: CheckResult) -> None:
        if not app_ctx.json:
            mark = {"passed": "ok  ", "failed": "FAIL", "skipped": "skip"}[check.status.value]
            app_ctx.echo(f"{mark}  {check.name}: {check.detail}")

    report = verify_image(image, docker=app_ctx.docker(), on_check=show)
    if app_ctx.json:
        app_ctx.emit_json(
            {
                "image": report.image,
                "image_id": report.image_id,
                "ok": report.ok,
                "checks": [to_jsonable(c, convert={"seconds": _round(2)}) for c in report.checks],
            }
        )
    if not report.ok:
        failed = [c.name for c in report.checks if not c.passed]
        raise ImageError(
            f"{image} failed {len(failed)} check(s): {', '.join(failed)}",
            hint="rebuild the image (runnerctl image build --no-cache) and verify again",
        )


@app.command("push")
def push_cmd(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Local image (repo:tag).")],
    registry: Annotated[str, typer.Argument(help="Registry address, host[:port].")],
    sign_key: Annotated[
        Path | None,
        typer.Option(help="cosign private key; its password comes from COSIGN_PASSWORD."),
    ] = None,
    cosign_source: Annotated[
        str, typer.Option(help="cosign used for signing (same forms as image build).")
    ] = "debian:2.5.0-2+b4",
) -> None:
    """Push an image to a registry; with --sign-key, sign it (offline, no tlog) and verify it.

    Examples:

      runnerctl image push runnerctl/python:3.11 127.0.0.1:5000
      runnerctl image push runnerctl/python:3.11 registry.example:5000 --sign-key cosign.key
    """
    from provisioner.images import cosign as cosign_mod
    from provisioner.images import push_image

    app_ctx = get_app(ctx)
    password = os.environ.get("COSIGN_PASSWORD")
    app_ctx.redactor.add(password)
    binary = None
    if sign_key is not None:
        binary = cosign_mod.resolve(cosign_mod.parse_source(cosign_source)).path
    with _Reporter(app_ctx, "push") as report:
        result = push_image(
            image,
            registry,
            docker=app_ctx.docker(),
            cosign=binary,
            sign_key=sign_key,
            password=password,
            on_event=report,
        )
    if app_ctx.json:
        app_ctx.emit_json(
            to_jsonable(result, only=("image", "reference", "digest", "signed", "verified"))
        )
        return
    app_ctx.echo(f"pushed     {result.pinned}")
    if result.signed:
        app_ctx.echo(f"signed     yes; cosign verify: {'ok' if result.verified else 'FAILED'}")
