"""The sandbox ASGI application and how it is started (foreground or background thread)."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from provisioner.errors import SandboxError
from provisioner.sandbox import (
    api_archive,
    api_groups,
    api_instance,
    api_members,
    api_packages,
    api_pipelines,
    api_projects,
    api_repository,
    api_runners,
    api_schedules,
    api_users,
    api_variables,
    control,
    git_routes,
    graphql_source,
    idtokens,
    runner_protocol,
)
from provisioner.sandbox.faults import LOST_502, LOST_DROP, Faults
from provisioner.sandbox.schedules import ScheduleClock, Scheduler
from provisioner.sandbox.state import Store
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    Router,
    UploadedFile,
    bad_request,
    json_response,
)

log = logging.getLogger(__name__)

GIT_PATH = re.compile(
    r"^/(?P<project>.+?)\.git/(?P<rest>info/refs|git-upload-pack|"
    r"git-receive-pack|HEAD|objects/.*)$"
)


@dataclass(frozen=True)
class SandboxOptions:
    """How to run the sandbox."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8929
    latency_ms: int = 0
    fault_rate: float = 0.0
    external_url: str | None = None
    seed: int | None = None
    tls_cert: Path | None = None  # serve HTTPS with this certificate (PEM) and key
    tls_key: Path | None = None
    lost_answer_rate: float = 0.0
    schedule_tick: float = 60.0  # real seconds per minute of cron time (pipeline schedules)


