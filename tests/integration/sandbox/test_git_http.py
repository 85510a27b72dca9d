"""Real git against GitHttpBackend mounted in a tiny Starlette app served by uvicorn.

The auth function here is test-only (Basic user:password checked against a dict); the sandbox
core has its own. What is under test is the CGI bridge and GitLab's refusals as git prints them.
"""

from __future__ import annotations

import base64
import gzip
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provisioner.sandbox.git_http import (
    GitHttpBackend,
    init_bare_repo,
    job_token_forbidden_response,
    not_found_response,
    unauthorized_response,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.sandbox

# Test-only fake credentials: user -> (password, may push).
USERS = {"alice": ("alice-test-pass", True), "bob": ("bob-test-pass", False)}
# Test-only fake job tokens: token -> the project the job runs in.
JOB_TOKENS = {"jobtok-demo": "grp/demo", "jobtok-other": "grp/other"}
PROJECTS = ("grp/demo", "grp/other")


@dataclass
class Server:
    url: str
    root: Path
    seen_protocols: list[str] = field(default_factory=list)
    seen_users: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_app(root: Path, state: Server) -> Starlette:
    backend = GitHttpBackend(root)

    async def git(request: Request) -> Response:
        path = request.url.path
        project = path.split(".git/", 1)[0].strip("/")
        state.seen_protocols.append(request.headers.get("git-protocol", ""))
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return unauthorized_response(base_url=state.url)
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if user == "gitlab-ci-token":
            source = JOB_TOKENS.get(password)
            if source is None:
                return unauthorized_response(base_url=state.url)
            if project not in PROJECTS:
                return not_found_response()
            if source != project:
                return job_token_forbidden_response(source, project)
            state.seen_users.append(user)
            return await backend.handle(
                request, root / f"{project}.git", remote_user=user, allow_push=False
            )
        expected, may_push = USERS.get(user, (None, False))
        if expected is None or password != expected:
            return unauthorized_response(base_url=state.url)
        if project not in PROJECTS:
            return not_found_response()
        state.seen_users.append(user)
        return await backend.handle(
            request, root / f"{project}.git", remote_user=user, allow_push=may_push
        )

    return Starlette(routes=[Route("/{path:path}", git, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("repos")
    for project in PROJECTS:
        init_bare_repo(root / f"{project}.git")
    init_bare_repo(root / "grp/demo.git")  # idempotent
    port = _free_port()
    state = Server(url=f"http://127.0.0.1:{port}", root=root)
    config = uvicorn.Config(
        _make_app(root, state), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()

    def started() -> bool:
        if uv.started:
            return True
        assert thread.is_alive(), "uvicorn died while starting"
        return False

    wait_until(started, timeout=20, interval=0.05, message="uvicorn did not start")
    _seed(state)
    yield state
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "LC_ALL": "C",
    }


def git(
    *args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["git", "-c", "credential.helper=", "-c", "protocol.version=2", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def url(server: Server, user: str, password: str, project: str = "grp/demo") -> str:
    host = server.url.removeprefix("http://")
    return f"http://{user}:{password}@{host}/{project}.git"


def _seed(server: Server) -> None:
    """Push three commits to grp/demo through the backend itself (as alice)."""
    work = server.root.parent / "seed"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(server.root.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Seed",
        "GIT_AUTHOR_EMAIL": "seed@example.invalid",
        "GIT_COMMITTER_NAME": "Seed",
        "GIT_COMMITTER_EMAIL": "seed@example.invalid",
    }
    git("init", "-q", "-b", "main", str(work), env=env)
    for number in range(3):
        (work / "README.md").write_text(f"revision {number}\n")
        git("add", "README.md", env=env, cwd=work)
        git("commit", "-q", "-m", f"revision {number}", env=env, cwd=work)
    git("push", "-q", url(server, "alice", "alice-test-pass"), "main", env=env, cwd=work)


def test_full_clone_with_user_credentials(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "clone"
    git("clone", url(server, "alice", "alice-test-pass"), str(target), env=git_env)
    assert (target / "README.md").read_text() == "revision 2\n"
    count = git("rev-list", "--count", "HEAD", env=git_env, cwd=target).stdout.strip()
    assert count == "3"
    branch = git("symbolic-ref", "--short", "HEAD", env=git_env, cwd=target).stdout.strip()
    assert branch == "main"
    assert "version=2" in server.seen_protocols


def test_shallow_clone_with_job_token(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "shallow"
    git(
        "clone",
        "--depth",
        "1",
        url(server, "gitlab-ci-token", "jobtok-demo"),
        str(target),
        env=git_env,
    )
    assert git("rev-list", "--count", "HEAD", env=git_env, cwd=target).stdout.strip() == "1"
    assert (target / ".git" / "shallow").is_file()
    assert "gitlab-ci-token" in server.seen_users


def test_protocol_v0_clone_still_works(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "v0"
    result = subprocess.run(
        [
            *("git", "-c", "credential.helper=", "-c", "protocol.version=0", "clone", "-q"),
            *(url(server, "bob", "bob-test-pass"), str(target)),
        ],
        check=False,
        env=git_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "README.md").is_file()


def test_push_then_fetch(server: Server, git_env: dict[str, str], tmp_path: Path) -> None:
    writer, reader = tmp_path / "writer", tmp_path / "reader"
    git("clone", "-q", url(server, "alice", "alice-test-pass"), str(writer), env=git_env)
    git("clone", "-q", url(server, "bob", "bob-test-pass"), str(reader), env=git_env)
    (writer / "new.txt").write_text("pushed\n")
    git("add", "new.txt", env=git_env, cwd=writer)
    git("commit", "-q", "-m", "push over http", env=git_env, cwd=writer)
    git("push", "-q", "origin", "main", env=git_env, cwd=writer)
    head = git("rev-parse", "HEAD", env=git_env, cwd=writer).stdout.strip()
    served = subprocess.run(
        ["git", "--git-dir", str(server.root / "grp/demo.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert served == head
    git("fetch", "-q", "origin", env=git_env, cwd=reader)
    assert git("rev-parse", "origin/main", env=git_env, cwd=reader).stdout.strip() == head


def test_push_refused_for_reader(server: Server, git_env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "bob"
    git("clone", "-q", url(server, "bob", "bob-test-pass"), str(work), env=git_env)
    (work / "x.txt").write_text("x\n")
    git("add", "x.txt", env=git_env, cwd=work)
    git("commit", "-q", "-m", "not allowed", env=git_env, cwd=work)
    result = git("push", "origin", "main", env=git_env, cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: You are not allowed to push code to this project." in result.stderr
    assert (
        f"fatal: unable to access '{server.url}/grp/demo.git/': "
        "The requested URL returned error: 403"
    ) in result.stderr


def test_push_refused_for_job_token(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "job"
    git("clone", "-q", url(server, "gitlab-ci-token", "jobtok-demo"), str(work), env=git_env)
    (work / "y.txt").write_text("y\n")
    git("add", "y.txt", env=git_env, cwd=work)
    git("commit", "-q", "-m", "job push", env=git_env, cwd=work)
    result = git("push", "origin", "main", env=git_env, cwd=work, check=False)
    assert result.returncode != 0
    assert "remote: You are not allowed to push code to this project." in result.stderr
    assert "The requested URL returned error: 403" in result.stderr


def test_anonymous_clone_gets_basic_challenge(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    result = git(
        "clone", f"{server.url}/grp/demo.git", str(tmp_path / "anon"), env=git_env, check=False
    )
    assert result.returncode == 128
    host = server.url.removeprefix("http://")
    assert (
        f"fatal: could not read Username for 'http://{host}': terminal prompts disabled"
        in result.stderr
    )


def test_bad_password_is_access_denied(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    result = git(
        "clone", url(server, "alice", "wrong"), str(tmp_path / "bad"), env=git_env, check=False
    )
    assert result.returncode == 128
    assert "remote: HTTP Basic: Access denied. If a password was provided" in result.stderr
    assert (
        f"{server.url}/help/topics/git/troubleshooting_git#error-on-git-fetch-http-basic-access-denied"
        in result.stderr
    )
    assert f"fatal: Authentication failed for '{server.url}/grp/demo.git/'" in result.stderr


def test_unknown_project_is_not_found(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    result = git(
        "clone",
        url(server, "alice", "alice-test-pass", project="grp/missing"),
        str(tmp_path / "missing"),
        env=git_env,
        check=False,
    )
    assert result.returncode == 128
    assert (
        "remote: The project you were looking for could not be found or you don't have "
        "permission to view it."
    ) in result.stderr
    assert f"fatal: repository '{server.url}/grp/missing.git/' not found" in result.stderr


def test_job_token_outside_allowlist(
    server: Server, git_env: dict[str, str], tmp_path: Path
) -> None:
    result = git(
        "clone",
        url(server, "gitlab-ci-token", "jobtok-other"),
        str(tmp_path / "other"),
        env=git_env,
        check=False,
    )
    assert result.returncode == 128
    assert (
        "remote: Authentication by CI/CD job token not allowed from grp/other to grp/demo."
        in result.stderr
    )
    assert (
        f"fatal: unable to access '{server.url}/grp/demo.git/': "
        "The requested URL returned error: 403"
    ) in result.stderr


AUTH_ALICE = ("alice", "alice-test-pass")
AUTH_BOB = ("bob", "bob-test-pass")


def test_gzip_request_body_is_inflated(server: Server) -> None:
    """git gzips large upload-pack requests; http-backend must see HTTP_CONTENT_ENCODING."""
    head = subprocess.run(
        ["git", "--git-dir", str(server.root / "grp/demo.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    want = f"want {head}\n"
    body = f"{len(want) + 4:04x}{want}00000009done\n".encode()
    response = requests.post(
        f"{server.url}/grp/demo.git/git-upload-pack",
        data=gzip.compress(body),
        auth=AUTH_ALICE,
        headers={
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Encoding": "gzip",
        },
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-result"
    assert response.content.startswith(b"0008NAK\n")
    assert b"PACK" in response.content


def test_info_refs_advertisement_headers(server: Server) -> None:
    response = requests.get(
        f"{server.url}/grp/demo.git/info/refs?service=git-upload-pack", auth=AUTH_BOB, timeout=30
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert "no-cache" in response.headers["Cache-Control"]
    assert response.content.startswith(b"001e# service=git-upload-pack\n")


def test_receive_pack_advertisement_refused_without_push(server: Server) -> None:
    response = requests.get(
        f"{server.url}/grp/demo.git/info/refs?service=git-receive-pack", auth=AUTH_BOB, timeout=30
    )
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.text == "You are not allowed to push code to this project."


def test_unauthorized_response_shape(server: Server) -> None:
    response = requests.get(f"{server.url}/grp/demo.git/info/refs", timeout=30)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="GitLab"'
    assert response.text.startswith("HTTP Basic: Access denied. If a password was provided")


def test_dumb_http_path_of_unknown_endpoint_is_not_found(server: Server) -> None:
    response = requests.get(f"{server.url}/grp/demo.git/config", auth=AUTH_BOB, timeout=30)
    assert response.status_code == 404


def test_init_bare_repo_is_idempotent_and_served_from_main(tmp_path: Path) -> None:
    repo = tmp_path / "g" / "p.git"
    init_bare_repo(repo)
    init_bare_repo(repo)
    head = (repo / "HEAD").read_text()
    assert head == "ref: refs/heads/main\n"
    config = subprocess.run(
        ["git", "config", "--file", str(repo / "config"), "--get-all", "http.receivepack"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert config == "true\n"
    bare = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "--is-bare-repository"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert bare == "true\n"


def test_init_bare_repo_other_default_branch_keeps_existing_head(tmp_path: Path) -> None:
    repo = tmp_path / "trunk.git"
    init_bare_repo(repo, default_branch="trunk")
    init_bare_repo(repo)  # a second call never moves HEAD
    assert (repo / "HEAD").read_text() == "ref: refs/heads/trunk\n"


def test_concurrent_clones(server: Server, git_env: dict[str, str], tmp_path: Path) -> None:
    """http-backend processes run side by side without blocking the event loop."""

    def clone(index: int) -> str:
        target = tmp_path / f"c{index}"
        git("clone", "-q", url(server, "bob", "bob-test-pass"), str(target), env=git_env)
        return git("rev-parse", "HEAD", env=git_env, cwd=target).stdout.strip()

    with ThreadPoolExecutor(max_workers=6) as pool:
        heads = list(pool.map(clone, range(6)))
    served = subprocess.run(
        ["git", "--git-dir", str(server.root / "grp/demo.git"), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert heads == [served] * 6
