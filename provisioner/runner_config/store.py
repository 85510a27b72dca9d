"""Safe reads and writes of config.toml.

Guarantees of :class:`ConfigStore`:

* **Atomic.** A write goes to a temp file in the same directory, is fsynced, then renamed over
  config.toml (and the directory is fsynced). Readers, gitlab-runner included, see the old file
  or the new one, never a mix; a writer killed at any point leaves the old file intact.
* **Private.** The file is written with mode 0600 (kept with its owner when runnerctl runs as
  root); every directory that has to be created gets 0700, as gitlab-runner does.
* **Only regular files are read**, after links are resolved, of at most 1 MiB
  (:data:`MAX_CONFIG_BYTES`). A directory, FIFO, device, socket or symlink loop is a
  :class:`~provisioner.errors.ConfigError` raised before the lock is taken; a FIFO is never
  opened in blocking mode, so it cannot hang a writer that holds the lock.
* **Backed up.** The previous file is kept as ``config.toml.bak.<UTC timestamp>`` (mode 0600);
  only the newest ``keep_backups`` (default 5) are kept.
* **Merged again when gitlab-runner wrote meanwhile.** Just before the rename the file is read
  again; if it differs from what was read under the lock, the change is merged onto the new
  content (gitlab-runner's newer token fields win) and written again, a bounded number of times.
* **A lock wait is bounded.** The lock holder writes its pid into the lock file; a writer that
  waits more than ``lock_timeout`` (120 s) stops with an error naming that pid.
* **Serialised.** Every change is a read-modify-write transaction under an exclusive
  ``fcntl.flock`` on the sibling file ``config.toml.lock``: :meth:`ConfigStore.update` loads
  the file *after* taking the lock and hands the fresh document to the caller's function, so two
  concurrent writers never lose each other's runners.
* **Never stale for what gitlab-runner owns.** ``token``, ``token_obtained_at`` and
  ``token_expires_at`` are rewritten by gitlab-runner itself when it rotates a token. When a
  change would replace them, the caller's values are written only if the caller's
  ``token_obtained_at`` is strictly newer than the one on disk (or the disk has none);
  otherwise the disk's three values are kept (``UpdateResult.kept_from_disk`` names those
  runners). Runners are paired by ``url`` and ``id`` when the id is non-zero, else by ``name``
  and ``url``.
  ``.runner_system_id`` (gitlab-runner's system id, next to config.toml) is never written,
  renamed or removed.
* **Unchanged on bad input.** A file that does not parse is never overwritten: the update
  raises :class:`~provisioner.errors.ConfigError` and nothing on disk changes. A transaction
  that fails leaves no new backup, and when there was no config file before it, no lock file
  and no directory it created either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tomlkit.items import Table

from provisioner.errors import ConfigError
from provisioner.fsutil import StageHook, atomic_write
from provisioner.runner_config.document import RUNNER_OWNED_KEYS, ConfigDocument, set_key

MISSING_HINT = (
    "runnerctl reads --config PATH, else $CONFIG_FILE, else /etc/gitlab-runner/config.toml "
    "when run as root and ~/.gitlab-runner/config.toml otherwise. Pass --config or set "
    "CONFIG_FILE."
)

Mutator = Callable[[ConfigDocument], ConfigDocument | None]

#: How often a write is merged again when the file changed between read and rename.
MAX_MERGES = 5
#: How long a writer waits for another one's lock before it names the holder and gives up.
LOCK_TIMEOUT = 120.0


class _ChangedMeanwhile(Exception):
    """config.toml changed on disk between the read under the lock and the rename."""


def _replay(text: str, *, source: str) -> Mutator:
    """A mutator that puts the already computed ``text`` over fresh content (tokens merged)."""
    return lambda _fresh: ConfigDocument.parse(text, source=source)


def _holder(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


@dataclass(frozen=True)
class UpdateResult:
    """What a transaction did."""

    path: Path
    changed: bool
    backup: Path | None = None
    kept_from_disk: tuple[str, ...] = ()


# gitlab-runner's own files are a few KB; 1 MiB holds about a thousand runners. A bound keeps
# /dev/zero or a runaway file from being read into memory (and the parsers from chewing on it).
MAX_CONFIG_BYTES = 1024 * 1024


def _config_kind(mode: int) -> str | None:
    """What a non-regular file is (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _os_error(path: Path, exc: OSError) -> ConfigError:
    if exc.errno == errno.ENOENT:
        return ConfigError(f"config file not found: {path}", hint=MISSING_HINT)
    if exc.errno == errno.ELOOP:
        return ConfigError(
            f"{path}: too many levels of symbolic links (a symlink loop)",
            hint="Point the link at the real config.toml (check it with `readlink -f`), or "
            "pass --config with the file itself.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ConfigError(
            f"cannot read {path}: permission denied",
            hint="Run as the user that owns it (gitlab-runner's config is usually root's: "
            "use sudo), or pass --config with a readable copy.",
        )
    if exc.errno == errno.ENOTDIR:
        return ConfigError(
            f"config file not found: {path} (a part of the path is not a directory)",
            hint=MISSING_HINT,
        )
    return ConfigError(f"cannot read {path}: {exc.strerror or exc}")


def check_config_file(path: Path) -> bool:
    """Check that ``path`` (links resolved) can be read as config.toml without reading it.

    Returns ``False`` when nothing is there; raises :class:`ConfigError` for a symlink loop, a
    directory, a FIFO, a device or socket, or a file larger than :data:`MAX_CONFIG_BYTES`.
    Writers call this before they take the lock, so a bad ``--config`` never blocks others.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            # A dangling symlink is "not found" too: writing goes through to its target.
            return False
        raise _os_error(path, exc) from None
    _check_stat(path, st)
    return True


def _check_stat(path: Path, st: os.stat_result) -> None:
    kind = _config_kind(st.st_mode)
    if kind == "a directory":
        raise ConfigError(
            f"{path} is a directory, not a config file",
            hint="Point --config at the config.toml file itself.",
        )
    if kind is not None:
        raise ConfigError(
            f"{path} is {kind}, not a regular file",
            hint="config.toml must be a regular file (a symlink to one is fine); pass --config "
            "with the file itself.",
        )
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is {st.st_size} bytes; runnerctl reads config files up to "
            f"{MAX_CONFIG_BYTES} bytes (1 MiB)",
            hint="Is this really gitlab-runner's config.toml? Pass --config with the right file.",
        )


def read_config_text(path: Path) -> str:
    """The text of config.toml, or a :class:`ConfigError` that says what is wrong and what to do.

    Only a regular file (after links are resolved) of at most :data:`MAX_CONFIG_BYTES` is read:
    it is checked with ``stat`` before it is opened (opening a device can have effects), and
    opened with ``O_NONBLOCK`` so that a FIFO swapped in meanwhile cannot hang the read.
    """
    if not check_config_file(path):
        raise ConfigError(f"config file not found: {path}", hint=MISSING_HINT)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(path, exc) from None
    try:
        _check_stat(path, os.fstat(fd))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _os_error(path, exc) from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:  # it grew while being read
        raise ConfigError(
            f"{path} grew beyond {MAX_CONFIG_BYTES} bytes (1 MiB) while it was read",
            hint="Is this really gitlab-runner's config.toml? Pass --config with the right file.",
        )
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start})",
            hint="config.toml must be UTF-8; re-save it with a UTF-8 encoding.",
        ) from None
    # Universal newlines, as Path.read_text gives them.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_config(path: Path) -> ConfigDocument:
    """Read and parse config.toml (errors carry the location of the problem and a hint)."""
    return ConfigDocument.parse(read_config_text(path), source=str(path))


@dataclass(frozen=True)
class Change:
    """The outcome of running a mutator on config.toml's text (nothing written yet)."""

    old_text: str | None
    new_text: str
    kept_from_disk: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the new text differs from the old one."""
        return self.new_text != self.old_text


def apply_change(old_text: str | None, fn: Mutator, *, source: str) -> Change:
    """Run ``fn`` on the document parsed from ``old_text`` (None: gitlab-runner's defaults).

    The one merge step shared by every store (local file, SFTP): the caller's function edits
    the document, then the gitlab-runner-owned token fields are restored where the text on
    disk (``old_text``) is newer. The new text is checked to be loadable TOML.
    """
    if old_text is not None:
        document = ConfigDocument.parse(old_text, source=source)
    else:
        document = ConfigDocument.empty()
    # Parsing may normalise the layout (``runners = [{...}]`` becomes [[runners]] sections);
    # that alone is no reason to rewrite the file.
    baseline = document.dumps()
    before = _owned_snapshot(document)
    result = fn(document)
    if result is not None:
        document = result
    kept = _keep_newer_disk_tokens(before, document)
    new_text = document.dumps()
    if old_text is not None and new_text == baseline:
        return Change(old_text, old_text, kept)
    if new_text != old_text:
        try:  # never write a file that gitlab-runner could not load
            tomllib.loads(new_text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"refusing to write {source}: the edit produced invalid TOML ({exc})",
                hint="Nothing was written. Please report this with the file (tokens removed); "
                "meanwhile make the change by hand and check it with `runnerctl config "
                "validate`.",
            ) from None
    return Change(old_text, new_text, kept)


class ConfigStore:
    """config.toml on disk, changed only through locked, atomic transactions."""

    def __init__(
        self,
        path: Path,
        *,
        keep_backups: int = 5,
        hook: StageHook | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
    ):
        path = Path(path)
        # A symlinked config.toml (common with configuration management) stays a symlink: the
        # file it points to is the one replaced.
        self.path = _follow_link(path)
        self.keep_backups = keep_backups
        self.lock_timeout = lock_timeout
        self._hook = hook

    @property
    def lock_path(self) -> Path:
        """The sibling file that is flock'ed during a transaction."""
        return self.path.with_name(self.path.name + ".lock")

    def load(self) -> ConfigDocument:
        """The current document (no lock needed: writes are atomic renames)."""
        return load_config(self.path)

    def backups(self) -> list[Path]:
        """The backups of this file, oldest first."""
        return sorted(self.path.parent.glob(self.path.name + ".bak.*"))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock (blocking until other writers are done).

        When the block leaves no config file behind (a failed first write), the lock file and
        the directories created for it are removed again, so a failed command leaves no trace.
        """
        created = self._ensure_dir()
        fd = self._acquire()
        try:
            yield
        finally:
            try:
                if not os.path.lexists(self.path):
                    # Unlinked while held: a writer waiting on this inode notices and retries.
                    with contextlib.suppress(OSError):
                        os.unlink(self.lock_path)
                    for directory in reversed(created):
                        with contextlib.suppress(OSError):
                            directory.rmdir()
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def update(self, fn: Mutator, *, create: bool = False) -> UpdateResult:
        """Run ``fn`` on the freshly loaded document under the lock and write the result.

        ``fn`` edits the document it receives (or returns a replacement). With ``create`` a
        missing file starts from gitlab-runner's defaults; otherwise it is an error. A path
        that cannot be a config file (a directory, a FIFO, a device, a symlink loop, a file
        over 1 MiB) is refused before the lock is taken.

        ``fn`` runs once. gitlab-runner does not take runnerctl's lock: when it rewrote the
        file (a token it rotated) between the read and the rename, the result of ``fn`` is
        merged again onto the new content, keeping the newer token fields from disk
        (at most :data:`MAX_MERGES` times).
        """
        if not check_config_file(self.path) and not create:
            raise ConfigError(f"config file not found: {self.path}", hint=MISSING_HINT)
        with self.locked():
            self._remove_stale_temps()
            mutate = fn
            for _attempt in range(MAX_MERGES):
                old_text = self._read_current(create=create)
                change = apply_change(old_text, mutate, source=str(self.path))
                if not change.changed:
                    return UpdateResult(
                        self.path, changed=False, kept_from_disk=change.kept_from_disk
                    )
                try:
                    backup = self._write(
                        change.new_text, had_old=old_text is not None, seen=old_text
                    )
                except _ChangedMeanwhile:
                    mutate = _replay(change.new_text, source=str(self.path))
                    continue
                return UpdateResult(
                    self.path, changed=True, backup=backup, kept_from_disk=change.kept_from_disk
                )
        raise ConfigError(
            f"{self.path} kept changing while runnerctl wrote it ({MAX_MERGES} attempts)",
            hint="Another program (gitlab-runner?) rewrites it constantly; nothing was written. "
            "Re-run once it is quiet.",
        )

    def _read_current(self, *, create: bool) -> str | None:
        if check_config_file(self.path):
            return read_config_text(self.path)
        if create:
            return None
        raise ConfigError(f"config file not found: {self.path}", hint=MISSING_HINT)

    def save(self, document: ConfigDocument, *, create: bool = True) -> UpdateResult:
        """Replace the file with ``document`` (token fields: the disk wins when newer)."""
        return self.update(lambda _fresh: document, create=create)

    # ---- internals

    def _ensure_dir(self) -> list[Path]:
        """Create the missing directories above config.toml, each 0700; returns them, top first."""
        missing: list[Path] = []
        directory = self.path.parent
        while not directory.exists() and directory != directory.parent:
            missing.append(directory)
            directory = directory.parent
        created: list[Path] = []
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)  # whatever the umask says
            except FileExistsError:
                continue  # another writer made it meanwhile
            except OSError as exc:
                for made in reversed(created):
                    with contextlib.suppress(OSError):
                        made.rmdir()
                raise ConfigError(
                    f"cannot create {directory}: {exc.strerror}",
                    hint="Create the directory or pass --config with a writable location.",
                ) from None
            created.append(directory)
        return created

    def _acquire(self) -> int:
        """flock the lock file; retry when the file was unlinked or replaced meanwhile.

        The holder writes its pid into the lock file, so a writer that waits longer than
        ``lock_timeout`` seconds can say which process holds it.
        """
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                self._ensure_dir()  # a failed writer removed the directory it had created
                continue
            except OSError as exc:
                raise ConfigError(
                    f"cannot create {self.lock_path}: {exc.strerror}",
                    hint="Run as the user that owns the config directory (or with sudo).",
                ) from None
            try:
                self._flock(fd, deadline)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.lock_path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)

    def _flock(self, fd: int, deadline: float) -> None:
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                holder = _holder(fd)
                raise ConfigError(
                    f"{self.path} is locked by another runnerctl "
                    + (f"(pid {holder}) " if holder else "")
                    + f"for more than {self.lock_timeout:g} s",
                    hint="Wait for that command to finish"
                    + (f", or stop it (`kill {holder}`) if it hangs" if holder else "")
                    + "; the lock is released when it exits.",
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_stale_temps(self) -> None:
        # Only lock holders create temp files, so any left over belongs to a dead writer.
        for stale in self.path.parent.glob(self._temp_prefix() + "*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _write(self, text: str, *, had_old: bool, seen: str | None) -> Path | None:
        backups: list[Path] = []

        def stage(name: str, temp: Path) -> None:
            if self._hook:
                self._hook(name, temp)
            if name != "before-rename":
                return
            # Compare what is there now with what was read under the lock: gitlab-runner may
            # have rotated its token meanwhile (it does not take our lock).
            now = read_config_text(self.path) if check_config_file(self.path) else None
            if now != seen:
                raise _ChangedMeanwhile
            if had_old:
                backups.append(self._backup())

        try:
            atomic_write(
                self.path,
                text,
                mode=0o600,
                owner_like=self.path if had_old else None,
                hook=stage,
            )
        except BaseException as exc:
            for backup in backups:  # the file was not replaced: its backup is not new
                with contextlib.suppress(OSError):
                    backup.unlink()
            if isinstance(exc, _ChangedMeanwhile):
                raise
            if isinstance(exc, PermissionError):
                raise ConfigError(
                    f"cannot write in {self.path.parent}: {exc.strerror}",
                    hint="Run as the user that owns the config directory (or with sudo).",
                ) from None
            if isinstance(exc, OSError):
                raise ConfigError(
                    f"cannot write {self.path}: {exc.strerror or exc}",
                    hint="Free disk space or fix the permissions; the previous file is intact.",
                ) from None
            raise
        self._prune_backups()
        return backups[0] if backups else None

    def _backup(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.bak.{stamp}")
        counter = 0
        while True:
            try:
                # A hard link keeps the old bytes for free: the rename only moves the name.
                os.link(self.path, target)
                break
            except FileExistsError:
                counter += 1
                target = self.path.with_name(f"{self.path.name}.bak.{stamp}-{counter}")
            except OSError:
                target.write_bytes(self.path.read_bytes())
                break
        os.chmod(target, 0o600)
        return target

    def _prune_backups(self) -> None:
        backups = self.backups()
        for old in backups[: max(0, len(backups) - self.keep_backups)]:
            with contextlib.suppress(OSError):
                old.unlink()


def _follow_link(path: Path) -> Path:
    """The target of a symlinked config.toml (a loop is kept as given: reading reports it)."""
    if not path.is_symlink():
        return path
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python 3.11's "Symlink loop"
        return path


def _direct_values(table: Table, keys: frozenset[str]) -> dict[str, Any]:
    """Plain values of the direct ``keys`` of ``table`` in one pass (tomlkit lookups are slow)."""
    out: dict[str, Any] = {}
    for key, item in table.value.body:
        if key is not None and key.key in keys:
            out[key.key] = item.unwrap() if hasattr(item, "unwrap") else item
    return out


_IDENTITY_KEYS = frozenset({"id", "name", "url"})


def _identity(table: Table) -> tuple[Any, ...]:
    values = _direct_values(table, _IDENTITY_KEYS)
    runner_id = values.get("id")
    if isinstance(runner_id, int) and not isinstance(runner_id, bool) and runner_id:
        # (URL, id): runners of two GitLab instances in one file may share an id.
        return ("id", str(values.get("url", "")).rstrip("/"), int(runner_id))
    return ("name", str(values.get("name", "")), str(values.get("url", "")))


def _obtained_at(table: Mapping[str, Any]) -> datetime | None:
    value = table.get("token_obtained_at")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


_ABSENT = object()


def _owned(table: Table) -> dict[str, Any]:
    values = _direct_values(table, frozenset(RUNNER_OWNED_KEYS))
    return {key: values.get(key, _ABSENT) for key in RUNNER_OWNED_KEYS}


def _owned_snapshot(document: ConfigDocument) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The gitlab-runner-owned values of every runner as loaded from disk (plain copies)."""
    return {_identity(t): _owned(t) for t in document.runner_tables()}


def _keep_newer_disk_tokens(
    on_disk: dict[tuple[Any, ...], dict[str, Any]], after: ConfigDocument
) -> tuple[str, ...]:
    """Restore gitlab-runner-owned fields where the disk's token is newer than the caller's."""
    kept: list[str] = []
    for table in after.runner_tables():
        disk = on_disk.get(_identity(table))
        if disk is None or disk == _owned(table):
            continue
        disk_at = _obtained_at(disk)
        caller_at = _obtained_at(_owned(table))
        if disk_at is None or (caller_at is not None and caller_at > disk_at):
            continue
        for key in RUNNER_OWNED_KEYS:
            if disk[key] is not _ABSENT:
                set_key(table, key, disk[key], path=["runners"])
            elif key in table:
                del table[key]
        kept.append(str(table.get("name") or table.get("id") or table.get("url") or "?"))
    return tuple(kept)
