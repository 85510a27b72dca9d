"""The one error hierarchy of runnerctl.

A broken precondition raises a :class:`ProvisionerError`; a failed pipeline or playbook is a
*result*, not an exception. The CLI catches these errors in one place, prints the message and the
hint to stderr and exits with :attr:`ProvisionerError.exit_code`.

Exit codes (documented in README.md):

==== =========================================================
0    success
1    unexpected internal error (a bug: please report it)
2    usage error (unknown option, bad choice)
3    configuration file invalid, unreadable or unwritable
4    GitLab API refused the request (auth, scope, not found)
5    a host check or provisioning run failed
6    image build or verification failed
7    smoke pipeline failed
8    sandbox or stand-in runner could not start
9    ``config lint`` found a risk at or above ``--fail-on``
10   ``doctor`` found a known failure (0: none found)
11   ``pipelines --once``: a listed pipeline failed
==== =========================================================
"""

from __future__ import annotations

from typing import Any


class ProvisionerError(Exception):
    """Base error: a message for the user, a hint saying what to do, and an exit code."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __init_subclass__(cls, *, exit_code: int | None = None, **kwargs: Any) -> None:
        """Set a subclass's exit code: ``class HostError(ProvisionerError, exit_code=5)``."""
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(ProvisionerError, exit_code=2):
    """The command line names something that cannot work (exit 2)."""


class ConfigError(ProvisionerError, exit_code=3):
    """config.toml is malformed, invalid, unreadable or cannot be written (exit 3)."""


class GitLabError(ProvisionerError, exit_code=4):
    """GitLab refused or could not serve a request (exit 4)."""


class HostError(ProvisionerError, exit_code=5):
    """A remote host cannot be reached or prepared (exit 5)."""


class ImageError(ProvisionerError, exit_code=6):
    """An image could not be built, verified or pushed (exit 6)."""


class SmokeError(ProvisionerError, exit_code=7):
    """The smoke pipeline did not go green (exit 7)."""


class SandboxError(ProvisionerError, exit_code=8):
    """The sandbox server or the stand-in runner could not start (exit 8)."""
