"""What every command receives through ``ctx.obj``: output mode, consoles, redactor, clients.

Clients are built lazily, on first use, through factory attributes (:class:`Factories`); tests
swap a factory for a fake, so successful commands are tested through the CLI too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from provisioner.secrets import Redactor

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.cli.options import GitLabOptions
    from provisioner.docker_api import DockerAPI
    from provisioner.gitlab.client import GitLabAPI
    from provisioner.gitlab.models import ConnectionSettings
    from provisioner.runner_config import ConfigStore
    from provisioner.ssh import SSHOptions, SSHSession, SSHTarget


class OutputFormat(StrEnum):
    """How results are printed on stdout."""

    TEXT = "text"
    JSON = "json"
    NDJSON = "ndjson"  # one JSON document per line (runnerctl pipelines); else as json


def _real_gitlab(settings: ConnectionSettings) -> GitLabAPI:
    from provisioner.gitlab.client import GitLabAPI

    return GitLabAPI.from_settings(settings)


def _real_docker() -> DockerAPI:
    from provisioner.docker_api import DockerAPI

    return DockerAPI.from_env()


def _real_ssh(target: SSHTarget, options: SSHOptions) -> SSHSession:
    from provisioner.ssh import SSHSession

    return SSHSession.connect(target, options)


def _real_config_store(path: Path) -> ConfigStore:
    from provisioner.runner_config import ConfigStore

    return ConfigStore(path)


@dataclass
class Factories:
    """How the real clients are built; tests replace one with a fake."""

    gitlab: Callable[[ConnectionSettings], GitLabAPI] = _real_gitlab
    docker: Callable[[], DockerAPI] = _real_docker
    ssh: Callable[[SSHTarget, SSHOptions], SSHSession] = _real_ssh
    config_store: Callable[[Path], ConfigStore] = _real_config_store


@dataclass
class AppContext:
    """Shared state built once per invocation and passed down through ``ctx.obj``."""

    output: OutputFormat = OutputFormat.TEXT
    verbose: int = 0
    debug: bool = False
    redactor: Redactor = field(default_factory=Redactor)
    factories: Factories = field(default_factory=Factories)
    _out: Console | None = None
    _err: Console | None = None
    _docker: DockerAPI | None = None
    emitted_json: bool = False

    # ------------------------------------------------------------------ clients

    def gitlab(self, options: GitLabOptions, *, require_token: bool = True) -> GitLabAPI:
        """The GitLab adapter for these connection options; the token joins the redactor."""
        from provisioner.cli.options import learn_token_sources
        from provisioner.gitlab.connection import resolve_connection

        learn_token_sources(self, options)
        settings = resolve_connection(
            url=options.url,
            token_file=options.token_file,
            config_section=options.config_section,
            config_file=options.config_file,
            ca_bundle=options.ca_bundle,
            insecure=options.insecure,
            require_token=require_token,
        )
        self.redactor.add(settings.token)
        return self.factories.gitlab(settings)

    def docker(self) -> DockerAPI:
        """The Docker Engine adapter (one per run)."""
        if self._docker is None:
            self._docker = self.factories.docker()
        return self._docker

    def ssh(self, target: SSHTarget, options: SSHOptions) -> SSHSession:
        """An SSH session to ``target``."""
        return self.factories.ssh(target, options)

    def config_store(self, path: Path | None) -> ConfigStore:
        """The config.toml store for ``--config`` (or gitlab-runner's default path)."""
        from provisioner.cli.options import config_path

        return self.factories.config_store(config_path(path))

    # ------------------------------------------------------------------ output

    @property
    def out(self) -> Console:
        """Console on stdout, for data."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        return self._out

    @property
    def err(self) -> Console:
        """Console on stderr, for people: progress, warnings, errors."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        return self._err

    @property
    def json(self) -> bool:
        """True when ``--output json`` (or ``ndjson``) was given."""
        return self.output is not OutputFormat.TEXT

    @property
    def interactive(self) -> bool:
        """True when live progress may redraw: stderr is a TTY and output is text."""
        return not self.json and sys.stderr.isatty()

    def emit_json(self, document: Any, *, redact: bool = True) -> None:
        """Print one JSON document on stdout (secrets redacted unless the user asked for one)."""
        from provisioner.cli.render import dumps

        text = dumps(document)
        sys.stdout.write((self.redactor(text) if redact else text) + "\n")
        sys.stdout.flush()
        self.emitted_json = True

    def emit_json_with_token(self, document: dict[str, Any], token: str | None) -> None:
        """Print ``document``; a token the user asked for (``--show-token``) is added unmasked."""
        if token:
            document["token"] = token
            self.emit_json(document, redact=False)
        else:
            self.emit_json(document)

    def echo_token(self, token: str | None) -> None:
        """Print a token the user asked for (``--show-token``), unmasked, on stdout."""
        if token:
            sys.stdout.write(f"  token: {token}\n")

    def echo(self, text: str) -> None:
        """Print plain data on stdout, with secrets redacted, no markup interpretation."""
        sys.stdout.write(self.redactor(text) + "\n")
        sys.stdout.flush()

    def note(self, text: str, *, style: str | None = None) -> None:
        """Print a line for people on stderr, with secrets redacted."""
        self.err.print(self.redactor(text), style=style, markup=False, highlight=False)

    def warn(self, warnings: Iterable[str]) -> None:
        """Print each warning of a result on stderr."""
        for warning in warnings:
            self.note(f"Warning: {warning}", style="yellow")


def command_group(help_text: str) -> typer.Typer:
    """A command group (``runnerctl config``, ``image``…): help when called bare, rich markup."""
    return typer.Typer(no_args_is_help=True, rich_markup_mode="rich", help=help_text)


def get_app(ctx: typer.Context) -> AppContext:
    """The :class:`AppContext` of this invocation (a default one outside the main callback)."""
    obj = ctx.find_root().obj
    if isinstance(obj, AppContext):
        return obj
    app = AppContext()
    ctx.find_root().obj = app
    return app
