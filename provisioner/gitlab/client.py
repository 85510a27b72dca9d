"""The GitLab REST adapter, :class:`GitLabAPI`: one object composed of the resource modules.

Everything above this package sees frozen dataclasses and :class:`~provisioner.errors.GitLabError`
with a hint; nothing above it catches ``gitlab.exceptions.*`` or ``requests.*``.

- :mod:`.transport`: the one retry policy, "missing is None", request counting;
- :mod:`.runners`, :mod:`.projects`, :mod:`.pipelines`, :mod:`.packages`: one mixin per
  resource family;
- :mod:`.graphql`: ``POST /api/graphql`` on the same transport (:attr:`GitLabAPI.graphql`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from provisioner.gitlab.fleet import FleetRunnersMixin
from provisioner.gitlab.graphql import GraphQL
from provisioner.gitlab.jobs import JobsMixin
from provisioner.gitlab.models import ConnectionSettings
from provisioner.gitlab.monitoring import MonitoringMixin
from provisioner.gitlab.packages import PackagesMixin
from provisioner.gitlab.pipelines import PipelinesMixin
from provisioner.gitlab.projects import ProjectsMixin
from provisioner.gitlab.runners import MARKER_PREFIX, RunnersMixin
from provisioner.gitlab.transport import NEW_WORKFLOW_HINT, RETRYABLE_STATUS, Transport

if TYPE_CHECKING:
    import requests

__all__ = ["MARKER_PREFIX", "NEW_WORKFLOW_HINT", "RETRYABLE_STATUS", "GitLabAPI"]


class GitLabAPI(
    RunnersMixin,
    ProjectsMixin,
    PipelinesMixin,
    PackagesMixin,
    MonitoringMixin,
    JobsMixin,
    FleetRunnersMixin,
):
    """Typed access to the part of GitLab's REST and GraphQL APIs runnerctl uses."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: Transport | None = None,
    ) -> None:
        """Wire the resource modules to one transport.

        Args:
            settings: where GitLab is and the token.
            session: the ``requests`` session to send through (tests mount fakes on it).
            sleep: how to wait between retries (tests record the waits).
            transport: a ready transport (tests inject its clock and jitter); it replaces
                ``session`` and ``sleep``.
        """
        self.settings = settings
        self._t = transport or Transport(settings, session=session, sleep=sleep)
        self.graphql = GraphQL(self._t)

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> GitLabAPI:
        """The real wiring: a fresh session, real sleeping."""
        return cls(settings)

    @property
    def authenticated(self) -> bool:
        """True when an access token is configured (the legacy path can run without one)."""
        return bool(self.settings.token)

    @property
    def request_count(self) -> int:
        """How many HTTP requests this client has sent (retries included)."""
        return self._t.request_count
