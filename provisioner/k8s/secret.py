"""The Secret the chart reads the runner token from (``runners.secret``).

The chart mounts it at ``/secrets`` and exports ``runner-token`` as ``CI_SERVER_TOKEN``. The
``runner-registration-token`` key must exist even with a ``glrt-`` token, as an empty string
("need to leave as an empty string for compatibility reasons", the chart's values.yaml;
chart#527). The token is base64-encoded from its exact bytes: a trailing newline (what
``echo TOKEN | base64`` produces) fails with ``invalid header field for "Private-Token"``
wherever the key is read verbatim (chart 0.86's entrypoint happens to strip it with
``$(cat ...)``; other readers of the Secret do not).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from provisioner.errors import UsageError

TOKEN_KEY = "runner-token"  # noqa: S105 (a key name, not a secret)
REGISTRATION_KEY = "runner-registration-token"


def encode(value: str) -> str:
    """Base64 of ``value``'s UTF-8 bytes, with no newline added."""
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def decode(value: str) -> bytes | None:
    """The bytes of a base64 Secret value, or ``None`` when it is not valid base64."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def token_secret(
    *, name: str, namespace: str, token: str, labels: dict[str, str]
) -> dict[str, Any]:
    """The Secret manifest holding ``token``.

    Raises:
        UsageError: when the token has surrounding whitespace or is empty (it would fail
            GitLab's header check), so such a Secret is never written.
    """
    if not token or token != token.strip():
        raise UsageError(
            "The runner token is empty or has surrounding whitespace.",
            hint="Run `runnerctl token rotate NAME` to get a clean token, then try again.",
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "type": "Opaque",
        "data": {REGISTRATION_KEY: "", TOKEN_KEY: encode(token)},
    }
