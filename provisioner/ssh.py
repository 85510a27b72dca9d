"""SSH adapter: the only module that imports paramiko.

It turns paramiko's objects and exceptions into ours: :class:`SSHSession` runs commands (with
``sudo`` when asked), opens SFTP (as root through ``sudo sftp-server`` when the login user is
not root) and holds remote ``flock`` locks; connection failures become :class:`SSHError` with
a :class:`SSHFailure` kind, so the preflight can say *which* fix applies.

Host keys follow OpenSSH's rules: keys are looked up in a known_hosts file (``~/.ssh/known_hosts``
by default); an unknown key is refused unless ``accept_new`` is set, and then it is saved; a
key that differs from the saved one is always refused.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import HostError, UsageError

if TYPE_CHECKING:
    import paramiko

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
)


class SSHFailure(StrEnum):
    """Why a connection could not be made."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    AUTH = "auth"
    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    PROTOCOL = "protocol"
    DISCONNECTED = "disconnected"


class SSHError(HostError):
    """An SSH connection or command failed (exit 5); ``kind`` says how."""

    def __init__(self, message: str, *, kind: SSHFailure, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.kind = kind


@dataclass(frozen=True)
class SSHTarget:
    """``[user@]host[:port]``."""

    host: str
    user: str
    port: int = 22

    @classmethod
    def parse(cls, text: str, *, default_user: str | None = None) -> SSHTarget:
        """Parse ``[user@]host[:port]`` (IPv6 as ``[addr]:port``)."""
        raw = text.strip()
        user, _, hostport = raw.rpartition("@")
        host, port = hostport, 22
        if hostport.startswith("["):
            inner, _, rest = hostport[1:].partition("]")
            host = inner
            if rest.startswith(":"):
                port = _port(rest[1:], raw)
        elif hostport.count(":") == 1:
            host, _, port_text = hostport.partition(":")
            port = _port(port_text, raw)
        if not host or any(c.isspace() for c in raw):
            raise UsageError(
                f"not a host: {text!r}",
                hint="Name hosts as [USER@]HOST[:PORT], e.g. ops@10.0.0.5 or ops@vm1:2222.",
            )
        return cls(host=host, user=user or default_user or getpass.getuser(), port=port)

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH files this host's key under."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{self.host}{port}"


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"bad port in {raw!r}", hint="A port is a number from 1 to 65535.")
    return int(text)


@dataclass(frozen=True)
class SSHOptions:
    """How to authenticate and which host keys to trust."""

    key_file: Path | None = None
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    accept_new: bool = False
    use_agent: bool = True
    timeout: float = 10.0
    become_password: str | None = field(default=None, repr=False)

    @property
    def known_hosts_path(self) -> Path:
        """``known_hosts`` with ``~`` expanded."""
        return self.known_hosts.expanduser()


@dataclass(frozen=True)
class CommandResult:
    """What a remote command did."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True on exit status 0."""
        return self.exit_code == 0


