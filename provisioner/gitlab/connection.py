"""Connection settings: where GitLab is and which token to use, resolved in one place.

Precedence (issue 12, "the settings a user gave win"), highest first:

1. explicit options: ``--gitlab-url`` and ``--token-file``;
2. ``--gitlab-config-section NAME`` of a python-gitlab config file;
3. the environment: ``GITLAB_URL``, else ``GITLAB_HOST`` (a host or a URL, as glab reads it),
   else ``CI_SERVER_URL``; the token from ``GITLAB_TOKEN``;
4. python-gitlab's ``[global] default`` section, only when nothing above gave a URL or a token.

An explicit option sets its half whatever the other half's source. Otherwise the URL and the
token come from the same source: a section's URL with the environment's token (or the other
way round) would send a token to a server it was not made for, so that is a
:class:`~provisioner.errors.UsageError` naming both sources.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from provisioner.errors import UsageError
from provisioner.gitlab.models import API_PREFIX, ConnectionSettings
from provisioner.secrets import redact

log = logging.getLogger(__name__)

ACCESS_HINT = (
    "Pass a personal, group or project access token with the create_runner (or api) scope "
    "in GITLAB_TOKEN, --token-file FILE or --gitlab-config-section NAME; never on the "
    "command line."
)
TOKEN_FILE_MAX = 64 * 1024
_EXPLICIT, _SECTION, _ENV, _DEFAULT = range(4)

# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class _Found:
    """A URL or token and where it came from (``level`` orders the sources)."""

    value: str
    source: str
    level: int


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
    """Build connection settings from options, a python-gitlab config and the environment.

    See the module docstring for the precedence. The token never comes from argv.

    Raises:
        UsageError: when no URL or token can be found, the URL and token would come from two
            different sources, a token holds whitespace or control characters, or an option is
            contradictory.
    """
    env = os.environ if env is None else env
    urls, tokens, section_verify = _candidates(url, token_file, config_section, config_file, env)
    chosen_url = min(urls, key=lambda f: f.level, default=None)
    chosen_token = min(tokens, key=lambda f: f.level, default=None)
    if chosen_url is None:
        raise UsageError(
            "No GitLab URL given.",
            hint="Pass --gitlab-url https://gitlab.example.com or set GITLAB_URL.",
        )
    if (
        chosen_token is not None
        and _EXPLICIT not in (chosen_url.level, chosen_token.level)
        and chosen_url.level != chosen_token.level
    ):
        raise UsageError(
            f"The GitLab URL would come from {chosen_url.source} but the token from "
            f"{chosen_token.source}.",
            hint="Take both from one place (or name the other half explicitly with "
            "--gitlab-url / --token-file), so a token only goes to the server it was made for.",
        )
    if chosen_token is None and (require_token or token_file is not None):
        raise UsageError("No GitLab access token found.", hint=ACCESS_HINT)
    resolved_url = _normalise(chosen_url.value)
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
    if chosen_url.level in (_SECTION, _DEFAULT):
        if ca_bundle is None and not insecure and isinstance(section_verify, str):
            ca_bundle = Path(section_verify)
        if section_verify is False and ca_bundle is None:
            insecure = True
    return ConnectionSettings(
        url=resolved_url,
        token=check_token(chosen_token.value, chosen_token.source) if chosen_token else "",
        auth_source=chosen_token.source if chosen_token is not None else "no access token",
        ca_bundle=ca_bundle,
        insecure=insecure,
    )


def _candidates(
    url: str | None,
    token_file: Path | None,
    config_section: str | None,
    config_file: Path | None,
    env: Mapping[str, str],
) -> tuple[list[_Found], list[_Found], bool | str]:
    """Every URL and token on offer, each with its source, and the section's TLS setting."""
    urls: list[_Found] = []
    tokens: list[_Found] = []
    if url:
        urls.append(_Found(url, "--gitlab-url", _EXPLICIT))
    if token_file is not None:
        tokens.append(_Found(_read_token_file(token_file), f"token file {token_file}", _EXPLICIT))
    section_verify: bool | str = True
    if config_section:
        found_url, found_token, section_verify = _read_gitlab_config(
            config_section, config_file, env
        )
        source = f"python-gitlab config section [{config_section}]"
        urls += [_Found(found_url, source, _SECTION)] if found_url else []
        tokens += [_Found(found_token, source, _SECTION)] if found_token else []
    for name in ("GITLAB_URL", "GITLAB_HOST", "CI_SERVER_URL"):
        if env.get(name):
            urls.append(_Found(_host_url(env[name]), name, _ENV))
            break
    if env.get("GITLAB_TOKEN"):
        # Checked only if chosen: an unused GITLAB_TOKEN is not this command's business.
        tokens.append(_Found(env["GITLAB_TOKEN"], "GITLAB_TOKEN", _ENV))
    if not urls and not tokens:
        default = _default_section(config_file, env)
        if default is not None:
            found_url, found_token, section_verify = _read_gitlab_config(default, config_file, env)
            source = f"python-gitlab config section [{default}] (the [global] default)"
            urls += [_Found(found_url, source, _DEFAULT)] if found_url else []
            tokens += [_Found(found_token, source, _DEFAULT)] if found_token else []
    return urls, tokens, section_verify


