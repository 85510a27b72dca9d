"""RemoteConfigStore against an in-memory host: the local store's rules, over a fake SFTP."""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Iterator

import pytest

from provisioner.errors import ConfigError
from provisioner.hosts.remote_store import RemoteConfigStore
from provisioner.runner_config import ConfigDocument
from provisioner.ssh import CommandResult

PATH = "/etc/gitlab-runner/config.toml"


class MemorySFTP:
    def __init__(self, host: MemoryHost) -> None:
        self.host = host

    def read_text(self, path: str) -> str | None:
        return self.host.files.get(path)

    def write_new(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        assert path not in self.host.files
        self.host.files[path] = data.decode()
        self.host.modes[path] = (mode, 1000)
        self.host.log.append(f"write {posixpath.basename(path)}")

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.host.modes[path] = (self.host.modes[path][0], uid)

    def rename_over(self, source: str, target: str) -> None:
        assert self.host.locked, "renames happen under the lock"
        self.host.files[target] = self.host.files.pop(source)
        self.host.modes[target] = self.host.modes.pop(source)
        self.host.log.append("rename")

    def listdir(self, path: str) -> list[str]:
        return sorted(posixpath.basename(p) for p in self.host.files if p.startswith(path + "/"))

    def remove(self, path: str) -> None:
        self.host.files.pop(path, None)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryHost:
    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.modes: dict[str, tuple[int, int]] = {}
        self.log: list[str] = []
        self.locked = False
        self.service_active = True

    def sftp(self, *, as_root: bool = True) -> MemorySFTP:
        return MemorySFTP(self)

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        self.log.append("sync" if command.startswith("sync") else "reload")
        if "systemctl" in command:
            return CommandResult(0, "reloaded\n" if self.service_active else "", "")
        return CommandResult(0, "", "")

    @contextlib.contextmanager
    def remote_lock(self, lock_path: str, *, timeout: float = 120) -> Iterator[None]:
        assert lock_path == PATH + ".lock"
        self.locked = True
        self.log.append("lock")
        try:
            yield
        finally:
            self.locked = False
            self.log.append("unlock")


RUNNER = """
[[runners]]
  name = "vm"
  url = "https://gitlab.example.test"
  id = 7
  token = "{token}"
  token_obtained_at = {at}
  executor = "shell"
"""


def test_write_is_locked_synced_renamed_private_and_reloads() -> None:
    host = MemoryHost()
    store = RemoteConfigStore(host, label="ops@vm")
    result = store.update(lambda doc: doc.set_global("concurrent", 3), create=True)
    assert result.changed
    assert result.backup is None
    assert str(result.path) == "ops@vm:/etc/gitlab-runner/config.toml"
    assert host.modes[PATH] == (0o600, 0)
    assert host.log == ["lock", "write " + host.log[1].split()[1], "sync", "rename", "unlock",
                        "reload"]  # fmt: skip
    assert store.reloaded
    assert "concurrent = 3" in host.files[PATH]


def test_backup_and_unchanged() -> None:
    host = MemoryHost()
    host.files[PATH] = "concurrent = 1\n"
    store = RemoteConfigStore(host, keep_backups=1)
    second = store.update(lambda doc: doc.set_global("concurrent", 2))
    assert second.backup is not None
    assert host.files[str(second.backup)] == "concurrent = 1\n"
    store.update(lambda doc: doc.set_global("concurrent", 3))
    assert len(store.backups()) == 1
    host.log.clear()
    assert not store.update(lambda doc: doc.set_global("concurrent", 3)).changed
    assert "rename" not in host.log


def test_missing_file_and_bad_text_change_nothing() -> None:
    host = MemoryHost()
    store = RemoteConfigStore(host)
    with pytest.raises(ConfigError, match="not found"):
        store.update(lambda _doc: None)
    with pytest.raises(ConfigError, match="not found"):
        store.load()
    assert not store.path.exists()
    host.files[PATH] = "concurrent = = 1\n"
    with pytest.raises(ConfigError):
        store.update(lambda doc: doc.set_global("concurrent", 2))
    assert host.files == {PATH: "concurrent = = 1\n"}
    assert store.path.exists()


def test_a_token_rotated_on_the_host_is_kept() -> None:
    host = MemoryHost()
    host.files[PATH] = RUNNER.format(token="glrt-newOnDisk", at="2026-11-20T10:00:00Z")
    stale = RUNNER.format(token="glrt-staleCopy", at="2026-11-01T10:00:00Z")
    stale = "concurrent = 4\n" + stale
    store = RemoteConfigStore(host)
    text, kept = store.merged_text(ConfigDocument.parse(stale))
    assert kept == ("vm",)
    assert "glrt-newOnDisk" in text
    assert "concurrent = 4" in text
    result = store.save(ConfigDocument.parse(stale))
    assert result.kept_from_disk == ("vm",)
    assert "glrt-newOnDisk" in host.files[PATH]
    assert "glrt-staleCopy" not in host.files[PATH]
    newer = RUNNER.format(token="glrt-newerFromController", at="2026-11-21T10:00:00Z")
    assert store.save(ConfigDocument.parse(newer)).kept_from_disk == ()
    assert "glrt-newerFromController" in host.files[PATH]


def test_no_reload_when_the_service_is_stopped() -> None:
    host = MemoryHost()
    host.service_active = False
    store = RemoteConfigStore(host)
    store.update(lambda doc: doc.set_global("concurrent", 2), create=True)
    assert not store.reloaded
