"""Git smart HTTP for the sandbox: a CGI bridge to ``git http-backend``, and GitLab's refusals.

The server core authenticates the request and picks the bare repository; this module runs
``git http-backend`` for it, streaming the request body in and the response out, so clones,
shallow clones, fetches and pushes (protocol v0 and v2, gzip request bodies) behave as real git
expects.

The refusal helpers answer exactly as GitLab's ``Repositories::GitHttpController`` does
(``text/plain`` bodies, which git echoes prefixed with ``remote:``), so a user sees the same lines
in front of the sandbox as in front of GitLab:

* 401 with ``WWW-Authenticate: Basic realm="GitLab"`` for anonymous or bad credentials. git only
  sends URL credentials after this challenge, so anonymous requests must get it, even for
  projects that do not exist (no existence leak).
* 404 for a project the caller cannot see, 403 for a job token outside the allowlist or a push
  without rights.

No secret reaches the ``git`` process: its environment is built from scratch (``PATH`` and the
CGI variables) and holds the user name only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import SandboxError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "ACCESS_DENIED_TEXT",
    "DOWNLOAD_FORBIDDEN_TEXT",
    "NOT_FOUND_TEXT",
    "PUSH_FORBIDDEN_TEXT",
    "GitHttpBackend",
    "download_forbidden_response",
    "git_subpath",
    "init_bare_repo",
    "is_push",
    "job_token_forbidden_response",
    "not_found_response",
    "push_forbidden_response",
    "unauthorized_response",
]

log = logging.getLogger(__name__)

# Modern GitLab's texts (``git_http_client_controller.rb``, ``lib/gitlab/git_access.rb``).
ACCESS_DENIED_TEXT = (
    "HTTP Basic: Access denied. If a password was provided for Git authentication, the password "
    "was incorrect or you're required to use a token instead of a password. If a token was "
    "provided, it was either incorrect, expired, or improperly scoped. See "
    "{base_url}/help/topics/git/troubleshooting_git#error-on-git-fetch-http-basic-access-denied"
)
NOT_FOUND_TEXT = (
    "The project you were looking for could not be found or you don't have permission to view it."
)
ALLOWLIST_REFUSED_TEXT = "Authentication by CI/CD job token not allowed from {source} to {target}."
PUSH_FORBIDDEN_TEXT = "You are not allowed to push code to this project."
DOWNLOAD_FORBIDDEN_TEXT = "You are not allowed to download code from this project."

DEFAULT_BRANCH = "main"
_CGI_HEADER_LIMIT = 64 * 1024
_SUBPATH = re.compile(
    r"\.git(/(?:HEAD|info/refs|git-upload-pack|git-receive-pack|objects/.+|info/.+))$"
)


def _text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import PlainTextResponse

    return PlainTextResponse(text, status_code=status, headers=headers)


def unauthorized_response(*, base_url: str = "") -> Response:
    """401 ``HTTP Basic: Access denied...`` with GitLab's Basic challenge.

    Args:
        base_url: the instance URL the help link points into (GitLab's ``help_page_url``).
    """
    return _text_response(
        401,
        ACCESS_DENIED_TEXT.format(base_url=base_url.rstrip("/")),
        {"WWW-Authenticate": 'Basic realm="GitLab"'},
    )


def not_found_response() -> Response:
    """404 for a project that does not exist or that the caller may not see."""
    return _text_response(404, NOT_FOUND_TEXT)


def job_token_forbidden_response(source_path: str, target_path: str) -> Response:
    """403 for a CI/CD job token of ``source_path`` not on ``target_path``'s allowlist."""
    return _text_response(
        403, ALLOWLIST_REFUSED_TEXT.format(source=source_path, target=target_path)
    )


def push_forbidden_response() -> Response:
    """403 for a user or job token without push rights (job tokens can never push)."""
    return _text_response(403, PUSH_FORBIDDEN_TEXT)


def download_forbidden_response() -> Response:
    """403 for a user who may see the project but not read its code."""
    return _text_response(403, DOWNLOAD_FORBIDDEN_TEXT)


def git_subpath(url_path: str) -> str | None:
    """The git endpoint after the ``.git`` component (``/info/refs``...), or None."""
    match = _SUBPATH.search(url_path)
    return match.group(1) if match else None


def is_push(subpath: str, query: str) -> bool:
    """True for the two requests of a push: the receive-pack advertisement and the pack."""
    if subpath == "/git-receive-pack":
        return True
    return subpath == "/info/refs" and "service=git-receive-pack" in query


def _git(*args: str, cwd: Path | None = None) -> None:
    try:
        subprocess.run(
            ["git", *args],
            cwd=cwd,
            check=True,
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_CONFIG_NOSYSTEM": "1"},
        )
    except FileNotFoundError as exc:
        raise SandboxError(
            "git is not installed", hint="Install git (apt-get install git); the sandbox needs it."
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise SandboxError(
            f"git {args[0]} failed: {exc.stderr.strip()}",
            hint="Check that the sandbox data directory is writable.",
        ) from exc


def init_bare_repo(path: Path, *, default_branch: str = DEFAULT_BRANCH) -> None:
    """Create a bare repository served over HTTP (idempotent: an existing HEAD is kept).

    ``HEAD`` points at ``default_branch`` so clones check it out without the
    "remote HEAD refers to nonexistent ref" warning once the branch exists.
    """
    if not (path / "HEAD").is_file():
        path.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path))
    for key, value in (
        ("http.receivepack", "true"),
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowReachableSHA1InWant", "true"),
        ("receive.advertisePushOptions", "true"),
    ):
        _git("config", "--file", str(path / "config"), key, value)


