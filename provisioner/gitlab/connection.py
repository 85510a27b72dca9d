"""Connection settings: where GitLab is and which token to use, resolved in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from provisioner.errors import UsageError
from provisioner.secrets import redact

if TYPE_CHECKING:
    pass

from provisioner.gitlab.models import ConnectionSettings

ACCESS_HINT = (
    "Pass a personal, group or project access token with the create_runner (or api) scope "
    "in GITLAB_TOKEN, --token-file FILE or --gitlab-config-section NAME; never on the "
    "command line."
)

# ---------------------------------------------------------------------------------------------
# Settings


def resolve_connection(
    *,
    url: str | None = None,
    token_file: Path | None = None,
    config_section: str | None = None,
    config_file: Path | None = None,
    ca_bundle: Path | None = None,
    insecure: bool = False,
    env: Mapping[str, str] | None = None,
    require_token: bool = True,
) -> ConnectionSettings:
    """Build connection settings from options, the environment and a python-gitlab config.

    The URL comes from ``url``, then ``GITLAB_URL``, ``CI_SERVER_URL`` and the config section.
    The token comes from ``--token-file``, then ``GITLAB_TOKEN``, then the config section; never
    from argv.

    Raises:
        UsageError: when no URL or token can be found, or an option is contradictory.
    """
    env = os.environ if env is None else env
    section_url: str | None = None
    section_token: str | None = None
    section_verify: bool | str = True
    if config_section:
        section_url, section_token, section_verify = _read_gitlab_config(
            config_section, config_file
        )
    resolved_url = url or env.get("GITLAB_URL") or env.get("CI_SERVER_URL") or section_url
    if not resolved_url:
        raise UsageError(
            "No GitLab URL given.",
            hint="Pass --gitlab-url https://gitlab.example.com or set GITLAB_URL.",
        )
    parts = urlsplit(resolved_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"The GitLab URL {redact(resolved_url)!r} is not an http(s) URL.",
            hint="Use the address you open in a browser, e.g. https://gitlab.example.com.",
        )
    if parts.username or parts.password:
        raise UsageError(
            "The GitLab URL must not carry credentials.",
            hint=ACCESS_HINT,
        )
    try:
        token, source = _resolve_token(token_file, env, config_section, section_token)
    except UsageError:
        if require_token or token_file is not None:
            raise
        token, source = "", "no access token"
    if ca_bundle is not None and insecure:
        raise UsageError(
            "--ca-bundle and --insecure contradict each other.",
            hint="Keep --ca-bundle: it verifies GitLab against your CA instead of not at all.",
        )
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(
            f"CA bundle {ca_bundle} does not exist.",
            hint="Pass a PEM file with your GitLab's CA chain to --ca-bundle.",
        )
    if ca_bundle is None and not insecure and isinstance(section_verify, str):
        ca_bundle = Path(section_verify)
    if section_verify is False and ca_bundle is None:
        insecure = True
    return ConnectionSettings(
        url=resolved_url.rstrip("/"),
        token=token,
        auth_source=source,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )


def _resolve_token(
    token_file: Path | None,
    env: Mapping[str, str],
    config_section: str | None,
    section_token: str | None,
) -> tuple[str, str]:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(
                f"Cannot read the token file {token_file}: {exc.strerror}.",
                hint="Point --token-file at a readable file (mode 0600) holding only the token.",
            ) from None
        if not token:
            raise UsageError(f"The token file {token_file} is empty.", hint=ACCESS_HINT)
        return token, f"token file {token_file}"
    if env.get("GITLAB_TOKEN"):
        return env["GITLAB_TOKEN"].strip(), "GITLAB_TOKEN"
    if section_token:
        return section_token, f"python-gitlab config section [{config_section}]"
    raise UsageError("No GitLab access token found.", hint=ACCESS_HINT)


def _read_gitlab_config(
    section: str, config_file: Path | None
) -> tuple[str | None, str | None, bool | str]:
    import gitlab.config

    files = [str(config_file)] if config_file is not None else None
    try:
        parser = gitlab.config.GitlabConfigParser(gitlab_id=section, config_files=files)
    except gitlab.config.ConfigError as exc:
        raise UsageError(
            f"python-gitlab config section [{section}] is unusable: {redact(str(exc))}",
            hint="Check ~/.python-gitlab.cfg (or PYTHON_GITLAB_CFG) for that section, "
            "with url and private_token.",
        ) from None
    return parser.url, parser.private_token or parser.oauth_token, parser.ssl_verify
