"""Redaction of secrets: the single filter every output path goes through.

Tokens must never reach logs, exceptions, ansible-runner events or ``--output json``. Everything
that prints passes its text through :func:`redact` (or a :class:`Redactor` that also knows the
literal secret values of this run, such as a cosign password chosen by the user).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "[MASKED]"

# GitLab token prefixes: https://docs.gitlab.com/security/tokens/#token-prefixes
_GITLAB_PREFIXES = (
    "glrt",  # runner authentication token
    "glrtr",  # runner registration token (new style)
    "glpat",  # personal / project / group access token
    "glcbt",  # CI/CD job token
    "gldt",  # deploy token
    "glptt",  # pipeline trigger token
    "glft",  # feed token
    "glimt",  # incoming mail token
    "gloas",  # OAuth application secret
    "glsoat",  # SCIM OAuth token
    "glffct",  # feature flags client token
    "glagent",  # agent for Kubernetes
)
_TOKEN_RE = re.compile(
    r"\b(?P<prefix>(?:" + "|".join(_GITLAB_PREFIXES) + r")-)"
    r"[0-9A-Za-z_\-]{8,}(?:\.[0-9A-Za-z_\-]+)*"  # routable tokens carry dot-separated parts
)
# Legacy runner registration tokens: GR1348941 followed by the secret part.
_REGISTRATION_RE = re.compile(r"\bGR1348941[0-9A-Za-z_\-]{8,}")
# Secret-bearing assignments and headers: COSIGN_PASSWORD=..., PRIVATE-TOKEN: ..., "token": "..."
_ASSIGNMENT_RE = re.compile(
    r"(?P<key>\b(?:COSIGN_PASSWORD|COSIGN_PRIVATE_KEY|CI_JOB_TOKEN|GITLAB_TOKEN|CI_REGISTRY_PASSWORD"
    r"|PRIVATE-TOKEN|JOB-TOKEN|RUNNER-TOKEN|Private-Token|Job-Token)\b['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<value>[^\s'\"&,;}]+)",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9+/=._\-]{8,})")
# URLs with userinfo: scheme://user:password@host -> scheme://user:[MASKED]@host
_URL_USERINFO_RE = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]*:)(?P<pw>[^\s/@]+)@")


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with every known secret shape, and every literal in ``extra``, masked."""
    for value in sorted((v for v in extra if len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _TOKEN_RE.sub(lambda m: m.group("prefix") + MASK, text)
    text = _REGISTRATION_RE.sub("GR1348941" + MASK, text)
    text = _URL_USERINFO_RE.sub(lambda m: m.group("head") + MASK + "@", text)
    text = _ASSIGNMENT_RE.sub(
        lambda m: m.group("key") + (m.group("value") if m.group("value") == MASK else MASK), text
    )
    return _BEARER_RE.sub(lambda m: m.group("key") + MASK, text)


def contains_secret(text: str) -> bool:
    """True when ``text`` still holds something shaped like a secret (used by leak tests)."""
    return redact(text) != text


class Redactor:
    """A redaction function that also masks the literal secrets registered during this run."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        self._literals: set[str] = set(literals)

    def add(self, secret: str | None) -> None:
        """Remember a secret value (a password, a token read from a file) to mask everywhere."""
        if secret:
            self._literals.add(secret)

    def __call__(self, text: str) -> str:
        return redact(text, self._literals)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites every record's message through a :class:`Redactor`.

    The record's arguments are merged into the message first, so a token passed as a ``%s``
    argument is masked too; exception text is masked when the traceback is rendered.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = self.redactor(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = self.redactor(f"{type(exc).__name__}: {exc}")
            record.exc_info = None
        return True