class SandboxApp:
    """The ASGI application: routes on the raw path, faults, then the route handler."""

    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self.store = Store(options.data_dir)
        self.root_token = self.store.bootstrap()
        self.external_url = options.external_url.rstrip("/") if options.external_url else None
        self.faults = Faults(
            latency_ms=options.latency_ms,
            fault_rate=options.fault_rate,
            lost_answer_rate=options.lost_answer_rate,
            seed=options.seed,
        )
        self.router = Router()
        self.signer = idtokens.Signer(options.data_dir)
        for module in (
            api_instance,
            api_users,
            api_groups,
            api_members,
            api_projects,
            api_archive,
            api_variables,
            api_repository,
            api_runners,
            api_pipelines,
            api_schedules,
            runner_protocol,
            api_packages,
            idtokens,
            control,
        ):
            self.router.extend(module.routes)
        self.extras: dict[str, Any] = {}
        self.requests = RequestCounter()
        self.schedule_clock = ScheduleClock(tick=options.schedule_tick)
        api_schedules.realign(self.store, self.schedule_clock.now())
        self.scheduler = Scheduler(
            self.schedule_clock, lambda now: api_schedules.run_due(self.store, now)
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except ApiError as exc:
            response = exc.response()
        except Exception:
            log.exception("sandbox: unhandled error on %s %s", request.method, scope.get("path"))
            response = json_response({"message": "500 Internal Server Error"}, 500)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        scope = request.scope
        raw = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        self.requests.count(self._route_key(request.method, raw_path))
        if raw_path.startswith("/api/"):
            if self.faults.latency_ms:
                await asyncio.sleep(self.faults.latency_ms / 1000)
            status = self.faults.pick(f"{request.method} {raw_path}")
            if status is not None:
                return self.faults.response(status)
        git = GIT_PATH.match(raw_path)
        if git is not None:
            served: Response = await git_routes.handle(
                self, request, git.group("project"), git.group("rest")
            )
            return served
        if raw_path == "/api/graphql" and request.method == "POST":
            body = await request.body()
            ctx = self._ctx(request, raw_path, body)
            result: Response = await anyio.to_thread.run_sync(graphql_source.handle, ctx)
            return result
        route, params, other_method = self.router.match(request.method, raw_path)
        if route is None:
            if other_method:
                return json_response({"error": "405 Not Allowed"}, 405)
            if raw_path.startswith("/api/"):
                return json_response({"error": "404 Not Found"}, 404)
            return Response("Not Found", status_code=404, media_type="text/plain")
        ctx = await self._route_ctx(request, raw_path)
        ctx.params = params
        handler = route.handler
        response: Response = await anyio.to_thread.run_sync(_call, handler, ctx)
        if raw_path.startswith("/api/"):
            return self._maybe_lose(f"{request.method} {raw_path}", response)
        return response

    def _maybe_lose(self, key: str, response: Response) -> Response:
        """The handler ran; with ``lost_answer_rate``, its answer may never reach the client."""
        lost = self.faults.pick_lost(key)
        if lost == LOST_502:
            return self.faults.lost_response()
        if lost == LOST_DROP:
            return _DroppedAnswer()
        return response

    async def _route_ctx(self, request: Request, raw_path: str) -> Ctx:
        """The handler's context, with the body read (and a multipart form parsed)."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            ctx = self._ctx(request, raw_path, b"")
            try:
                form = await request.form(max_files=100, max_fields=10_000, max_part_size=16 << 20)
            except MultiPartException as exc:
                # A missing boundary or a broken part: Rack answers 400 before any route runs.
                raise bad_request("Invalid multipart body") from exc
            for key, value in form.multi_items():
                if isinstance(value, str):
                    ctx.form.setdefault(key, []).append(value)
                else:
                    ctx.files[key] = UploadedFile(
                        value.filename or "", await value.read(), value.content_type or ""
                    )
            await form.close()
            return ctx
        return self._ctx(request, raw_path, await request.body())

    def _route_key(self, method: str, raw_path: str) -> str:
        """``METHOD /template`` of the route a request is for (its path when none matches)."""
        if GIT_PATH.match(raw_path) is not None:
            return f"{method} git"
        if raw_path == "/api/graphql":
            return f"{method} /api/graphql"
        route, _params, _other = self.router.match(method, raw_path)
        return f"{method} {route.template if route is not None else raw_path}"

    def _ctx(self, request: Request, raw_path: str, body: bytes) -> Ctx:
        scope = request.scope
        host = request.headers.get("host") or "{}:{}".format(*scope.get("server", ("", 0)))
        return Ctx(
            method=request.method,
            raw_path=raw_path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            scheme=scope.get("scheme", "http"),
            host=host,
            app=self,
        )


class RequestCounter:
    """Requests received per route (``GET /api/v4/groups/{id}/projects``), faults included.

    Tests and benchmarks read it to count what a client's operation cost
    (``handle.app.requests``, or ``GET /-/sandbox/requests`` with an admin token).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, by route."""
        with self._lock:
            return dict(self._counts)

    def total(self, prefix: str = "") -> int:
        """All requests whose key starts with ``prefix`` (``"POST /api/graphql"``...)."""
        with self._lock:
            return sum(n for key, n in self._counts.items() if key.startswith(prefix))

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _DroppedAnswer(Response):
    """Headers promising a body that never comes: the connection closes mid-response."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # noqa: ARG002
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        # Returning now, with the body unsent, makes uvicorn close the transport.


class _QuietDrops(logging.Filter):
    """uvicorn reports an incomplete response as an error; for an injected drop it is wanted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


_QUIET_DROPS = _QuietDrops()


def _call(handler: Callable[[Ctx], Response], ctx: Ctx) -> Response:
    try:
        return handler(ctx)
    except ApiError as exc:
        return exc.response()
    except OverflowError:
        # An integer beyond SQLite's 64 bits that reached a query without ``to_int``
        # (GitLab's Grape coercion refuses it as invalid).
        return bad_request("integer out of range").response()


# starting -----------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that say so, and without it every response waits ~40 ms on delayed ACKs.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError, OverflowError) as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise SandboxError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                hint="pick another --port, or stop whatever already listens there",
            ) from exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SandboxError(
            f"cannot listen on {host!r}: {reason}",
            hint="pass --host an IP address of this machine, such as 127.0.0.1 or ::1",
        ) from exc
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(app: SandboxApp) -> Any:
    import uvicorn

    tls = app.options
    logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        ssl_certfile=str(tls.tls_cert) if tls.tls_cert else None,
        ssl_keyfile=str(tls.tls_key) if tls.tls_key else None,
    )
    return uvicorn.Server(config)


@dataclass
class SandboxHandle:
    """A running sandbox: ``url``, the root PAT, the app (for its store and faults), ``stop()``."""

    url: str
    root_token: str
    app: SandboxApp
    data_dir: Path
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.app.scheduler.stop()
        self.app.store.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _url(host: str, port: int, *, tls: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def start_background(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    latency_ms: int = 0,
    fault_rate: float = 0.0,
    external_url: str | None = None,
    seed: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    lost_answer_rate: float = 0.0,
    schedule_tick: float = 60.0,
) -> SandboxHandle:
    """Start the sandbox in a daemon thread and return once it accepts connections."""
    options = SandboxOptions(
        data_dir=Path(data_dir),
        host=host,
        port=port,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        external_url=external_url,
        seed=seed,
        tls_cert=tls_cert,
        tls_key=tls_key,
        lost_answer_rate=lost_answer_rate,
        schedule_tick=schedule_tick,
    )
    sock = bind(host, port)
    try:
        app = SandboxApp(options)
    except BaseException:
        sock.close()
        raise
    actual = sock.getsockname()[1]
    server = _uvicorn_server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="gitlab-sandbox"
    )
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        if not thread.is_alive():
            raise SandboxError("the sandbox server stopped while starting")
        threading.Event().wait(0.01)
    else:
        raise SandboxError("the sandbox server did not start within 10 s")
    app.scheduler.start()
    return SandboxHandle(
        url=external_url or _url(host, actual, tls=tls_cert is not None),
        root_token=app.root_token,
        app=app,
        data_dir=Path(data_dir),
        _server=server,
        _thread=thread,
    )


def serve_forever(options: SandboxOptions, on_ready: Callable[[str, str, Path], None]) -> None:
    """Run in the foreground until interrupted; ``on_ready(url, root_token, token_file)``."""
    sock = bind(options.host, options.port)
    try:
        app = SandboxApp(options)
    except BaseException:
        sock.close()
        raise
    server = _uvicorn_server(app)
    url = options.external_url or _url(
        options.host, sock.getsockname()[1], tls=options.tls_cert is not None
    )
    on_ready(url, app.root_token, options.data_dir / "root_token")
    app.scheduler.start()
    try:
        server.run(sockets=[sock])
    finally:
        app.scheduler.stop()
        app.store.close()
