"""Options shared by several commands, declared once.

Each option is an ``Annotated`` alias a command lists as a parameter; the functions below turn
the parsed values into the settings the domain takes (:class:`GitLabOptions`, SSH options, the
config.toml path). Secrets are never option values: tokens and passwords come from files or the
environment, and every secret read here joins the run's redactor.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from provisioner.errors import UsageError

if TYPE_CHECKING:
    from provisioner.cli.context import AppContext
    from provisioner.hosts.remote_store import RemoteConfigStore
    from provisioner.registration.service import ConfigStorePort
    from provisioner.runner_config import Finding
    from provisioner.ssh import SSHOptions, SSHTarget

R = TypeVar("R")

GITLAB = "GitLab connection"
SSH = "SSH"

# ----------------------------------------------------------------------------- GitLab connection

GitLabUrl = Annotated[
    str | None,
    typer.Option(
        "--gitlab-url",
        "--url",
        help="GitLab base URL (default: $GITLAB_URL, $CI_SERVER_URL). --url is gitlab-runner's "
        "spelling.",
        rich_help_panel=GITLAB,
        show_default=False,
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the access token (else $GITLAB_TOKEN). Never pass it as a value.",
        rich_help_panel=GITLAB,
        dir_okay=False,
    ),
]
ConfigSection = Annotated[
    str | None,
    typer.Option(
        "--gitlab-config-section",
        help="Section of a python-gitlab config file (~/.python-gitlab.cfg) with url and token.",
        rich_help_panel=GITLAB,
    ),
]
GitLabConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--gitlab-config-file",
        help="python-gitlab config file for --gitlab-config-section (default: its usual places).",
        rich_help_panel=GITLAB,
        dir_okay=False,
    ),
]
CaBundle = Annotated[
    Path | None,
    typer.Option(
        "--ca-bundle",
        help="PEM file with the CA chain of your GitLab.",
        rich_help_panel=GITLAB,
        dir_okay=False,
    ),
]
Insecure = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Do not verify GitLab's TLS certificate (throwaway test instances only).",
        rich_help_panel=GITLAB,
    ),
]


@dataclass(frozen=True)
class GitLabOptions:
    """The GitLab connection options of one command line (no token: it is never an option)."""

    url: str | None = None
    token_file: Path | None = None
    config_section: str | None = None
    config_file: Path | None = None
    ca_bundle: Path | None = None
    insecure: bool = False


# The command parameter each option of GitLabOptions is parsed into, in --help order.
_GITLAB_PARAMETERS = (
    ("gitlab_url", "url", GitLabUrl, None),
    ("token_file", "token_file", TokenFile, None),
    ("gitlab_config_section", "config_section", ConfigSection, None),
    ("gitlab_config_file", "config_file", GitLabConfigFile, None),
    ("ca_bundle", "ca_bundle", CaBundle, None),
    ("insecure", "insecure", Insecure, False),
)


def option_group(
    name: str, value: Callable[..., Any], options: tuple[tuple[str, str, Any, Any], ...]
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """A decorator that declares a group of options on a command, which takes them as one value.

    The command names a keyword-only parameter ``name``; Typer sees the group's options in its
    place and the command receives ``value(**fields)``. Each option is ``(parameter, field,
    Annotated alias, default)``.
    """

    def declare(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != name:
                parameters.append(parameter)
                continue
            parameters += [
                inspect.Parameter(
                    option, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=alias
                )
                for option, _, alias, default in options
            ]

        @functools.wraps(command)
        def parsed(*args: Any, **kwargs: Any) -> R:
            kwargs[name] = value(**{field: kwargs.pop(option) for option, field, _, _ in options})
            return command(*args, **kwargs)

        parsed.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        parsed.__annotations__ = {p.name: p.annotation for p in parameters}
        return parsed

    return declare


#: Gives a command the GitLab connection options as one ``connection: GitLabOptions`` value.
with_gitlab_options = option_group("connection", GitLabOptions, _GITLAB_PARAMETERS)


def learn_token_sources(app: AppContext, options: GitLabOptions) -> None:
    """Teach the redactor the raw token this run may read, before anything parses it.

    Connection resolution may fail on a malformed token (a stray newline, a space) and a
    library may quote it in an exception: the raw text of ``--token-file`` and ``GITLAB_TOKEN``
    is registered first, so that even such a message is masked.
    """
    raw: list[str] = [os.environ.get("GITLAB_TOKEN", "")]
    if options.token_file is not None:
        # An unreadable file is reported by resolve_connection.
        with contextlib.suppress(OSError, UnicodeDecodeError):
            raw.append(options.token_file.expanduser().read_text(encoding="utf-8"))
    if options.config_section:
        raw.extend(_config_section_secrets(options.config_section, options.config_file))
    for value in raw:
        learn_secret_text(app, value)


_PYTHON_GITLAB_SECRETS = ("private_token", "oauth_token", "job_token", "http_password")


def _config_section_secrets(section: str, config_file: Path | None) -> list[str]:
    """The secrets of ``section`` in the python-gitlab config files that would be read."""
    import configparser

    if config_file is not None:
        files = [config_file]
    else:
        env = os.environ.get("PYTHON_GITLAB_CFG")
        home = Path.home()
        files = [Path(env)] if env else []
        files += [
            home / ".python-gitlab.cfg",
            home / ".config" / "python-gitlab.cfg",
            Path("/etc/python-gitlab.cfg"),
        ]
    parser = configparser.RawConfigParser()
    for path in files:
        # An unreadable or malformed file is reported by resolve_connection.
        with contextlib.suppress(OSError, UnicodeDecodeError, configparser.Error):
            parser.read(path.expanduser(), encoding="utf-8")
    if not parser.has_section(section):
        return []
    return [
        parser.get(section, key)
        for key in _PYTHON_GITLAB_SECRETS
        if parser.has_option(section, key)
    ]


def learn_secret_text(app: AppContext, value: str) -> None:
    """Register a secret value (stripped) and each of its words with the redactor."""
    # Not the raw value: masking its trailing newline would join two lines of output.
    app.redactor.add(value.strip())
    for part in value.split():
        if len(part) >= 8:  # shorter fragments would mask ordinary words
            app.redactor.add(part)


# ----------------------------------------------------------------------------- config.toml

# A secret-bearing key of config.toml (token, password, secret_key...) and its string value.
_CONFIG_SECRET = re.compile(
    r"""^\s*["']?[A-Za-z_]*(?:token|password|secret|secret_?key|access_?key)["']?\s*=\s*"""
    r"""(?:"([^"\n]*)"|'([^'\n]*)')""",
    re.IGNORECASE | re.MULTILINE,
)


