"""``host provision``: run the packaged playbooks against hosts, with progress and a recap.

The playbooks ship inside the package (``provisioner/hosts/playbooks``) and are found through
:func:`playbooks_dir`, never relative to the caller's working directory. A run gets its own
private data directory under the cache (inventory, artifacts); it is kept and its path is in
the result, for debugging. Secrets (a become password, config.toml with runner tokens) are
written to 0600 files that are removed after the run, never on a command line, and the
artifacts are scrubbed of them.

A host that fails or is unreachable is a *result* (its recap says so); the other hosts finish.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from provisioner.ansible import EventKind, HostStats, PlaybookEvent, PlaybookRun, PlaybookSpec
from provisioner.errors import UsageError
from provisioner.events import Event, Reporter
from provisioner.hosts.remote_store import RemoteConfigStore, RemoteHost
from provisioner.secrets import Redactor
from provisioner.settings import cache_dir
from provisioner.ssh import SSHError, SSHOptions, SSHTarget

SITE = "site.yml"


def playbooks_dir() -> Path:
    """The packaged playbooks (``site.yml`` and ``roles/``)."""
    return Path(str(resources.files("provisioner.hosts") / "playbooks"))


class HostStatus(StrEnum):
    """How a host came out of a run."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ProvisionEvent(Event):
    """Per-host progress: the task that just reported, and the counts so far (as in the recap)."""

    host: str
    kind: EventKind
    task: str
    counts: HostStats


@dataclass(frozen=True)
class HostRecap:
    """The final line for one host (from ansible-runner's stats)."""

    host: str
    status: HostStatus
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int
    error: str = ""


@dataclass(frozen=True)
class ProvisionResult:
    """Every host's recap, the artifacts directory, and whether it was a check run."""

    hosts: tuple[HostRecap, ...]
    artifacts: Path
    check: bool
    rc: int

    @property
    def ok(self) -> bool:
        """True when no host failed or was unreachable."""
        return bool(self.hosts) and all(
            h.status in (HostStatus.OK, HostStatus.CHANGED) for h in self.hosts
        )


@dataclass(frozen=True)
class ProvisionRequest:
    """What to provision and how."""

    targets: tuple[SSHTarget, ...] = ()
    inventory: Path | None = None
    ssh: SSHOptions = field(default_factory=SSHOptions)
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    check: bool = False
    diff: bool = False
    limit: str | None = None
    forks: int = 10
    config_text: str | None = field(default=None, repr=False)
    artifacts_root: Path | None = None


class PlaybookRunner(Protocol):
    """Runs a playbook (:func:`provisioner.ansible.run_playbook` fits)."""

    def __call__(
        self,
        spec: PlaybookSpec,
        *,
        redactor: Redactor,
        on_event: Reporter[PlaybookEvent] | None = None,
    ) -> PlaybookRun:
        """Run and report."""
        ...


ConnectFn = Callable[[SSHTarget], RemoteHost]


def host_name(target: SSHTarget) -> str:
    """The inventory name of a target (host, plus the port when it is not 22)."""
    return target.host if target.port == 22 else f"{target.host}_{target.port}"


