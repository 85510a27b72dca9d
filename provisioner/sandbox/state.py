"""SQLite state of the sandbox: one database file under the data directory.

Every access goes through :class:`Store`, which serialises writers with one lock (the sandbox
serves a handful of clients; SQLite in WAL mode with one connection is plenty and survives
restarts). Secrets (personal access tokens, runner tokens, job tokens) are stored only as SHA-256
digests; the root token's plain text lives in ``root_token`` (mode 0600) beside the database.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.errors import SandboxError

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
  id INTEGER PRIMARY KEY, username TEXT UNIQUE NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, namespace_id INTEGER);
CREATE TABLE IF NOT EXISTS tokens (
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, name TEXT NOT NULL,
  digest TEXT UNIQUE NOT NULL, scopes TEXT NOT NULL, created_at TEXT NOT NULL,
  expires_at TEXT, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS namespaces (
  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL,
  path TEXT NOT NULL,
  full_path TEXT UNIQUE NOT NULL, parent_id INTEGER, description TEXT NOT NULL DEFAULT '',
  visibility TEXT NOT NULL DEFAULT 'private', created_at TEXT NOT NULL, runners_token TEXT);
CREATE TABLE IF NOT EXISTS projects (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, namespace_id INTEGER NOT NULL,
  description TEXT, visibility TEXT NOT NULL, default_branch TEXT NOT NULL,
  created_at TEXT NOT NULL, last_activity_at TEXT NOT NULL, creator_id INTEGER NOT NULL,
  ci_config_path TEXT, shared_runners_enabled INTEGER NOT NULL DEFAULT 1,
  group_runners_enabled INTEGER NOT NULL DEFAULT 1, runners_token TEXT NOT NULL,
  build_timeout INTEGER NOT NULL DEFAULT 3600, ci_default_git_depth INTEGER NOT NULL DEFAULT 20,
  job_token_scope_enabled INTEGER NOT NULL DEFAULT 1,
  UNIQUE (namespace_id, path));
CREATE TABLE IF NOT EXISTS archived_projects (project_id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS members (
  source_type TEXT NOT NULL, source_id INTEGER NOT NULL, user_id INTEGER NOT NULL,
  access_level INTEGER NOT NULL, created_at TEXT NOT NULL,
  PRIMARY KEY (source_type, source_id, user_id));
CREATE TABLE IF NOT EXISTS job_token_allowlist (
  project_id INTEGER NOT NULL, source_project_id INTEGER NOT NULL,
  PRIMARY KEY (project_id, source_project_id));
CREATE TABLE IF NOT EXISTS variables (
  project_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, variable_type TEXT NOT NULL,
  protected INTEGER NOT NULL, masked INTEGER NOT NULL, raw INTEGER NOT NULL,
  environment_scope TEXT NOT NULL, description TEXT, hidden INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, key, environment_scope));
CREATE TABLE IF NOT EXISTS runners (
  id INTEGER PRIMARY KEY, digest TEXT UNIQUE NOT NULL, runner_type TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '', paused INTEGER NOT NULL DEFAULT 0,
  locked INTEGER NOT NULL DEFAULT 0, run_untagged INTEGER NOT NULL DEFAULT 1,
  tag_list TEXT NOT NULL DEFAULT '[]', maximum_timeout INTEGER, access_level TEXT NOT NULL,
  maintenance_note TEXT, created_at TEXT NOT NULL, contacted_at TEXT, created_by INTEGER,
  version TEXT, revision TEXT, platform TEXT, architecture TEXT, name TEXT,
  token_expires_at TEXT, group_id INTEGER, legacy INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS runner_projects (
  runner_id INTEGER NOT NULL, project_id INTEGER NOT NULL, PRIMARY KEY (runner_id, project_id));
CREATE TABLE IF NOT EXISTS runner_managers (
  id INTEGER PRIMARY KEY, runner_id INTEGER NOT NULL, system_id TEXT NOT NULL,
  created_at TEXT NOT NULL, contacted_at TEXT, version TEXT, revision TEXT, platform TEXT,
  architecture TEXT, UNIQUE (runner_id, system_id));
CREATE TABLE IF NOT EXISTS pipelines (
  id INTEGER PRIMARY KEY, iid INTEGER NOT NULL, project_id INTEGER NOT NULL, ref TEXT NOT NULL,
  sha TEXT NOT NULL, before_sha TEXT NOT NULL, tag INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL, source TEXT NOT NULL, user_id INTEGER, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, yaml_errors TEXT,
  variables TEXT NOT NULL DEFAULT '[]', pipeline_variables TEXT NOT NULL DEFAULT '{}',
  stages TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS pipelines_project ON pipelines (project_id, id);
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY, pipeline_id INTEGER NOT NULL, project_id INTEGER NOT NULL,
  name TEXT NOT NULL, stage TEXT NOT NULL, stage_idx INTEGER NOT NULL, status TEXT NOT NULL,
  spec TEXT NOT NULL, when_ TEXT NOT NULL, allow_failure INTEGER NOT NULL,
  created_at TEXT NOT NULL, queued_at TEXT, started_at TEXT, finished_at TEXT,
  runner_id INTEGER, token_digest TEXT, failure_reason TEXT, exit_code INTEGER,
  retried INTEGER NOT NULL DEFAULT 0, user_id INTEGER, checksum TEXT, coverage REAL);
CREATE INDEX IF NOT EXISTS jobs_pipeline ON jobs (pipeline_id, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE TABLE IF NOT EXISTS pipeline_schedules (
  id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, description TEXT NOT NULL,
  ref TEXT NOT NULL, cron TEXT NOT NULL, cron_timezone TEXT NOT NULL,
  next_run_at TEXT NOT NULL, active INTEGER NOT NULL, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, owner_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pipeline_schedule_variables (
  schedule_id INTEGER NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  variable_type TEXT NOT NULL, PRIMARY KEY (schedule_id, key));
CREATE TABLE IF NOT EXISTS pipeline_schedule_pipelines (
  schedule_id INTEGER NOT NULL, pipeline_id INTEGER NOT NULL,
  PRIMARY KEY (schedule_id, pipeline_id));
CREATE TABLE IF NOT EXISTS artifacts (
  id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, file_type TEXT NOT NULL,
  filename TEXT NOT NULL, file_format TEXT NOT NULL, size INTEGER NOT NULL,
  path TEXT NOT NULL, expire_at TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS packages (
  id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL, name TEXT NOT NULL,
  normalized_name TEXT NOT NULL, version TEXT NOT NULL, package_type TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'default', created_at TEXT NOT NULL, pipeline_id INTEGER,
  UNIQUE (project_id, package_type, normalized_name, version));
CREATE TABLE IF NOT EXISTS package_files (
  id INTEGER PRIMARY KEY, package_id INTEGER NOT NULL, file_name TEXT NOT NULL,
  size INTEGER NOT NULL, sha256 TEXT NOT NULL, md5 TEXT NOT NULL, sha1 TEXT NOT NULL,
  path TEXT NOT NULL, requires_python TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
"""