class GitHttpBackend:
    """Serve smart-HTTP requests for bare repositories under ``repos_root``."""

    def __init__(self, repos_root: Path) -> None:
        self.repos_root = repos_root

    def _cgi_env(
        self, request: Request, repo_dir: Path, subpath: str, remote_user: str
    ) -> dict[str, str]:
        try:
            relative = repo_dir.resolve().relative_to(self.repos_root.resolve())
            project_root, path_info = self.repos_root.resolve(), f"/{relative.as_posix()}{subpath}"
        except ValueError:
            project_root, path_info = repo_dir.resolve().parent, f"/{repo_dir.name}{subpath}"
        headers = request.headers
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path_info,
            "QUERY_STRING": request.url.query,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": request.client.host if request.client else "127.0.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        if "content-length" in headers:
            env["CONTENT_LENGTH"] = headers["content-length"]
        if "content-encoding" in headers:
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        if "git-protocol" in headers:
            # http-backend turns HTTP_GIT_PROTOCOL into GIT_PROTOCOL for upload-pack (v2).
            env["HTTP_GIT_PROTOCOL"] = headers["git-protocol"]
            env["GIT_PROTOCOL"] = headers["git-protocol"]
        return env

    async def handle(
        self, request: Request, repo_dir: Path, *, remote_user: str, allow_push: bool
    ) -> Response:
        """Run ``git http-backend`` for one request on the bare repository ``repo_dir``.

        Args:
            request: the Starlette request (its URL path ends in ``<project>.git/<endpoint>``).
            repo_dir: the bare repository the caller may access (the core checked auth).
            remote_user: the authenticated user name for the reflog (never a token).
            allow_push: whether receive-pack is allowed; if not, GitLab's 403 is returned.
        """
        subpath = git_subpath(request.url.path)
        if subpath is None or not (repo_dir / "HEAD").is_file():
            return not_found_response()
        if is_push(subpath, request.url.query) and not allow_push:
            return push_forbidden_response()
        env = self._cgi_env(request, repo_dir, subpath, remote_user)
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        feeder = asyncio.create_task(_feed(request, process))
        drainer = asyncio.create_task(_drain_stderr(process))
        assert process.stdout is not None
        try:
            status, headers, leftover = await _read_cgi_headers(process.stdout)
        except (asyncio.IncompleteReadError, ValueError):
            await _finish(process, feeder, drainer)
            log.warning("git http-backend gave no CGI header for %s", request.url.path)
            return _text_response(500, "500 Internal Server Error")
        return _cgi_response(_body(process, leftover, feeder, drainer), status, headers)


def _cgi_response(body: AsyncIterator[bytes], status: int, headers: dict[str, str]) -> Response:
    """A streaming response that never reads from ``receive``.

    Starlette's StreamingResponse listens for ``http.disconnect`` by calling ``receive()``, which
    would steal the request body chunks still being fed to http-backend (a push streams its pack
    *after* the CGI headers came out), and the push would hang.
    """
    from starlette.responses import Response

    class CgiResponse(Response):
        def __init__(self) -> None:
            # No Response.__init__: it would declare Content-Length: 0 for the empty content.
            self.status_code = status
            self.background = None
            self.raw_headers = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # noqa: ARG002
            await send(
                {"type": "http.response.start", "status": status, "headers": self.raw_headers}
            )
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return CgiResponse()


async def _feed(request: Request, process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    try:
        async for chunk in request.stream():
            if chunk:
                process.stdin.write(chunk)
                await process.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # http-backend stopped reading (it answered an error); the answer still counts
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.close()


async def _drain_stderr(process: asyncio.subprocess.Process) -> bytes:
    assert process.stderr is not None
    data = await process.stderr.read()
    if data:
        log.debug("git http-backend: %s", data.decode(errors="replace").strip())
    return data


async def _read_cgi_headers(
    stdout: asyncio.StreamReader,
) -> tuple[int, dict[str, str], bytes]:
    """Parse the CGI header block: ``Status:``, ``Content-Type`` and the rest."""
    buffer = b""
    while True:
        for separator in (b"\r\n\r\n", b"\n\n"):
            index = buffer.find(separator)
            if index >= 0:
                head, rest = buffer[:index], buffer[index + len(separator) :]
                return (*_parse_headers(head.decode("latin-1")), rest)
        if len(buffer) > _CGI_HEADER_LIMIT:
            raise ValueError("CGI header block too large")
        chunk = await stdout.read(4096)
        if not chunk:
            raise ValueError("CGI output ended before the header block")
        buffer += chunk


def _parse_headers(block: str) -> tuple[int, dict[str, str]]:
    status = 200
    headers: dict[str, str] = {}
    for line in block.splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers[name] = value
    return status, headers


async def _body(
    process: asyncio.subprocess.Process,
    leftover: bytes,
    feeder: asyncio.Task[None],
    drainer: asyncio.Task[bytes],
) -> AsyncIterator[bytes]:
    assert process.stdout is not None
    complete = False
    try:
        if leftover:
            yield leftover
        while chunk := await process.stdout.read(65536):
            yield chunk
        complete = True
    finally:
        if not complete and process.returncode is None:
            process.kill()  # the client went away: nobody will read the rest
        await _finish(process, feeder, drainer)


async def _finish(
    process: asyncio.subprocess.Process, feeder: asyncio.Task[None], drainer: asyncio.Task[bytes]
) -> None:
    if process.returncode is None:
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()
    for task in (feeder, drainer):
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