def load_vars(path: Path) -> dict[str, Any]:
    """Role variables from a YAML file (a mapping), with a clear error otherwise."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(
            f"{path} is not UTF-8 text",
            hint="Save the variables file as UTF-8 YAML (`iconv -t UTF-8` converts it).",
        ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: expected a mapping of variables",
            hint="Write `name: value` lines; the roles' README.md list the variables.",
        )
    return data


def provision(
    request: ProvisionRequest,
    *,
    runner: PlaybookRunner | None = None,
    connect: ConnectFn | None = None,
    on_event: Reporter[ProvisionEvent] | None = None,
    on_secret: Callable[[str], None] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ProvisionResult:
    """Run ``site.yml`` on the hosts and return one recap per host."""
    from provisioner.ansible import redact_artifacts, run_playbook

    _validate(request)
    redactor = Redactor()
    secrets: list[str] = []

    def secret(value: str | None) -> None:
        if value:
            secrets.append(value)
            redactor.add(value)
            if on_secret:
                on_secret(value)

    secret(request.ssh.become_password)
    root = request.artifacts_root or cache_dir() / "ansible"
    stamp = now().strftime("%Y%m%dT%H%M%S")
    private = root / f"{stamp}-{uuid.uuid4().hex[:8]}"
    private.mkdir(mode=0o700, parents=True)
    secret_files: list[Path] = []
    host_configs: dict[str, str] = {}
    if request.config_text is not None:
        host_configs = _merged_configs(request, connect=connect, secret=secret)
    if request.inventory is not None:
        inventory = request.inventory
    else:
        inventory = _write_inventory(private, request, host_configs, secret_files)
    chosen = {"cosign_src", "cosign_url"} & set(request.extra_vars)
    extravars: dict[str, Any] = {**({} if chosen else _default_vars()), **request.extra_vars}
    if request.ssh.become_password is not None:
        extravars["ansible_become_password"] = request.ssh.become_password
    book = playbooks_dir()
    spec = PlaybookSpec(
        project_dir=book,
        playbook=SITE,
        inventory=inventory,
        private_data_dir=private,
        extravars=extravars,
        envvars=_envvars(book, request.ssh, private),
        forks=request.forks,
        limit=request.limit,
        check=request.check,
        diff=request.diff,
        ident="run",
    )
    tally = _Tally(on_event)
    try:
        run = (runner or run_playbook)(spec, redactor=redactor, on_event=tally)
    finally:
        for path in secret_files:
            path.unlink(missing_ok=True)
    redact_artifacts(private, secrets)
    return ProvisionResult(
        hosts=_recaps(run, request), artifacts=run.artifacts, check=request.check, rc=run.rc
    )


def _default_vars() -> dict[str, Any]:
    """cosign from runnerctl's own cache (put there by ``image build``), when it is there."""
    cached = cache_dir() / "cosign" / "2.5.0" / "cosign"
    return {"cosign_src": str(cached)} if cached.is_file() else {}


def _validate(request: ProvisionRequest) -> None:
    if bool(request.targets) == (request.inventory is not None):
        raise UsageError(
            "Name the hosts: HOST arguments or an inventory file (one of them).",
            hint="e.g. runnerctl host provision ops@10.0.0.5",
        )
    if request.inventory is not None and not request.inventory.is_file():
        raise UsageError(f"inventory not found: {request.inventory}")
    if request.config_text is not None and request.inventory is not None:
        raise UsageError(
            "--config-file needs HOST arguments (the file is merged with each host's own).",
            hint="Name the hosts on the command line, or deploy with `register --host`.",
        )
    if request.forks < 1:
        raise UsageError("--forks must be at least 1")


def _recaps(run: PlaybookRun, request: ProvisionRequest) -> tuple[HostRecap, ...]:
    recaps: list[HostRecap] = []
    for s in run.stats:
        if s.unreachable:
            status = HostStatus.UNREACHABLE
        elif s.failed:
            status = HostStatus.FAILED
        elif s.changed:
            status = HostStatus.CHANGED
        else:
            status = HostStatus.OK
        recaps.append(
            HostRecap(
                s.host,
                status,
                ok=s.ok,
                changed=s.changed,
                failed=s.failed,
                unreachable=s.unreachable,
                skipped=s.skipped,
                error=run.errors.get(s.host, "") if status in _BAD else "",
            )
        )
    seen = {r.host for r in recaps}
    for target in request.targets:  # a host that never reported (e.g. the run died) failed
        name = host_name(target)
        if name not in seen and request.limit is None:
            recaps.append(
                HostRecap(
                    name,
                    HostStatus.FAILED,
                    0,
                    0,
                    1,
                    0,
                    0,
                    run.errors.get(name, f"no result (ansible-runner status {run.status})"),
                )
            )
    return tuple(recaps)


