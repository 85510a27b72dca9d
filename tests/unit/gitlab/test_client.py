"""The GitLab adapter: real python-gitlab over an in-memory transport (no sockets)."""

from __future__ import annotations

import pytest

from provisioner.errors import GitLabError
from provisioner.gitlab.models import AccessLevel, RunnerSpec, RunnerType
from provisioner.secrets import contains_secret
from tests.unit.registration.fakes import FakeGitLab, Fault, make_api


def _spec(**kw: object) -> RunnerSpec:
    base: dict[str, object] = {
        "runner_type": RunnerType.GROUP,
        "description": "ci-1",
        "group_id": 7,
        "tag_list": ("linux", "py"),
    }
    base.update(kw)
    return RunnerSpec(**base)  # type: ignore[arg-type]


def test_create_verify_get_roundtrip_and_request_count() -> None:
    fake = FakeGitLab()
    api = make_api(fake)
    creds = api.create_runner(_spec())
    assert creds.token.startswith("glrt-")
    assert "glrt-" not in repr(creds)
    assert api.verify(creds.token).runner_id == creds.id
    runner = api.get_runner(creds.id)
    assert runner.tag_list == ("linux", "py")
    assert runner.runner_type is RunnerType.GROUP
    assert runner.group_paths == ("platform/ci",)
    assert runner.access_level is AccessLevel.NOT_PROTECTED
    assert api.request_count == 3
    assert fake.log == [
        ("POST", "/user/runners"),
        ("POST", "/runners/verify"),
        ("GET", f"/runners/{creds.id}"),
    ]


def test_verify_of_unknown_token_is_a_result_not_an_error() -> None:
    api = make_api(FakeGitLab())
    assert api.verify("glrt-nosuchtoken0000000").valid is False


@pytest.mark.parametrize(
    ("status", "needle"),
    [
        (401, "invalid, expired or revoked"),
        (403, "create_runner"),
        (404, "not found"),
    ],
)
def test_http_errors_become_gitlab_errors_with_hints(status: int, needle: str) -> None:
    fake = FakeGitLab(faults=[Fault(status, "POST", "/user/runners")])
    api = make_api(fake)
    with pytest.raises(GitLabError) as info:
        api.create_runner(_spec())
    assert info.value.exit_code == 4
    assert str(status) in info.value.message
    assert needle in (info.value.hint or "")


def test_wrong_pat_is_401_with_the_token_source_in_the_hint() -> None:
    api = make_api(FakeGitLab(), token="glpat-wrongwrongwrongwrong")
    with pytest.raises(GitLabError) as info:
        api.resolve_group("platform/ci")
    assert "401" in info.value.message
    assert "GITLAB_TOKEN" in (info.value.hint or "")
    assert not contains_secret(info.value.message + (info.value.hint or ""))


def test_missing_group_is_404_naming_the_path() -> None:
    api = make_api(FakeGitLab())
    with pytest.raises(GitLabError) as info:
        api.resolve_group("no/such")
    assert "404" in info.value.message
    assert "no/such" in (info.value.hint or "")
    assert api.resolve_group("platform/ci").id == 7
    assert api.resolve_project("platform/ci/app").id == 42


def test_legacy_registration_410_explains_the_new_workflow() -> None:
    api = make_api(FakeGitLab(legacy_enabled=False))
    with pytest.raises(GitLabError) as info:
        api.register_legacy("GR1348941legacyregtoken00", _spec())
    assert "410" in info.value.message
    hint = info.value.hint or ""
    assert "create_runner" in hint
    assert "POST /user/runners" in hint
    assert "GR1348941" not in info.value.message + hint


def test_transient_errors_are_retried_obeying_retry_after() -> None:
    sleeps: list[float] = []
    fake = FakeGitLab(
        faults=[
            Fault(503, "GET", "/groups/platform%2Fci", retry_after="3"),
            Fault(429, "GET", "/groups/platform%2Fci", retry_after="7"),
            Fault(502, "GET", "/groups/platform%2Fci"),
        ]
    )
    api = make_api(fake, sleeps=sleeps)
    assert api.resolve_group("platform/ci").id == 7
    assert sleeps[:2] == [3.0, 7.0]
    assert len(sleeps) == 3
    assert 0 < sleeps[2] <= 8
    assert api.request_count == 4


def test_retries_give_up_after_max_retries() -> None:
    sleeps: list[float] = []
    fake = FakeGitLab(faults=[Fault(500) for _ in range(10)])
    api = make_api(fake, sleeps=sleeps)
    with pytest.raises(GitLabError) as info:
        api.get_runner(1)
    assert "after 5 attempts" in info.value.message
    assert len(sleeps) == 4


def test_lost_create_answer_does_not_create_a_second_runner() -> None:
    # GitLab creates the runner, then the proxy answers 502: the adapter must find it.
    fake = FakeGitLab(faults=[Fault(502, "POST", "/user/runners", after_effect=True)])
    api = make_api(fake)
    creds = api.create_runner(_spec())
    assert len(fake.runners) == 1
    only = next(iter(fake.runners.values()))
    assert creds.id == only.id
    assert creds.recovered is True
    assert creds.token == only.token  # the reset token is the live one
    assert [m for m, p in fake.log if p == "/user/runners"] == ["POST"]


def test_create_rejected_before_effect_is_reposted_once() -> None:
    fake = FakeGitLab(faults=[Fault(503, "POST", "/user/runners")])
    api = make_api(fake)
    creds = api.create_runner(_spec())
    assert len(fake.runners) == 1
    assert creds.recovered is False
    assert [m for m, p in fake.log if p == "/user/runners"] == ["POST", "POST"]


def test_throttled_create_is_reposted_without_lookup() -> None:
    sleeps: list[float] = []
    fake = FakeGitLab(faults=[Fault(429, "POST", "/user/runners", retry_after="2")])
    api = make_api(fake, sleeps=sleeps)
    api.create_runner(_spec())
    assert sleeps == [2.0]
    assert len(fake.runners) == 1
    assert all(p in ("/user/runners",) for _m, p in fake.log)


def test_unreachable_gitlab_says_so_with_a_hint() -> None:
    api = make_api(FakeGitLab(raise_connection_error=True))
    with pytest.raises(GitLabError) as info:
        api.resolve_group("platform/ci")
    assert "Cannot reach GitLab" in info.value.message
    assert "GITLAB_URL" in (info.value.hint or "")


def test_delete_is_idempotent_and_reset_replaces_the_token() -> None:
    fake = FakeGitLab()
    api = make_api(fake)
    creds = api.create_runner(_spec())
    fresh = api.reset_token(creds.id)
    assert fresh.token != creds.token
    assert api.verify(creds.token).valid is False
    assert api.verify(fresh.token).valid is True
    assert api.delete_runner(creds.id) is True
    assert api.delete_runner(creds.id) is False
    assert api.find_runner(creds.id) is None
