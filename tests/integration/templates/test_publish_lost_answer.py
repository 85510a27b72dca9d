"""The component's publish job when GitLab stores an upload but the answer is lost.

The job's own shell (``release_retry`` from ``.python-job`` and the ``publish`` script, taken
from ``templates/python-release.yml``) runs in bash here against the sandbox, with a real job
token, while the sandbox loses every answer (bounded: every third try of a request gets
through). The first upload is stored and answered 502, the retries meet "already exists": the
job must see its own file in the simple index (same sha256) and pass. A different file under
the same name must still fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.sandbox.ci.inputs import load_with_inputs
from tests.helpers import tar_gz_bytes
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[3]
COMPONENT = ROOT / "templates" / "python-release.yml"
NAME = "lost-answer-demo"


def _faults(sandbox: RunningSandbox, **settings: Any) -> None:
    resp = requests.put(
        f"{sandbox.url}/-/sandbox/faults",
        json=settings,
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


@pytest.fixture
def lossy(sandbox: RunningSandbox) -> Iterator[RunningSandbox]:
    try:
        yield sandbox
    finally:
        _faults(sandbox, lost_answer_rate=0, fault_rate=0)


def _publish_script() -> str:
    """``release_retry`` and the publish job's script, as the job's shell runs them."""
    doc = load_with_inputs(COMPONENT.read_text(), {}, "python-release.yml")
    retry = next(line for line in doc[".python-job"]["before_script"] if "release_retry()" in line)
    return "\n".join(["set -eo pipefail", retry, *doc["publish"]["script"]])


def _wheel(dist: Path, payload: str) -> Path:
    dist.mkdir(exist_ok=True)
    path = dist / "lost_answer_demo-1.0-py3-none-any.whl"
    info = "lost_answer_demo-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("lost_answer_demo/__init__.py", payload)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


def _sdist(dist: Path) -> Path:
    path = dist / "lost_answer_demo-1.0.tar.gz"
    pkg_info = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n".encode()
    files = {"lost_answer_demo-1.0/PKG-INFO": pkg_info, "lost_answer_demo-1.0/setup.py": b""}
    path.write_bytes(tar_gz_bytes(files))
    return path


def _run(sandbox: RunningSandbox, workdir: Path, project_id: int, job_token: str) -> Any:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CI_API_V4_URL": f"{sandbox.url}/api/v4",
        "CI_PROJECT_ID": str(project_id),
        "CI_JOB_TOKEN": job_token,
        "NORMALIZED_NAME": NAME,
        "TWINE_NON_INTERACTIVE": "1",
    }
    return subprocess.run(
        ["bash", "-c", _publish_script()],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_publish_passes_when_its_upload_was_stored_but_the_answer_lost(
    lossy: RunningSandbox, tmp_path: Path
) -> None:
    gl = lossy.gitlab()
    tag = lossy.unique("lost-answer")
    project = lossy.new_project(
        files={".gitlab-ci.yml": f"publish:\n  tags: [{tag}]\n  script: [echo]\n"}
    )
    runner = gl.user.runners.create(
        {"runner_type": "instance_type", "tag_list": [tag], "run_untagged": False}
    )
    job = RunnerClient(lossy.url, runner.token).request_job()
    assert job.status_code == 201, job.text
    # This project's job: other tests' pending jobs never reach this runner (its own tag).
    assert job.json()["job_info"]["project_id"] == project.id
    job_token = job.json()["token"]
    _wheel(tmp_path / "dist", "VALUE = 1\n")
    _sdist(tmp_path / "dist")
    _faults(lossy, lost_answer_rate=1.0, seed=7)
    proc = _run(lossy, tmp_path, project.id, job_token)
    _faults(lossy, lost_answer_rate=0)
    out = proc.stdout + proc.stderr
    assert job_token not in out
    assert "already in the registry with the same sha256" in out, out
    assert proc.returncode == 0, out
    files = [
        f.file_name
        for p in project.packages.list(get_all=True)
        for f in project.packages.get(p.id).package_files.list(get_all=True)
    ]
    assert sorted(files) == ["lost_answer_demo-1.0-py3-none-any.whl", "lost_answer_demo-1.0.tar.gz"]

    # Another file under the same name is not "already published": the job fails.
    _wheel(tmp_path / "dist", "VALUE = 2\n")
    again = _run(lossy, tmp_path, project.id, job_token)
    assert again.returncode != 0, again.stdout + again.stderr
    assert "already in the registry" not in again.stdout + again.stderr