_BAD = (HostStatus.FAILED, HostStatus.UNREACHABLE)
_FIELDS = {
    EventKind.OK: "ok",
    EventKind.CHANGED: "changed",
    EventKind.FAILED: "failed",
    EventKind.UNREACHABLE: "unreachable",
    EventKind.SKIPPED: "skipped",
}


class _Tally:
    """Per-host counts from playbook events, passed on as :class:`ProvisionEvent`."""

    def __init__(self, on_event: Reporter[ProvisionEvent] | None) -> None:
        self.counts: dict[str, HostStats] = {}
        self.on_event = on_event

    def __call__(self, event: PlaybookEvent) -> None:
        if not event.host:
            return
        c = self.counts.get(event.host, HostStats(event.host))
        name = _FIELDS.get(event.kind)
        if name:
            c = replace(c, **{name: getattr(c, name) + 1})
        if event.kind is EventKind.CHANGED:  # ansible counts a changed task as ok too
            c = replace(c, ok=c.ok + 1)
        self.counts[event.host] = c
        if self.on_event:
            self.on_event(ProvisionEvent(event.host, event.kind, event.task, c))


def _merged_configs(
    request: ProvisionRequest,
    *,
    connect: ConnectFn | None,
    secret: Callable[[str | None], None],
) -> dict[str, str]:
    """Each host's config.toml: the controller's file merged with the host's (disk wins)."""
    from provisioner.runner_config.document import ConfigDocument
    from provisioner.ssh import SSHSession

    assert request.config_text is not None
    document = ConfigDocument.parse(request.config_text, source="--config-file")
    for table in document.runner_tables():
        token = table.get("token")
        secret(str(token) if token else None)
    opener = connect or (lambda t: SSHSession.connect(t, request.ssh))
    merged: dict[str, str] = {}
    for target in request.targets:
        try:
            session = opener(target)
        except SSHError:
            continue  # Ansible reports the host unreachable
        try:
            text, _kept = RemoteConfigStore(session, label=str(target)).merged_text(document)
            for line in text.splitlines():
                if line.strip().startswith("token ="):
                    secret(line.split("=", 1)[1].strip().strip('"'))
            merged[host_name(target)] = text
        finally:
            close = getattr(session, "close", None)
            if callable(close):
                close()
    return merged


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_inventory(
    private: Path,
    request: ProvisionRequest,
    host_configs: Mapping[str, str],
    secret_files: list[Path],
) -> Path:
    import yaml

    hosts: dict[str, dict[str, Any]] = {}
    for target in request.targets:
        entry: dict[str, Any] = {
            "ansible_host": target.host,
            "ansible_port": target.port,
            "ansible_user": target.user,
        }
        if request.ssh.key_file is not None:
            entry["ansible_ssh_private_key_file"] = str(request.ssh.key_file.expanduser())
        hosts[host_name(target)] = entry
    directory = private / "inventory"
    _write_private(directory / "hosts.yml", yaml.safe_dump({"all": {"hosts": hosts}}))
    for name, text in host_configs.items():
        path = directory / "host_vars" / f"{name}.yml"
        _write_private(path, yaml.safe_dump({"runner_config_content": text}))
        secret_files.append(path)
    return directory


def _envvars(book: Path, ssh: SSHOptions, private: Path) -> dict[str, str]:
    checking = "accept-new" if ssh.accept_new else "yes"
    args = [
        f"-o UserKnownHostsFile={ssh.known_hosts_path}",
        f"-o StrictHostKeyChecking={checking}",
        "-o ServerAliveInterval=5",
        "-o ServerAliveCountMax=3",
        f"-o ConnectTimeout={int(ssh.timeout)}",
    ]
    if ssh.key_file is not None:
        args.append("-o IdentitiesOnly=yes")
    return {
        "ANSIBLE_CONFIG": str(book / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(book / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s " + " ".join(args),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
    }
