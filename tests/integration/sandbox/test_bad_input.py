"""Bad input never makes the sandbox answer 500: GitLab answers 400 or 404.

The reproductions come first; then a bounded, seeded schemathesis run over every operation of
GitLab's OpenAPI subset (valid and invalid data) asserts that no answer is a server error. The
fuzz run gets a sandbox of its own, because it calls DELETE on whatever ids it makes up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

SPEC_FILE = "gitlab-openapi/gitlab_openapi_v2_emulator_subset.yaml"
EXAMPLES_PER_OPERATION = 20


def _api(sandbox: RunningSandbox, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"PRIVATE-TOKEN": sandbox.root_token, **kwargs.pop("headers", {})}
    return requests.request(
        method, f"{sandbox.url}/api/v4{path}", headers=headers, timeout=30, **kwargs
    )


@pytest.mark.parametrize(
    "path",
    [
        "/projects/%C2%B9",
        "/groups/%C2%B9",
        "/runners/%C2%B9",
        "/projects/%D9%A1/pipelines",
        "/runners/99999999999999999999",
        "/projects/99999999999999999999",
        "/groups/99999999999999999999",
        "/users/99999999999999999999",
    ],
)
def test_unicode_digits_and_ids_beyond_64_bits_are_not_server_errors(
    sandbox: RunningSandbox, path: str
) -> None:
    resp = _api(sandbox, "GET", path)
    assert resp.status_code in (400, 404), (path, resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")


def test_integer_parameter_beyond_64_bits_is_invalid(sandbox: RunningSandbox) -> None:
    resp = _api(sandbox, "GET", "/runners/all", params={"page": "99999999999999999999"})
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"error": "page is invalid"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/user/runners"), ("POST", "/projects"), ("PUT", "/runners/1")],
)
def test_multipart_without_boundary_is_400(sandbox: RunningSandbox, method: str, path: str) -> None:
    resp = _api(
        sandbox,
        method,
        path,
        data=b"--x\r\ncontent-disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert resp.status_code == 400, resp.text
    assert "multipart" in resp.json()["message"]


def test_lone_surrogate_in_json_body_is_400(sandbox: RunningSandbox) -> None:
    before = len(_api(sandbox, "GET", "/projects", params={"per_page": 100}).json())
    resp = _api(
        sandbox,
        "POST",
        "/projects",
        data=b'{"name": "bad\\ud800name", "path": "bad-surrogate"}',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"message": "400 Bad request - Invalid JSON"}
    assert len(_api(sandbox, "GET", "/projects", params={"per_page": 100}).json()) == before


def test_graphql_variables_that_are_not_json_are_400(sandbox: RunningSandbox) -> None:
    resp = requests.post(
        f"{sandbox.url}/api/graphql",
        json={"query": "{ currentUser { username } }", "variables": "{not json"},
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text


# the bounded fuzz run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    from provisioner.sandbox import start_background

    handle = start_background(tmp_path_factory.mktemp("fuzzed-sandbox"), port=0, seed=12)
    try:
        yield RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle)
    finally:
        handle.stop()


def _operations(reference_dir: Path) -> list[Any]:
    raw = yaml.safe_load((reference_dir / SPEC_FILE).read_text())
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.generation.update(modes=list(schemathesis.GenerationMode))
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_finds_no_server_error(
    own_sandbox: RunningSandbox, reference_dir: Path
) -> None:
    """Every operation, EXAMPLES_PER_OPERATION valid and invalid cases each, seeded: no 5xx."""
    operations = _operations(reference_dir)
    assert len(operations) >= 30
    failures: list[str] = []
    calls = 0

    for operation in operations:

        @seed(12)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            resp = case.call(
                base_url=own_sandbox.url,
                headers={"PRIVATE-TOKEN": own_sandbox.root_token},
                timeout=30,
            )
            if resp.status_code >= 500:
                failures.append(
                    f"{case.operation.label} -> {resp.status_code}: path={case.path_parameters} "
                    f"query={case.query} body={case.body!r:.200}"
                )

        check()

    assert calls >= len(operations) * 5
    assert failures == []