class SFTP:
    """The few SFTP operations the remote config store needs (paths are remote)."""

    def __init__(self, client: paramiko.SFTPClient) -> None:
        self._client = client

    def read_text(self, path: str) -> str | None:
        """The file's UTF-8 text, or None when it does not exist."""
        with _translate(f"sftp read {path}"):
            try:
                with self._client.open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return None
        return bytes(data).decode("utf-8")

    def exists(self, path: str) -> bool:
        """True when ``path`` exists."""
        with _translate(f"sftp stat {path}"):
            try:
                self._client.stat(path)
            except FileNotFoundError:
                return False
        return True

    def mode(self, path: str) -> tuple[int, int, int] | None:
        """(permission bits, uid, gid) of ``path``, or None when missing."""
        with _translate(f"sftp stat {path}"):
            try:
                st = self._client.stat(path)
            except FileNotFoundError:
                return None
        return stat.S_IMODE(st.st_mode or 0), st.st_uid or 0, st.st_gid or 0

    def write_new(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Create ``path`` (it must not exist) with ``mode`` before any byte is written."""
        with _translate(f"sftp write {path}"), self._client.open(path, "wx") as fh:
            fh.chmod(mode)
            fh.write(data)
            fh.flush()

    def chown(self, path: str, uid: int, gid: int) -> None:
        """Change the owner (needs root)."""
        with _translate(f"sftp chown {path}"):
            self._client.chown(path, uid, gid)

    def chmod(self, path: str, mode: int) -> None:
        """Change the permission bits."""
        with _translate(f"sftp chmod {path}"):
            self._client.chmod(path, mode)

    def rename_over(self, source: str, target: str) -> None:
        """Atomically replace ``target`` (posix-rename@openssh.com)."""
        with _translate(f"sftp rename {source}"):
            self._client.posix_rename(source, target)

    def listdir(self, path: str) -> list[str]:
        """Names in a directory ([] when it does not exist)."""
        with _translate(f"sftp list {path}"):
            try:
                return sorted(self._client.listdir(path))
            except FileNotFoundError:
                return []

    def remove(self, path: str) -> None:
        """Delete a file (missing is fine)."""
        with _translate(f"sftp remove {path}"), contextlib.suppress(FileNotFoundError):
            self._client.remove(path)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        """Create a directory (existing is fine)."""
        with _translate(f"sftp mkdir {path}"):
            if not self.exists(path):
                self._client.mkdir(path, mode)

    def close(self) -> None:
        """Close the SFTP channel."""
        with contextlib.suppress(Exception):
            self._client.close()


class SSHSession:
    """One authenticated SSH connection to a host."""

    def __init__(self, client: paramiko.SSHClient, target: SSHTarget, options: SSHOptions) -> None:
        self._client = client
        self.target = target
        self.options = options

    # ---- lifecycle

    @classmethod
    def connect(cls, target: SSHTarget, options: SSHOptions) -> SSHSession:
        """Connect and authenticate, or raise :class:`SSHError` saying why not."""
        import paramiko

        known = options.known_hosts_path
        client = paramiko.SSHClient()
        if known.exists():
            with _translate("read known_hosts"):
                client.load_host_keys(str(known))
        client.set_missing_host_key_policy(_host_key_policy(options.accept_new, known))
        try:
            client.connect(
                target.host,
                port=target.port,
                username=target.user,
                key_filename=str(options.key_file.expanduser()) if options.key_file else None,
                allow_agent=options.use_agent,
                look_for_keys=options.key_file is None,
                timeout=options.timeout,
                banner_timeout=options.timeout,
                auth_timeout=options.timeout,
            )
        except (_UnknownKey, paramiko.SSHException, OSError) as exc:
            client.close()
            raise _connect_error(exc, target, options) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        return cls(client, target, options)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()

    def __enter__(self) -> SSHSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def is_root(self) -> bool:
        """True when the login user is root."""
        return self.target.user == "root"

    # ---- commands

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        """Run ``command`` through the login shell; secrets go through ``stdin``, never argv."""
        with _translate(f"{self.target}: run command"):
            channel = self._open_channel(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = _drain(channel)
            code = channel.recv_exit_status()
            channel.close()
        return CommandResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def sudo_prefix(self) -> str:
        """``sudo -n`` (or ``sudo -S`` fed the become password), '' when already root."""
        if self.is_root:
            return ""
        if self.options.become_password is not None:
            return "sudo -S -p '' "
        return "sudo -n "

    def sudo(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> CommandResult:
        """Run ``command`` as root (the become password, if any, is sent on stdin)."""
        return self.run(
            self.sudo_prefix() + "sh -c " + shlex.quote(command),
            stdin=self._password_bytes() + (stdin or b""),
            timeout=timeout,
        )

    def _password_bytes(self) -> bytes:
        if self.is_root or self.options.become_password is None:
            return b""
        return (self.options.become_password + "\n").encode()

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHError(
                f"{self.target}: the connection is closed",
                kind=SSHFailure.DISCONNECTED,
                hint="Run again; check the host's network if it keeps dropping.",
            )
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        return channel

    # ---- SFTP and locks

    def sftp(self, *, as_root: bool = True) -> SFTP:
        """An SFTP client; as root through ``sudo sftp-server`` when the login user is not."""
        import paramiko

        with _translate(f"{self.target}: open SFTP"):
            if self.is_root or not as_root:
                client = self._client.open_sftp()
                return SFTP(client)
            probe = " ".join(shlex.quote(p) for p in SFTP_SERVERS)
            found = self.run(f"for p in {probe}; do [ -x $p ] && echo $p && break; done")
            server = found.stdout.strip()
            if not server:
                raise SSHError(
                    f"{self.target}: no sftp-server binary found",
                    kind=SSHFailure.PROTOCOL,
                    hint="Install openssh-sftp-server on the host.",
                )
            channel = self._open_channel(60)
            channel.exec_command(self.sudo_prefix() + shlex.quote(server))
            if pw := self._password_bytes():
                channel.sendall(pw)
            client = paramiko.SFTPClient(channel)
        return SFTP(client)

    @contextlib.contextmanager
    def remote_lock(self, lock_path: str, *, timeout: float = 120) -> Iterator[None]:
        """Hold ``flock`` on ``lock_path`` as root until the block ends.

        The lock is the same one a local ``runnerctl`` on the host takes, so both exclude
        each other; if this connection dies, sshd ends the command and the lock is released.
        """
        directory = os.path.dirname(lock_path) or "/"
        script = (
            f"mkdir -p -m 0700 {shlex.quote(directory)} && "
            f"exec flock -w {int(timeout)} {shlex.quote(lock_path)} "
            "sh -c 'echo locked; exec cat >/dev/null'"
        )
        with _translate(f"{self.target}: lock {lock_path}"):
            channel = self._open_channel(timeout + 10)
            channel.exec_command(self.sudo_prefix() + "sh -c " + shlex.quote(script))
            if pw := self._password_bytes():
                channel.sendall(pw)
            line = b""
            while not line.endswith(b"\n"):
                chunk = channel.recv(64)
                if not chunk:
                    break
                line += chunk
        if line.strip() != b"locked":
            err = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
            channel.close()
            raise SSHError(
                f"{self.target}: could not lock {lock_path} ({err or 'no answer'})",
                kind=SSHFailure.PROTOCOL,
                hint="Another writer holds the lock, or sudo refused: check `sudo -n true`.",
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                channel.shutdown_write()
                channel.recv_exit_status()
            channel.close()


def _drain(channel: paramiko.Channel) -> tuple[bytes, bytes]:
    """Read stdout and stderr to the end without either pipe filling up."""
    out: list[bytes] = []
    err: list[bytes] = []

    def read_err() -> None:
        while chunk := channel.recv_stderr(32768):
            err.append(chunk)

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    while chunk := channel.recv(32768):
        out.append(chunk)
    reader.join()
    return b"".join(out), b"".join(err)


def _connect_error(exc: Exception, target: SSHTarget, options: SSHOptions) -> SSHError:
    """Why a connection failed, and what to do about it."""
    import paramiko

    known = options.known_hosts_path
    match exc:
        case _UnknownKey(fingerprint=fingerprint):
            kind, what = SSHFailure.HOST_KEY_UNKNOWN, f"unknown host key ({fingerprint})"
            hint = (
                "Check the fingerprint out of band, then run again with --accept-new "
                f"(it is saved to {known})."
            )
        case paramiko.BadHostKeyException(key=key):
            kind, what = (
                SSHFailure.HOST_KEY_CHANGED,
                f"the host key changed (got {_fingerprint(key)})",
            )
            hint = (
                "If the host was rebuilt, remove its old key: "
                f"ssh-keygen -R {shlex.quote(target.known_hosts_name)} -f {known}"
            )
        case paramiko.AuthenticationException():
            kind, what = SSHFailure.AUTH, "authentication failed (key refused)"
            hint = (
                f"Install your public key in ~{target.user}/.ssh/authorized_keys on the "
                "host (ssh-copy-id), load it in ssh-agent, or pass --key-file."
            )
        case TimeoutError():
            kind, what = SSHFailure.TIMEOUT, f"connection timed out after {options.timeout:g}s"
            hint = (
                "Check the address, that the VM is up, and that port "
                f"{target.port} is open in its firewall / security group."
            )
        case OSError():  # NoValidConnectionsError is one too
            kind, what = SSHFailure.UNREACHABLE, f"cannot connect ({exc.strerror or exc})"
            hint = (
                f"Check that sshd runs on {target.host} port {target.port} and that the "
                "address is routable from here."
            )
        case _:
            kind, what, hint = (
                SSHFailure.PROTOCOL,
                f"SSH failed ({exc})",
                "Check that the port speaks SSH.",
            )
    return SSHError(f"{target}: {what}", kind=kind, hint=hint)


class _UnknownKey(Exception):
    def __init__(self, fingerprint: str) -> None:
        super().__init__(fingerprint)
        self.fingerprint = fingerprint


def _fingerprint(key: paramiko.PKey) -> str:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _host_key_policy(accept_new: bool, known_hosts: Path) -> paramiko.MissingHostKeyPolicy:
    """StrictHostKeyChecking=yes (refuse unknown keys) or accept-new (save them)."""
    import paramiko

    class Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(
            self,
            client: paramiko.SSHClient,  # noqa: ARG002 (paramiko's signature)
            hostname: str,  # noqa: ARG002
            key: paramiko.PKey,
        ) -> None:
            raise _UnknownKey(_fingerprint(key))

    class AcceptNew(paramiko.MissingHostKeyPolicy):
        def missing_host_key(
            self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
        ) -> None:
            client.get_host_keys().add(hostname, key.get_name(), key)
            known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
            fd = os.open(known_hosts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)

    return AcceptNew() if accept_new else Refuse()


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """paramiko and socket errors raised inside the block become :class:`SSHError`."""
    import paramiko

    try:
        yield
    except SSHError:
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError):
            raise
        raise SSHError(
            f"{what}: {exc or type(exc).__name__}",
            kind=SSHFailure.DISCONNECTED,
            hint="The connection failed mid-way; run again (writes are atomic, nothing is "
            "half-written).",
        ) from exc


def generate_key(path: Path) -> str:
    """Write a new ed25519 private key (OpenSSH format, 0600) and return its public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, private)
    finally:
        os.close(fd)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode() + " runnerctl"
