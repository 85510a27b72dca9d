"""config.toml on a runner host, over SFTP, with the local store's guarantees.

:class:`RemoteConfigStore` has :class:`~provisioner.runner_config.ConfigStore`'s interface
(``path``, ``load``, ``update``, ``save``), so registration takes either. A transaction:

1. takes ``flock`` on ``config.toml.lock`` on the host (as root, through sudo): the same lock a
   local ``runnerctl`` on the host takes, so the two exclude each other;
2. reads the file over SFTP (as root through ``sudo sftp-server`` when the login user is not
   root) and runs the caller's change through the shared merge step
   (:func:`~provisioner.runner_config.store.apply_change`): a token the runner rotated on the
   host (newer ``token_obtained_at`` on disk) is never replaced by a stale copy;
3. writes a temp file (created 0600 before any byte is written), flushes it to disk
   (``sync FILE``), keeps a backup copy of the old file, sets owner root and renames the temp
   over config.toml atomically (posix-rename);
4. releases the lock and reloads gitlab-runner (``systemctl reload``: SIGHUP) when its service
   is running.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol, cast

from provisioner.errors import ConfigError
from provisioner.runner_config.document import ConfigDocument
from provisioner.runner_config.store import Mutator, UpdateResult, apply_change
from provisioner.ssh import SFTP, CommandResult

DEFAULT_REMOTE_PATH = "/etc/gitlab-runner/config.toml"


class RemoteHost(Protocol):
    """What the store needs from an SSH session (:class:`provisioner.ssh.SSHSession`)."""

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        """Run a command as root."""
        ...

    def sftp(self, *, as_root: bool = True) -> SFTP:
        """An SFTP client (as root)."""
        ...

    def remote_lock(
        self, lock_path: str, *, timeout: float = 120
    ) -> contextlib.AbstractContextManager[None]:
        """Hold flock on ``lock_path``."""
        ...


class RemotePath(PurePosixPath):
    """A path on a host, shown as ``host:/path``; :meth:`exists` asks the host."""

    exists_fn: Callable[[], bool] | None = None

    def exists(self) -> bool:
        """True when the file exists on the host."""
        return bool(self.exists_fn and self.exists_fn())


class RemoteConfigStore:
    """gitlab-runner's config.toml on a host reached over SSH."""

    def __init__(
        self,
        host: RemoteHost,
        path: str = DEFAULT_REMOTE_PATH,
        *,
        label: str = "",
        keep_backups: int = 5,
        reload: bool = True,
        service: str = "gitlab-runner",
    ) -> None:
        self._host = host
        self.remote_path = path
        # `path` is what messages and results show: host:path, like scp. Its exists() asks the
        # host, so code written for the local store (dry runs) keeps working.
        remote = RemotePath(f"{label}:{path}" if label else path)
        remote.exists_fn = lambda: self.read_text() is not None
        self.path = cast(Path, remote)
        self.keep_backups = keep_backups
        self.reload = reload
        self.service = service
        self.reloaded = False

    @property
    def lock_path(self) -> str:
        """The sibling file that is flock'ed during a transaction."""
        return self.remote_path + ".lock"

    def read_text(self) -> str | None:
        """The current text, or None when the file does not exist."""
        sftp = self._host.sftp()
        try:
            return sftp.read_text(self.remote_path)
        finally:
            sftp.close()

    def load(self) -> ConfigDocument:
        """The current document (no lock needed: writes are atomic renames)."""
        text = self.read_text()
        if text is None:
            raise ConfigError(
                f"config file not found: {self.path}",
                hint="Provision the host first (runnerctl host provision), or register a "
                "runner there (runnerctl register --host).",
            )
        return ConfigDocument.parse(text, source=str(self.path))

    def merged_text(self, document: ConfigDocument) -> tuple[str, tuple[str, ...]]:
        """What :meth:`save` would write for ``document`` now (disk-wins applied), unwritten."""
        change = apply_change(self.read_text(), lambda _fresh: document, source=str(self.path))
        return change.new_text, change.kept_from_disk

    def update(self, fn: Mutator, *, create: bool = False) -> UpdateResult:
        """Run ``fn`` on the freshly read document under the host's lock and write the result."""
        with self._host.remote_lock(self.lock_path):
            sftp = self._host.sftp()
            try:
                old_text = sftp.read_text(self.remote_path)
                if old_text is None and not create:
                    raise ConfigError(
                        f"config file not found: {self.path}",
                        hint="Provision the host first (runnerctl host provision).",
                    )
                change = apply_change(old_text, fn, source=str(self.path))
                if not change.changed:
                    return UpdateResult(
                        self.path, changed=False, kept_from_disk=change.kept_from_disk
                    )
                backup = self._write(sftp, change.new_text, old_text)
            finally:
                sftp.close()
        self._reload()
        return UpdateResult(
            self.path,
            changed=True,
            backup=cast(Path, backup) if backup else None,
            kept_from_disk=change.kept_from_disk,
        )

    def save(self, document: ConfigDocument, *, create: bool = True) -> UpdateResult:
        """Replace the file with ``document`` (token fields: the disk wins when newer)."""
        return self.update(lambda _fresh: document, create=create)

    def backups(self) -> list[str]:
        """Remote paths of the backups, oldest first."""
        sftp = self._host.sftp()
        try:
            return self._backups(sftp)
        finally:
            sftp.close()

    # ---- internals

    def _backups(self, sftp: SFTP) -> list[str]:
        directory, name = posixpath.split(self.remote_path)
        return [
            posixpath.join(directory, n)
            for n in sftp.listdir(directory)
            if n.startswith(name + ".bak.")
        ]

    def _write(self, sftp: SFTP, text: str, old_text: str | None) -> PurePosixPath | None:
        directory, name = posixpath.split(self.remote_path)
        sftp.mkdir(directory, 0o700)
        for stale in sftp.listdir(directory):  # only lock holders make temps: leftovers are dead
            if stale.startswith(f".{name}.") and stale.endswith(".tmp"):
                sftp.remove(posixpath.join(directory, stale))
        temp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            sftp.write_new(temp, text.encode("utf-8"), mode=0o600)
            sftp.chown(temp, 0, 0)
            synced = self._host.sudo(f"sync {shlex.quote(temp)}")
            if not synced.ok:
                raise ConfigError(f"cannot flush {temp} on the host: {synced.stderr.strip()}")
            backup: PurePosixPath | None = None
            if old_text is not None:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                backup_path = f"{self.remote_path}.bak.{stamp}"
                sftp.write_new(backup_path, old_text.encode("utf-8"), mode=0o600)
                backup = PurePosixPath(backup_path)
            sftp.rename_over(temp, self.remote_path)
        except BaseException:
            with contextlib.suppress(Exception):
                sftp.remove(temp)
            raise
        for old in self._backups(sftp)[: max(0, len(self._backups(sftp)) - self.keep_backups)]:
            sftp.remove(old)
        return backup

    def _reload(self) -> None:
        if not self.reload:
            return
        service = shlex.quote(self.service)
        result = self._host.sudo(
            f"if systemctl is-active --quiet {service}; then systemctl reload {service}; "
            "echo reloaded; fi"
        )
        self.reloaded = result.ok and "reloaded" in result.stdout
