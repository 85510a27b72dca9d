"""gitlab-runner rewrites config.toml (a token it rotated) without runnerctl's lock.

At every step of register, unregister and token rotate (each API call and each stage of the
write), another process rotates the resident runner's token the way gitlab-runner does: new
token, new ``token_obtained_at``, atomic rename. The rotated token must always survive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.errors import ConfigError
from provisioner.registration import Executor, ExecutorConfig, Scope, parse_scope
from provisioner.registration.service import (
    RegisterRequest,
    register,
    rotate_token,
    unregister,
)
from provisioner.runner_config import ConfigStore
from tests.unit.registration.fakes import BASE, FakeGitLab, make_api

RESIDENT = (
    'concurrent = 1\n\n[[runners]]\n  name = "resident"\n  url = "https://other.example"\n'
    '  id = 7\n  token = "glrt-resident-old"\n'
    "  token_obtained_at = 2020-01-01T00:00:00Z\n"
    '  executor = "shell"\n'
)
ROTATED = "glrt-resident-rotated"

# What gitlab-runner does when it rotates its token: rewrite the file and rename it into place.
_ROTATE = r"""
import os, re, sys
from datetime import datetime, timezone
path = sys.argv[1]
text = open(path).read()
text = text.replace('"glrt-resident-old"', '"glrt-resident-rotated"')
stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
text = re.sub(r"token_obtained_at = 2020-01-01T00:00:00Z", "token_obtained_at = " + stamp, text)
tmp = path + ".gitlab-runner.tmp"
open(tmp, "w").write(text)
os.replace(tmp, path)
"""


def _rotate_elsewhere(path: Path) -> None:
    subprocess.run([sys.executable, "-c", _ROTATE, str(path)], check=True)


class _Steps:
    """Calls ``action`` at the ``at``-th step (API call or write stage) only."""

    def __init__(self, at: int, action: Callable[[], None]) -> None:
        self.at = at
        self.count = 0
        self.action = action

    def __call__(self, *_args: Any) -> None:
        if self.count == self.at:
            self.action()
        self.count += 1


class _SteppedGitLab(FakeGitLab):
    steps: _Steps | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self.steps is not None:
            self.steps()
        return super().send(request, **kwargs)


def _request(name: str) -> RegisterRequest:
    return RegisterRequest(
        name=name,
        scope=Scope(parse_scope("instance").runner_type),
        gitlab_url=BASE,
        executor=ExecutorConfig(Executor.SHELL),
        tags=("py",),
    )


def _prepare(path: Path, fake: FakeGitLab, *, with_ci: bool) -> None:
    path.write_text(RESIDENT)
    os.chmod(path, 0o600)
    if with_ci:
        register(_request("ci-1"), gitlab=make_api(fake), store=ConfigStore(path))


def _operation(kind: str, path: Path, fake: FakeGitLab, store: ConfigStore) -> None:
    if kind == "register":
        register(_request("ci-1"), gitlab=make_api(fake), store=store)
    elif kind == "unregister":
        unregister(
            name="ci-1", runner_id=None, keep_server=False, gitlab=make_api(fake), store=store
        )
    else:
        rotate_token("ci-1", gitlab=make_api(fake), store=store)


def _count_steps(kind: str, tmp_path: Path) -> int:
    fake = _SteppedGitLab()
    path = tmp_path / "count.toml"
    _prepare(path, fake, with_ci=kind != "register")
    counter = _Steps(-1, lambda: None)
    fake.steps = counter
    _operation(kind, path, fake, ConfigStore(path, hook=counter))
    return counter.count


@pytest.mark.parametrize("kind", ["register", "unregister", "rotate"])
def test_a_token_rotated_by_gitlab_runner_survives_every_step(kind: str, tmp_path: Path) -> None:
    steps = _count_steps(kind, tmp_path)
    assert steps >= 4  # API calls plus the write's stages
    for at in range(steps):
        fake = _SteppedGitLab()
        path = tmp_path / f"{kind}-{at}.toml"
        _prepare(path, fake, with_ci=kind != "register")
        step = _Steps(at, lambda path=path: _rotate_elsewhere(path))  # type: ignore[misc]
        fake.steps = step
        _operation(kind, path, fake, ConfigStore(path, hook=step))
        runners = {r["name"]: r for r in tomllib.loads(path.read_text())["runners"]}
        assert runners["resident"]["token"] == ROTATED, f"{kind}: lost at step {at}"
        if kind == "unregister":
            assert "ci-1" not in runners
        else:
            ci = runners["ci-1"]
            assert fake.runners[ci["id"]].token == ci["token"], f"{kind}: step {at}"


def test_a_file_that_keeps_changing_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(RESIDENT)
    stamps = iter(range(100))

    def churn(stage: str, _temp: Path) -> None:
        if stage == "before-rename":
            path.write_text(RESIDENT + f"# churn {next(stamps)}\n")

    store = ConfigStore(path, hook=churn)
    with pytest.raises(ConfigError, match="kept changing"):
        store.update(lambda doc: doc.document.__setitem__("concurrent", 4))
    assert "concurrent = 1" in path.read_text()


def test_a_lock_wait_times_out_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(RESIDENT)
    holder = ConfigStore(path)
    waiter = ConfigStore(path, lock_timeout=0.2)
    with holder.locked(), pytest.raises(ConfigError) as caught:
        waiter.update(lambda doc: doc.document.__setitem__("concurrent", 4))
    assert f"pid {os.getpid()}" in caught.value.message
    assert f"kill {os.getpid()}" in (caught.value.hint or "")
    assert path.read_text() == RESIDENT
    waiter.update(lambda doc: doc.document.__setitem__("concurrent", 4))  # free again
    assert "concurrent = 4" in path.read_text()