def _host_url(value: str) -> str:
    """glab's ``GITLAB_HOST`` may be a bare host name: GitLab is then served over https."""
    return value if "://" in value else f"https://{value}"


def _normalise(value: str) -> str:
    """Check an http(s) URL without credentials; drop a trailing slash and ``/api/v4``."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"The GitLab URL {redact(value)!r} is not an http(s) URL.",
            hint="Use the address you open in a browser, e.g. https://gitlab.example.com.",
        )
    if parts.username or parts.password:
        raise UsageError("The GitLab URL must not carry credentials.", hint=ACCESS_HINT)
    url = value.rstrip("/")
    if url.endswith(API_PREFIX):
        url = url.removesuffix(API_PREFIX).rstrip("/")
        log.info("GitLab URL %s ends in %s; using %s", value, API_PREFIX, url)
    return url


# ---------------------------------------------------------------------------------------------
# Tokens


def check_token(raw: str, source: str) -> str:
    """``raw`` without ONE trailing newline (``\\n`` or ``\\r\\n``), as ``echo`` leaves it.

    Raises:
        UsageError: when the rest holds whitespace or a control character (an HTTP header
            cannot carry it). The message names the source and never the value.
    """
    token = raw.removesuffix("\n").removesuffix("\r") if raw.endswith("\n") else raw
    bad = next((c for c in token if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        where = "a line break" if bad in "\r\n" else f"the character U+{ord(bad):04X}"
        raise UsageError(
            f"The token from {source} holds {where}; a token is one line of printable characters.",
            hint="Write only the token, with at most one trailing newline: "
            "printf '%s\\n' \"$TOKEN\" > FILE (and chmod 600 FILE).",
        )
    return token


def _read_token_file(token_file: Path) -> str:
    try:
        if token_file.exists() and not token_file.is_file():
            raise UsageError(
                f"The token file {token_file} is not a regular file.",
                hint="Point --token-file at a readable file (mode 0600) holding only the token.",
            )
        with token_file.open("rb") as stream:
            data = stream.read(TOKEN_FILE_MAX + 1)
    except OSError as exc:
        raise UsageError(
            f"Cannot read the token file {token_file}: {exc.strerror}.",
            hint="Point --token-file at a readable file (mode 0600) holding only the token.",
        ) from None
    if len(data) > TOKEN_FILE_MAX:
        raise UsageError(
            f"The token file {token_file} is larger than {TOKEN_FILE_MAX // 1024} KiB.",
            hint="Point --token-file at a file holding only the token.",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"The token file {token_file} is not UTF-8 text.",
            hint="Write only the token into it: printf '%s\\n' \"$TOKEN\" > FILE.",
        ) from None
    token = check_token(text, f"token file {token_file}")
    if not token:
        raise UsageError(f"The token file {token_file} is empty.", hint=ACCESS_HINT)
    return token


# ---------------------------------------------------------------------------------------------
# python-gitlab config files


def _config_files(config_file: Path | None, env: Mapping[str, str]) -> list[str]:
    """The files python-gitlab would read, with ``PYTHON_GITLAB_CFG`` taken from ``env``."""
    if config_file is not None:
        return [str(config_file)]
    if env.get("PYTHON_GITLAB_CFG"):
        return [env["PYTHON_GITLAB_CFG"]]
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    candidates = [Path("/etc/python-gitlab.cfg"), home / ".python-gitlab.cfg"]
    return [str(p) for p in candidates if p.is_file()]


def _default_section(config_file: Path | None, env: Mapping[str, str]) -> str | None:
    """The ``[global] default`` section name, if a python-gitlab config file names one."""
    import configparser

    files = _config_files(config_file, env)
    if not files:
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(files, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None  # python-gitlab's parser reports it when the section is read
    default = parser.get("global", "default", fallback="").strip()
    return default or None


def _read_gitlab_config(
    section: str, config_file: Path | None, env: Mapping[str, str]
) -> tuple[str | None, str | None, bool | str]:
    import gitlab.config

    files = _config_files(config_file, env) or None
    try:
        parser = gitlab.config.GitlabConfigParser(gitlab_id=section, config_files=files)
    except gitlab.config.ConfigError as exc:
        raise UsageError(
            f"python-gitlab config section [{section}] is unusable: {redact(str(exc))}",
            hint="Check ~/.python-gitlab.cfg (or PYTHON_GITLAB_CFG) for that section, "
            "with url and private_token.",
        ) from None
    token = parser.private_token or parser.oauth_token
    source = f"python-gitlab config section [{section}]"
    return parser.url, check_token(token, source) if token else None, parser.ssl_verify
