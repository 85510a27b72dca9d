"""Unit tier: no network. Every test runs with an isolated HOME and sockets blocked."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest


class NetworkBlockedError(RuntimeError):
    """Raised when a unit test tries to open a network connection."""


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    return home


@pytest.fixture(autouse=True)
def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise NetworkBlockedError(f"unit tests may not open network connections ({address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", _refuse)


def _refuse(*args: Any, **kwargs: Any) -> socket.socket:
    raise NetworkBlockedError(f"unit tests may not open network connections ({args!r})")
