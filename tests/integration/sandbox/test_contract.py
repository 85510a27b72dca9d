"""Contract: each operation of GitLab's OpenAPI subset, answered by the sandbox, fits the spec.

The Swagger 2.0 definitions become a JSON Schema (``definitions`` + ``$ref``), corrected only by
the documented errata in ``data/openapi_errata.yaml``. Every operation of the subset must be
exercised here (the last test checks the list is complete).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from tests.helpers import zip_bytes
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox

ERRATA = yaml.safe_load((Path(__file__).parent / "data" / "openapi_errata.yaml").read_text())
SPEC_FILE = "gitlab-openapi/gitlab_openapi_v2_emulator_subset.yaml"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The global erratum: any property, at any depth, may be null."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    if "type" in out and isinstance(out["type"], str):
        out["type"] = [out["type"], "null"]
    if "items" in out and isinstance(out["items"], dict):
        out["items"] = _nullable(out["items"])
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _nullable(v) for k, v in out["properties"].items()}
    return out


def corrected_spec(reference_dir: Path) -> dict[str, Any]:
    spec = yaml.safe_load((reference_dir / SPEC_FILE).read_text())
    definitions: dict[str, Any] = copy.deepcopy(spec["definitions"])
    for entry in ERRATA["properties"]:
        node = definitions[entry["definition"]]
        *parents, leaf = entry["property"].split(".")
        for parent in parents:
            node = node["properties"][parent]
        assert leaf in node["properties"], entry
        node["properties"][leaf] = entry["schema"]
    for definition in definitions.values():
        for name, prop in list(definition.get("properties", {}).items()):
            definition["properties"][name] = _nullable(prop)
    spec["definitions"] = definitions
    return spec


@dataclass
class World:
    sandbox: RunningSandbox
    project: Any
    group: Any
    runner: Any
    pipeline: Any
    job: dict[str, Any]
    client: RunnerClient

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"PRIVATE-TOKEN": self.sandbox.root_token, **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.sandbox.url}/api/v4{path}", headers=headers, timeout=30, **kwargs
        )

    def new_runner(self) -> dict[str, Any]:
        resp = self.api(
            "POST",
            "/user/runners",
            json={"runner_type": "project_type", "project_id": self.project.id},
        )
        assert resp.status_code == 201
        result: dict[str, Any] = resp.json()
        return result


@pytest.fixture(scope="module")
def world(sandbox: RunningSandbox) -> World:
    gl = sandbox.gitlab()
    name = sandbox.unique("contract")
    group = gl.groups.create({"name": name, "path": name})
    project = sandbox.new_project(
        group=group,
        files={".gitlab-ci.yml": "build:\n  script: [echo build]\n  artifacts: {paths: [out/]}\n"},
    )
    assert gl.user is not None
    runner = gl.user.runners.create(
        {
            "runner_type": "project_type",
            "project_id": project.id,
            "tag_list": ["contract"],
            "run_untagged": True,
        }
    )
    pipeline = project.pipelines.create({"ref": "main"})
    client = RunnerClient(sandbox.url, runner.token)
    job = client.request_job().json()
    return World(sandbox, project, group, runner, pipeline, job, client)


def _wheel() -> tuple[str, bytes]:
    # Built more than once per test (upload, then the download URL's digest): it must not
    # depend on the clock.
    return "contract_pkg-1.0-py3-none-any.whl", zip_bytes({"contract_pkg/__init__.py": ""})


def _pypi_upload(w: World, version: str = "1.0") -> requests.Response:
    name, data = _wheel()
    name = name.replace("-1.0-", f"-{version}-")
    return requests.post(
        f"{w.sandbox.url}/api/v4/projects/{w.project.id}/packages/pypi",
        data={
            ":action": "file_upload",
            "protocol_version": "1",
            "name": "contract-pkg",
            "version": version,
            "filetype": "bdist_wheel",
            "pyversion": "py3",
            "metadata_version": "2.1",
            "sha256_digest": hashlib.sha256(data).hexdigest(),
        },
        files={"content": (name, data, "application/octet-stream")},
        auth=("gitlab-ci-token", w.job["token"]),
        timeout=30,
    )


def _pypi(w: World, suffix: str) -> requests.Response:
    if not w.api(
        "GET", f"/projects/{w.project.id}/packages", params={"package_type": "pypi"}
    ).json():
        assert _pypi_upload(w).status_code == 201
    return requests.get(
        f"{w.sandbox.url}/api/v4/projects/{w.project.id}/packages/pypi{suffix}",
        auth=("gitlab-ci-token", w.job["token"]),
        timeout=30,
    )


def _pypi_file(w: World) -> requests.Response:
    name, data = _wheel()
    _pypi(w, "/simple")
    return _pypi(w, f"/files/{hashlib.sha256(data).hexdigest()}/{name}")


def _generic(w: World, method: str) -> requests.Response:
    url = f"/projects/{w.project.id}/packages/generic/contract/1.0.0/sub/dir/file.txt"
    if method == "GET":
        _generic(w, "PUT")
        return w.api("GET", url)
    return w.api("PUT", url, data=b"payload")


def _job_update(w: World) -> requests.Response:
    return w.client.update(w.job, "running")


def _artifacts(w: World, method: str) -> requests.Response:
    if method == "POST":
        return w.client.upload_artifacts(w.job, {"out/a.txt": b"a"})
    assert _artifacts(w, "POST").status_code == 201
    return w.client.download_artifacts({"id": w.job["id"], "token": w.job["token"]})


def _legacy_register(w: World) -> requests.Response:
    token = w.api("GET", f"/projects/{w.project.id}").json()["runners_token"]
    w.api("PUT", "/application/settings", json={"allow_runner_registration_token": True})
    try:
        return requests.post(
            f"{w.sandbox.url}/api/v4/runners",
            json={"token": token, "description": "legacy"},
            timeout=30,
        )
    finally:
        w.api("PUT", "/application/settings", json={"allow_runner_registration_token": False})


def _delete_manager(w: World) -> requests.Response:
    runner = w.new_runner()
    RunnerClient(w.sandbox.url, runner["token"], system_id="s_contract0001").request_job()
    return requests.delete(
        f"{w.sandbox.url}/api/v4/runners/managers",
        json={"token": runner["token"], "system_id": "s_contract0001"},
        timeout=30,
    )


def _assign(w: World) -> requests.Response:
    other = w.sandbox.new_project(group=w.group)
    return w.api("POST", f"/projects/{other.id}/runners", json={"runner_id": w.runner.id})


Call = Callable[[World], requests.Response]

OPERATIONS: dict[str, Call] = {
    "POST /api/v4/user/runners": lambda w: w.api(
        "POST", "/user/runners", json={"runner_type": "group_type", "group_id": w.group.id}
    ),
    "POST /api/v4/runners": _legacy_register,
    "DELETE /api/v4/runners": lambda w: requests.delete(
        f"{w.sandbox.url}/api/v4/runners", json={"token": w.new_runner()["token"]}, timeout=30
    ),
    "GET /api/v4/runners": lambda w: w.api("GET", "/runners"),
    "POST /api/v4/runners/verify": lambda w: requests.post(
        f"{w.sandbox.url}/api/v4/runners/verify", json={"token": w.runner.token}, timeout=30
    ),
    "DELETE /api/v4/runners/managers": _delete_manager,
    "GET /api/v4/runners/{id}": lambda w: w.api("GET", f"/runners/{w.runner.id}"),
    "PUT /api/v4/runners/{id}": lambda w: w.api(
        "PUT", f"/runners/{w.runner.id}", json={"description": "contract runner"}
    ),
    "DELETE /api/v4/runners/{id}": lambda w: w.api("DELETE", f"/runners/{w.new_runner()['id']}"),
    "POST /api/v4/runners/{id}/reset_authentication_token": lambda w: w.api(
        "POST", f"/runners/{w.new_runner()['id']}/reset_authentication_token"
    ),
    "POST /api/v4/runners/reset_authentication_token": lambda w: requests.post(
        f"{w.sandbox.url}/api/v4/runners/reset_authentication_token",
        json={"token": w.new_runner()["token"]},
        timeout=30,
    ),
    "GET /api/v4/runners/all": lambda w: w.api("GET", "/runners/all"),
    "GET /api/v4/groups/{id}/runners": lambda w: w.api("GET", f"/groups/{w.group.id}/runners"),
    "GET /api/v4/projects/{id}/runners": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/runners"
    ),
    "POST /api/v4/projects/{id}/runners": _assign,
    "POST /api/v4/projects": lambda w: w.api(
        "POST", "/projects", json={"name": w.sandbox.unique("contract-new")}
    ),
    "GET /api/v4/projects/{id}": lambda w: w.api(
        "GET", f"/projects/{w.project.path_with_namespace.replace('/', '%2F')}"
    ),
    "POST /api/v4/projects/{id}/repository/commits": lambda w: w.api(
        "POST",
        f"/projects/{w.project.id}/repository/commits",
        json={
            "branch": "main",
            "commit_message": "contract",
            "actions": [{"action": "create", "file_path": w.sandbox.unique("f"), "content": "x"}],
        },
    ),
    "GET /api/v4/groups/{id}/projects": lambda w: w.api(
        "GET", f"/groups/{w.group.id}/projects", params={"include_subgroups": "true"}
    ),
    "GET /api/v4/groups/{id}": lambda w: w.api("GET", f"/groups/{w.group.full_path}"),
    "POST /api/v4/projects/{id}/pipeline": lambda w: w.api(
        "POST", f"/projects/{w.project.id}/pipeline", json={"ref": "main"}
    ),
    "GET /api/v4/projects/{id}/pipelines": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/pipelines"
    ),
    "GET /api/v4/projects/{id}/pipelines/latest": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/pipelines/latest"
    ),
    "GET /api/v4/projects/{id}/pipelines/{pipeline_id}": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/pipelines/{w.pipeline.id}"
    ),
    "GET /api/v4/projects/{id}/pipelines/{pipeline_id}/jobs": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/pipelines/{w.pipeline.id}/jobs"
    ),
    "GET /api/v4/projects/{id}/jobs/{job_id}": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/jobs/{w.job['id']}"
    ),
    "GET /api/v4/projects/{id}/jobs/{job_id}/trace": lambda w: w.api(
        "GET", f"/projects/{w.project.id}/jobs/{w.job['id']}/trace"
    ),
    "POST /api/v4/projects/{id}/packages/pypi": lambda w: _pypi_upload(
        w, w.sandbox.unique("2.0").replace("-", ".")
    ),
    "GET /api/v4/projects/{id}/packages/pypi/simple": lambda w: _pypi(w, "/simple"),
    "GET /api/v4/projects/{id}/packages/pypi/simple/*package_name": lambda w: _pypi(
        w, "/simple/contract-pkg/"
    ),
    "GET /api/v4/projects/{id}/packages/pypi/files/{sha256}/*file_identifier": _pypi_file,
    "PUT /api/v4/projects/{id}/packages/generic/{package_name}/*package_version/(*path/)"
    "{file_name}": lambda w: _generic(w, "PUT"),
    "GET /api/v4/projects/{id}/packages/generic/{package_name}/*package_version/(*path/)"
    "{file_name}": lambda w: _generic(w, "GET"),
    "POST /api/v4/jobs/request": lambda w: w.client.request_job(),
    "PUT /api/v4/jobs/{id}": _job_update,
    "PATCH /api/v4/jobs/{id}/trace": lambda w: w.client.patch_trace(
        w.job,
        b"x",
        int(
            w.api("GET", f"/projects/{w.project.id}/jobs/{w.job['id']}/trace").headers.get(
                "content-length", "0"
            )
        ),
    ),
    "POST /api/v4/jobs/{id}/artifacts": lambda w: _artifacts(w, "POST"),
    "GET /api/v4/jobs/{id}/artifacts": lambda w: _artifacts(w, "GET"),
    "GET /api/v4/version": lambda w: w.api("GET", "/version"),
}

CORRECTIONS = {e["operation"]: e for e in ERRATA["operations"]}


def test_every_subset_operation_is_exercised(reference_dir: Path) -> None:
    spec = yaml.safe_load((reference_dir / SPEC_FILE).read_text())
    documented = {
        f"{m.upper()} {p}"
        for p, ops in spec["paths"].items()
        for m in ops
        if m in ("get", "put", "post", "delete", "patch")
    }
    assert documented == set(OPERATIONS)
    assert set(CORRECTIONS) <= documented


@pytest.fixture(scope="module")
def spec(reference_dir: Path) -> dict[str, Any]:
    return corrected_spec(reference_dir)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_response_matches_spec(operation: str, world: World, spec: dict[str, Any]) -> None:
    method, path = operation.split(" ", 1)
    responses = spec["paths"][path][method.lower()]["responses"]
    resp = OPERATIONS[operation](world)
    correction = CORRECTIONS.get(operation, {})
    documented = {str(code) for code in responses}
    if correction.get("correction") == "status":
        documented = {str(correction["status"])}
    assert str(resp.status_code) in documented, (resp.status_code, resp.text[:300])
    assert resp.status_code < 300
    if correction.get("correction") == "no_body" or resp.status_code == 204:
        assert resp.content == b""
        return
    if correction.get("correction") == "text":
        assert resp.headers["content-type"].startswith("text/plain")
        return
    schema = correction.get("schema") or (responses.get(str(resp.status_code)) or {}).get("schema")
    if schema is None:
        return
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    root = {"definitions": spec["definitions"], **schema}
    validator = jsonschema.Draft4Validator(root)
    items = body if correction.get("correction") == "list" else [body]
    if correction.get("correction") == "list":
        assert isinstance(body, list)
        assert body, "a list check needs at least one item"
    for item in items:
        errors = sorted(validator.iter_errors(item), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:10]]