# Tables whose ``id`` GitLab exposes. SQLite's plain ``INTEGER PRIMARY KEY`` hands out
# ``MAX(id) + 1`` and so reuses the id of a deleted last row; GitLab never reuses one (a stale
# config.toml holding runner 1 must not reach a newer runner 1). A ``sequences`` row per table
# keeps the high-water mark, which also works for data dirs created before it existed.
SEQUENCED_TABLES = frozenset(
    {
        "users",
        "tokens",
        "namespaces",
        "projects",
        "runners",
        "runner_managers",
        "pipelines",
        "pipeline_schedules",
        "jobs",
        "artifacts",
        "packages",
        "package_files",
    }
)

# (table, column, declaration) added after the first release of the schema.
MIGRATIONS = (
    ("variables", "hidden", "INTEGER NOT NULL DEFAULT 0"),
    ("runners", "updated_at", "TEXT"),
)

ROOT_TOKEN_FILE = "root_token"  # noqa: S105 - a file name, not a secret


def digest(token: str) -> str:
    """SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def now_iso(moment: datetime | None = None) -> str:
    """GitLab's REST timestamp: ISO-8601 UTC with milliseconds and a ``Z``."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`now_iso` (``None`` stays ``None``)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_token(prefix: str, length: int = 20) -> str:
    """A random token with GitLab's alphabet (letters, digits, ``_`` and ``-``)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


Row = sqlite3.Row

DATABASE_FILE = "sandbox.sqlite3"
LOCK_FILE = "sandbox.lock"


def _lock_data_dir(data_dir: Path) -> int:
    """Hold ``<data-dir>/sandbox.lock`` (with our pid in it) for as long as the store is open.

    Two sandboxes on one data dir would each believe they own the SQLite file, the
    repositories and the id sequences. The lock is released by the kernel when the process
    dies, so a killed sandbox never blocks the next one.
    """
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SandboxError(
            f"the data dir {data_dir} is in use by another sandbox (pid {holder})",
            hint=f"stop that sandbox (kill {holder}), or pass another --data-dir",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unusable(data_dir: Path, exc: Exception) -> SandboxError:
    if isinstance(exc, SandboxError):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return SandboxError(
        f"cannot use {data_dir} as the sandbox's data dir: {reason}",
        hint="pass --data-dir a directory this user can create and write (not a file)",
    )


class Store:
    """The sandbox database plus the data-directory layout (repos, traces, artifacts, packages)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._holder = _lock_data_dir(data_dir)
        except OSError as exc:
            raise _unusable(data_dir, exc) from exc
        try:
            for sub in ("repos", "traces", "artifacts", "packages"):
                (data_dir / sub).mkdir(exist_ok=True)
            database = data_dir / DATABASE_FILE
            # Tokens are stored as digests, but the database still says who may do what.
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
            os.chmod(database, 0o600)
            self._conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            os.close(self._holder)
            raise _unusable(data_dir, exc) from exc
        self._lock = threading.RLock()
        self._depth = 0

    def _migrate(self) -> None:
        """Columns added since a data dir was created (``CREATE TABLE IF NOT EXISTS`` skips)."""
        for table, column, decl in MIGRATIONS:
            have = {row["name"] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    @property
    def repos_root(self) -> Path:
        return self.data_dir / "repos"

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._holder >= 0:
                os.close(self._holder)  # releases the data-dir lock
                self._holder = -1

    @contextmanager
    def tx(self) -> Iterator[None]:
        """A write transaction (re-entrant: nested calls join the outer one)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            return list(self._conn.execute(sql, tuple(args)).fetchall())

    def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        with self._lock:
            row: Row | None = self._conn.execute(sql, tuple(args)).fetchone()
            return row

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.one(sql, args)
        return None if row is None else row[0]

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Execute a write; returns ``lastrowid``."""
        with self._lock:
            cur = self._conn.execute(sql, tuple(args))
            return int(cur.lastrowid or 0)

    def next_value(self, name: str, current_max: int = 0) -> int:
        """The next number of sequence ``name``: above every number it ever handed out."""
        with self._lock:
            last = self.scalar("SELECT last FROM sequences WHERE name = ?", [name]) or 0
            value = max(int(last), current_max) + 1
            self.run(
                "INSERT INTO sequences (name, last) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last = excluded.last",
                [name, value],
            )
            return value

    def next_id(self, table: str) -> int:
        """A fresh id for ``table``, never one a deleted row had."""
        with self._lock:
            current = self.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {table}")  # noqa: S608
            return self.next_value(table, int(current))

    def insert(self, table: str, values: dict[str, Any]) -> int:
        with self._lock:
            if "id" not in values and table in SEQUENCED_TABLES:
                values = {"id": self.next_id(table), **values}
            return self._insert(table, values)

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return self.run(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(values.values()))  # noqa: S608

    def update(self, table: str, row_id: int, values: dict[str, Any]) -> None:
        if not values:
            return
        sets = ", ".join(f"{k} = ?" for k in values)
        self.run(f"UPDATE {table} SET {sets} WHERE id = ?", [*values.values(), row_id])  # noqa: S608

    # settings -----------------------------------------------------------------------------

    def setting(self, key: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM settings WHERE key = ?", [key])
        return default if value is None else str(value)

    def set_setting(self, key: str, value: str) -> None:
        self.run("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", [key, value])

    # bootstrap ----------------------------------------------------------------------------

    def bootstrap(self) -> str:
        """Create root, its namespace and a root PAT on first start; return the root PAT."""
        token_file = self.data_dir / ROOT_TOKEN_FILE
        with self.tx():
            if self.one("SELECT id FROM users WHERE id = 1") is None:
                now = now_iso()
                ns = self.insert(
                    "namespaces",
                    {
                        "kind": "user",
                        "name": "Administrator",
                        "path": "root",
                        "full_path": "root",
                        "created_at": now,
                    },
                )
                self.insert(
                    "users",
                    {
                        "id": 1,
                        "username": "root",
                        "name": "Administrator",
                        "email": "admin@example.com",
                        "is_admin": 1,
                        "created_at": now,
                        "namespace_id": ns,
                    },
                )
                self.set_setting("instance_runners_token", new_token("GR1348941", 20))
                self.set_setting("allow_runner_registration_token", "false")
            if token_file.exists():
                token = token_file.read_text().strip()
                if self.one("SELECT id FROM tokens WHERE digest = ?", [digest(token)]):
                    return token
            token = new_token("glpat-", 20)
            self.insert(
                "tokens",
                {
                    "user_id": 1,
                    "name": "sandbox-root",
                    "digest": digest(token),
                    "scopes": json.dumps(
                        [
                            "api",
                            "read_api",
                            "read_user",
                            "create_runner",
                            "manage_runner",
                            "read_repository",
                            "write_repository",
                            "sudo",
                            "admin_mode",
                        ]
                    ),
                    "created_at": now_iso(),
                },
            )
            write_secret_file(token_file, token + "\n")
            return token