def learn_config_secrets(app: AppContext, text: str) -> None:
    """Register the tokens and passwords written in a config.toml text with the redactor.

    Done on the raw text, before parsing, so that even a parse error quoting a line is masked.
    """
    for match in _CONFIG_SECRET.finditer(text):
        app.redactor.add(match.group(1) or match.group(2))


ConfigPath = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="gitlab-runner's config.toml (default: $CONFIG_FILE, /etc/gitlab-runner/"
        "config.toml as root, ~/.gitlab-runner/config.toml otherwise).",
        show_default=False,
    ),
]


def config_path(config: Path | None) -> Path:
    """``--config``, else the path gitlab-runner itself would use."""
    from provisioner.settings import default_config_path

    return config if config is not None else default_config_path()


class FailOn(StrEnum):
    """``--fail-on``: the lowest finding severity that fails ``config lint`` or ``k8s lint``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    NEVER = "never"

    def failing(self, findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
        """The findings at this severity or worse (none for ``never``)."""
        from provisioner.runner_config import Severity, at_or_above

        return () if self is FailOn.NEVER else at_or_above(findings, Severity(self.value))


# ----------------------------------------------------------------------------- SSH

Hosts = Annotated[
    list[str] | None,
    typer.Argument(help="Hosts as [USER@]HOST[:PORT].", show_default=False),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        "-i",
        help="Private key (default: ssh-agent, then ~/.ssh/id_*).",
        dir_okay=False,
        rich_help_panel=SSH,
    ),
]
KnownHosts = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        help="known_hosts file [default: ~/.ssh/known_hosts].",
        dir_okay=False,
        rich_help_panel=SSH,
        show_default=False,
    ),
]
AcceptNew = Annotated[
    bool,
    typer.Option(
        "--accept-new",
        help="Trust and save the key of a host seen for the first time (changed keys are "
        "still refused).",
        rich_help_panel=SSH,
    ),
]
BecomePasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--become-password-file",
        help="File holding the sudo password (else passwordless sudo is required).",
        dir_okay=False,
        rich_help_panel=SSH,
    ),
]
RemoteHost = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="Use config.toml on this host over SSH ([USER@]HOST[:PORT]; sudo for root's "
        "file; keys from ssh-agent, ~/.ssh or --ssh-key; ~/.ssh/known_hosts).",
        show_default=False,
        rich_help_panel=SSH,
    ),
]
SshKey = Annotated[
    Path | None,
    typer.Option("--ssh-key", help="Private key for --host.", dir_okay=False, rich_help_panel=SSH),
]


@dataclass(frozen=True)
class SSHChoices:
    """The SSH options of one command line (the sudo password is read by :meth:`resolve`)."""

    key_file: Path | None = None
    known_hosts: Path | None = None
    accept_new: bool = False
    become_password_file: Path | None = None

    def resolve(self, app: AppContext) -> SSHOptions:
        """The SSH settings these options name; the sudo password joins the redactor."""
        return ssh_options(
            app,
            key_file=self.key_file,
            known_hosts=self.known_hosts,
            accept_new=self.accept_new,
            become_password_file=self.become_password_file,
        )


#: Gives a command the SSH options as one ``ssh: SSHChoices`` value.
with_ssh_options = option_group(
    "ssh",
    SSHChoices,
    (
        ("key_file", "key_file", KeyFile, None),
        ("known_hosts", "known_hosts", KnownHosts, None),
        ("accept_new", "accept_new", AcceptNew, False),
        ("become_password_file", "become_password_file", BecomePasswordFile, None),
    ),
)


def ssh_options(
    app: AppContext,
    *,
    key_file: Path | None = None,
    known_hosts: Path | None = None,
    accept_new: bool = False,
    become_password_file: Path | None = None,
) -> SSHOptions:
    """Build :class:`SSHOptions`; the become password joins the redactor."""
    from provisioner.ssh import DEFAULT_KNOWN_HOSTS, SSHOptions

    password: str | None = None
    if become_password_file is not None:
        try:
            password = become_password_file.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise UsageError(
                f"cannot read {become_password_file}: {exc.strerror}",
                hint="Pass a readable file holding only the sudo password.",
            ) from None
        except UnicodeDecodeError:
            raise UsageError(
                f"{become_password_file} is not UTF-8 text",
                hint="Pass a readable file holding only the sudo password.",
            ) from None
        app.redactor.add(password)
    if key_file is not None and not key_file.expanduser().is_file():
        raise UsageError(f"key file not found: {key_file}", hint="Pass an existing private key.")
    return SSHOptions(
        key_file=key_file,
        known_hosts=known_hosts or DEFAULT_KNOWN_HOSTS,
        accept_new=accept_new,
        become_password=password,
    )


def parse_targets(hosts: list[str] | None) -> list[SSHTarget]:
    """``[USER@]HOST[:PORT]`` arguments as targets."""
    from provisioner.ssh import SSHTarget

    return [SSHTarget.parse(h) for h in hosts or []]


def remote_store(
    app: AppContext, host: str, *, config: Path | None, ssh_key: Path | None
) -> RemoteConfigStore:
    """The config.toml store on ``--host`` (``--config`` is then the path on the host)."""
    from provisioner.hosts.remote_store import DEFAULT_REMOTE_PATH, RemoteConfigStore
    from provisioner.ssh import SSHTarget

    target = SSHTarget.parse(host)
    session = app.ssh(target, ssh_options(app, key_file=ssh_key))
    path = config.as_posix() if config is not None else DEFAULT_REMOTE_PATH
    return RemoteConfigStore(session, path, label=str(target))


def config_store(
    app: AppContext, config: Path | None, *, host: str | None = None, ssh_key: Path | None = None
) -> ConfigStorePort:
    """The config.toml store the options name: local, or on ``--host`` over SSH."""
    if host is not None:
        return remote_store(app, host, config=config, ssh_key=ssh_key)
    return app.config_store(config)
