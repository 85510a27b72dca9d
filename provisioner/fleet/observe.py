"""Read the fleet's world: GitLab's runners and each host's gitlab-runner and config.toml.

Nothing is written. GitLab costs one GraphQL request per page of 100 runners
(:meth:`provisioner.gitlab.client.GitLabAPI.fleet_runners`); each host costs one SSH session
(one command for the facts, one SFTP read of config.toml through the remote store's reading
path), and the hosts are read in parallel. A host that cannot be read is reported as
unreachable with the reason; the others are read regardless.
"""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Protocol

from provisioner.errors import HostError, ProvisionerError
from provisioner.fleet.model import (
    Fleet,
    HostSpec,
    Observed,
    ObservedEntry,
    ObservedHost,
    ObservedRunner,
)
from provisioner.gitlab.models import parse_time
from provisioner.hosts.remote_store import RemoteConfigStore, RemoteHost
from provisioner.runner_config.document import ConfigDocument

log = logging.getLogger(__name__)

MAX_WORKERS = 16
# Keys of a config.toml entry that are identity or secrets, not settings.
_NOT_SETTINGS = ("name", "id", "url", "token", "token_obtained_at", "token_expires_at")

# One command for the facts; each line is KEY=VALUE so stray output cannot confuse it.
_FACTS = (
    "if command -v gitlab-runner >/dev/null 2>&1; then echo installed=1; "
    "echo version=$(gitlab-runner --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1); "
    "else echo installed=0; fi; "
    "echo active=$(systemctl is-active gitlab-runner 2>/dev/null); "
    "echo system_id=$(cat {system_id} 2>/dev/null)"
)


class GitLabReader(Protocol):
    """What observing needs from GitLab (:class:`provisioner.gitlab.client.GitLabAPI`)."""

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far."""
        ...

    def fleet_runners(self) -> tuple[ObservedRunner, ...]:
        """Every runner of the instance."""
        ...


class HostSession(RemoteHost, Protocol):
    """One SSH session to a host (:class:`provisioner.ssh.SSHSession`)."""

    def close(self) -> None:
        """End the session."""
        ...


@dataclass(frozen=True)
class HostFacts:
    """What the facts command printed."""

    installed: bool
    active: bool
    version: str | None
    system_id: str | None


def observe(
    fleet: Fleet,
    *,
    gitlab: GitLabReader,
    connect: Callable[[HostSpec], HostSession],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    workers: int = MAX_WORKERS,
) -> Observed:
    """GitLab's runners and the fleet's hosts, as they are now.

    Raises:
        GitLabError: GitLab refused to list the runners (hosts are not read then).
    """
    observed_at = now()
    before = gitlab.request_count
    runners = gitlab.fleet_runners()
    requests = gitlab.request_count - before
    sessions = _Counter()
    hosts: tuple[ObservedHost, ...] = ()
    if fleet.hosts:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(fleet.hosts)))) as pool:
            hosts = tuple(pool.map(lambda h: read_host(h, connect, sessions), fleet.hosts))
    return Observed(
        observed_at=observed_at,
        runners=runners,
        hosts=hosts,
        api_requests=requests,
        ssh_sessions=sessions.value,
    )


class _Counter:
    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


def read_host(
    spec: HostSpec, connect: Callable[[HostSpec], HostSession], sessions: _Counter | None = None
) -> ObservedHost:
    """One host over one SSH session: its gitlab-runner, service and config.toml entries."""
    try:
        session = connect(spec)
    except ProvisionerError as exc:
        log.info("%s: not reachable: %s", spec.name, exc.message)
        return ObservedHost(spec.name, reachable=False, error=exc.message)
    if sessions is not None:
        sessions.add()
    try:
        facts = _facts(session, spec)
        text = RemoteConfigStore(session, spec.config_path, label=spec.name).read_text()
        entries = parse_entries(text, source=f"{spec.name}:{spec.config_path}")
    except ProvisionerError as exc:
        return ObservedHost(spec.name, reachable=False, error=exc.message)
    finally:
        session.close()
    return ObservedHost(
        name=spec.name,
        reachable=True,
        runner_installed=facts.installed,
        service_active=facts.active,
        system_id=facts.system_id,
        entries=entries,
    )


def _facts(session: HostSession, spec: HostSpec) -> HostFacts:
    system_id = PurePosixPath(spec.config_path).parent / ".runner_system_id"
    result = session.sudo(_FACTS.format(system_id=shlex.quote(str(system_id))), timeout=60)
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    if "installed" not in values:  # sudo refused, or no shell: nothing was learnt
        detail = (result.stderr.strip() or f"exit {result.exit_code}").splitlines()[0]
        raise HostError(
            f"{spec.name}: cannot read gitlab-runner's state as root: {detail}",
            hint="The SSH user needs passwordless sudo (or --become-password-file).",
        )
    return HostFacts(
        installed=values.get("installed") == "1",
        active=values.get("active") == "active",
        version=values.get("version") or None,
        system_id=values.get("system_id") or None,
    )


def parse_entries(text: str | None, *, source: str) -> tuple[ObservedEntry, ...]:
    """The ``[[runners]]`` entries of config.toml text (none when the file does not exist).

    Raises:
        ConfigError: the file is not valid TOML.
    """
    if text is None:
        return ()
    data = ConfigDocument.parse(text, source=source).plain()
    runners = data.get("runners")
    return (
        tuple(_entry(r) for r in runners if isinstance(r, dict))
        if isinstance(runners, list)
        else ()
    )


def _entry(raw: Mapping[str, Any]) -> ObservedEntry:
    rid = raw.get("id")
    token = raw.get("token")
    return ObservedEntry(
        name=str(raw.get("name") or ""),
        id=int(rid) if isinstance(rid, int) and not isinstance(rid, bool) else None,
        url=str(raw["url"]) if raw.get("url") is not None else None,
        executor=str(raw["executor"]) if raw.get("executor") is not None else None,
        settings={k: v for k, v in raw.items() if k not in _NOT_SETTINGS},
        token=str(token) if token else None,
        token_obtained_at=_time(raw.get("token_obtained_at")),
        token_expires_at=_time(raw.get("token_expires_at")),
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed: datetime | None = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        parsed = parse_time(value)
    # gitlab-runner writes 0001-01-01T00:00:00Z for "never expires".
    return None if parsed is None or parsed.year <= 1 else parsed
