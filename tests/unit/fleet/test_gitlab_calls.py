"""The GitLab calls apply adds: a conditional delete (412 -> RunnerChangedError), managers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from provisioner.gitlab.models import RunnerSpec, RunnerType
from provisioner.gitlab.runners import RunnerChangedError, RunnerManager
from tests.unit.registration.fakes import FakeGitLab, Fault, make_api

SINCE = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)


class HeaderGitLab(FakeGitLab):
    """Records the headers of each request; serves ``GET /runners/:id/managers``."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.headers.append(dict(request.headers))
        if str(request.url).split("?")[0].endswith("/managers"):
            payload = [{"system_id": "s_abc", "contacted_at": "2026-12-03T12:00:09.000Z"}]
            return self._response(request, 200, payload)
        return super().send(request, **kwargs)


def _created(api: Any) -> int:
    spec = RunnerSpec(runner_type=RunnerType.INSTANCE, description="build")
    return int(api.create_runner(spec).id)


def test_conditional_delete_sends_if_unmodified_since_and_deletes() -> None:
    fake = HeaderGitLab()
    api = make_api(fake)
    rid = _created(api)
    assert api.delete_runner(rid, unmodified_since=SINCE) is True
    assert fake.headers[-1]["If-Unmodified-Since"] == "Thu, 03 Dec 2026 12:00:05 GMT"
    assert api.find_runner(rid) is None
    assert api.delete_runner(rid, unmodified_since=SINCE) is False  # gone already


def test_a_412_means_changed_since_and_the_runner_stays() -> None:
    fake = HeaderGitLab()
    api = make_api(fake)
    rid = _created(api)
    fake.faults.append(Fault(412, "DELETE", f"/runners/{rid}"))
    with pytest.raises(RunnerChangedError) as caught:
        api.delete_runner(rid, unmodified_since=SINCE)
    assert "was changed in GitLab after 2026-12-03 12:00:05" in caught.value.message
    assert api.find_runner(rid) is not None


def test_unconditional_delete_sends_no_precondition() -> None:
    fake = HeaderGitLab()
    api = make_api(fake)
    rid = _created(api)
    assert api.delete_runner(rid) is True
    assert "If-Unmodified-Since" not in fake.headers[-1]


def test_managers_are_parsed() -> None:
    api = make_api(HeaderGitLab())
    assert api.managers(5) == (
        RunnerManager("s_abc", datetime(2026, 12, 3, 12, 0, 9, tzinfo=UTC), ""),
    )
