"""Package registries driven by twine, pip and curl, authenticated as a CI job would be."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gitlab
import pytest
import requests

from tests.helpers import tar_gz_bytes, zip_bytes
from tests.integration.conftest import RunningSandbox
from tests.integration.sandbox.runner_client import RunnerClient

pytestmark = pytest.mark.sandbox

BIN = Path(sys.executable).parent
METADATA = (
    "Metadata-Version: 2.1\nName: sandbox-demo\nVersion: {version}\nSummary: Sandbox demo\n"
    "Requires-Python: >=3.8\n"
)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_dists(out: Path, version: str) -> tuple[Path, Path]:
    """A real, installable wheel and sdist, made by hand (no network, no build backend)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "sandbox_demo/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"sandbox_demo-{version}.dist-info/METADATA": METADATA.format(version=version).encode(),
        f"sandbox_demo-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: handmade\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"sandbox_demo-{version}.dist-info/RECORD"
    lines = [_record_line(n, d) for n, d in files.items()] + [f"{record},,"]
    wheel = out / f"sandbox_demo-{version}-py3-none-any.whl"
    wheel.write_bytes(zip_bytes({**files, record: "\n".join(lines) + "\n"}))
    sdist = out / f"sandbox_demo-{version}.tar.gz"
    sdist_files = {
        "PKG-INFO": METADATA.format(version=version).encode(),
        "pyproject.toml": b'[project]\nname = "sandbox-demo"\n',
        "sandbox_demo/__init__.py": files["sandbox_demo/__init__.py"],
    }
    sdist.write_bytes(
        tar_gz_bytes({f"sandbox_demo-{version}/{n}": d for n, d in sdist_files.items()})
    )
    return wheel, sdist


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "TWINE_")) and "proxy" not in k.lower()
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        NO_PROXY="127.0.0.1,localhost",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        **extra,
    )
    return env


@pytest.fixture
def running_job(sandbox: RunningSandbox) -> tuple[Any, dict[str, Any]]:
    """A project with a job in the running state: its token is a live CI_JOB_TOKEN."""
    gl = sandbox.gitlab()
    project = sandbox.new_project(files={".gitlab-ci.yml": "publish:\n  script: [twine upload]\n"})
    assert gl.user is not None
    runner = gl.user.runners.create({"runner_type": "project_type", "project_id": project.id})
    project.pipelines.create({"ref": "main"})
    job = RunnerClient(sandbox.url, runner.token).request_job().json()
    return project, job


def test_twine_upload_and_pip_install_with_job_token(
    sandbox: RunningSandbox, running_job: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    project, job = running_job
    wheel, sdist = build_dists(tmp_path / "dist", "0.1.0")
    registry = f"{sandbox.url}/api/v4/projects/{project.id}/packages/pypi"
    env = _clean_env(TWINE_USERNAME="gitlab-ci-token", TWINE_PASSWORD=job["token"])
    upload = subprocess.run(
        [
            str(BIN / "twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            registry,
            str(wheel),
            str(sdist),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upload.returncode == 0, upload.stdout + upload.stderr
    assert job["token"] not in upload.stdout + upload.stderr

    again = subprocess.run(
        [
            str(BIN / "twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            registry,
            str(wheel),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode != 0
    assert "400 Bad Request" in again.stdout + again.stderr

    packages = project.packages.list(get_all=True)
    assert [(p.name, p.version, p.package_type) for p in packages] == [
        ("sandbox-demo", "0.1.0", "pypi")
    ]
    files = {f.file_name for f in project.packages.get(packages[0].id).package_files.list()}
    assert files == {wheel.name, sdist.name}

    host = sandbox.url.split("://")[1]
    index = f"http://gitlab-ci-token:{job['token']}@{host}/api/v4/projects/{project.id}/packages/pypi/simple"
    page = requests.get(
        f"{registry}/simple/Sandbox_Demo/", auth=("gitlab-ci-token", job["token"]), timeout=10
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert f'href="{registry}/files/{sha}/{wheel.name}#sha256={sha}"' in page.text
    assert 'data-requires-python="&gt;=3.8"' in page.text
    assert "<title>Links for sandbox-demo</title>" in page.text

    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-cache-dir",
            "--target",
            str(target),
            "sandbox-demo==0.1.0",
        ],
        env=_clean_env(PIP_INDEX_URL=index),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "sandbox_demo" / "__init__.py").read_text() == 'VERSION = "0.1.0"\n'
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--only-binary",
            ":all:",
            "-d",
            str(tmp_path / "dl"),
            "sandbox-demo==0.1.0",
        ],
        env=_clean_env(PIP_INDEX_URL=index),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "dl" / wheel.name).read_bytes() == wheel.read_bytes()
    sdist_sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    fetched = requests.get(
        f"{registry}/files/{sdist_sha}/{sdist.name}",
        auth=("gitlab-ci-token", job["token"]),
        timeout=10,
    )
    assert fetched.content == sdist.read_bytes()

    anonymous = requests.get(f"{registry}/simple/sandbox-demo/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="GitLab Packages Registry"'
    missing = requests.get(
        f"{registry}/simple/not-there/", auth=("x", sandbox.root_token), timeout=10
    )
    assert missing.status_code == 404

    gl_package = project.packages.get(packages[0].id)
    gl_package.delete()
    assert project.packages.list(get_all=True) == []


def test_generic_packages_with_curl(
    sandbox: RunningSandbox, running_job: tuple[Any, dict[str, Any]], tmp_path: Path
) -> None:
    project, job = running_job
    payload = tmp_path / "sig.bundle"
    payload.write_bytes(b"signature bytes\n")
    headers = tmp_path / "headers"
    headers.write_text(f"JOB-TOKEN: {job['token']}\n")
    url = (
        f"{sandbox.url}/api/v4/projects/{project.id}/packages/generic/signatures/0.1.0/"
        f"dist/{payload.name}"
    )
    put = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--noproxy",
            "*",
            "-H",
            f"@{headers}",
            "--upload-file",
            str(payload),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    assert put.stdout == '{"message":"201 Created"}'
    out = tmp_path / "back"
    get = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail",
            "--noproxy",
            "*",
            "-H",
            f"@{headers}",
            "-o",
            str(out),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert get.returncode == 0, get.stderr
    assert out.read_bytes() == payload.read_bytes()
    missing = subprocess.run(
        [
            "curl",
            "--silent",
            "--noproxy",
            "*",
            "-H",
            f"@{headers}",
            "-w",
            "%{http_code}",
            url.replace("0.1.0", "9.9.9"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.stdout.endswith("404")
    bad = requests.put(
        url.replace("signatures", "bad name"),
        data=b"x",
        headers={"JOB-TOKEN": job["token"]},
        timeout=10,
    )
    assert bad.status_code in (400, 404)
    listed = project.packages.list(package_type="generic", get_all=True)
    assert [(p.name, p.version) for p in listed] == [("signatures", "0.1.0")]
    data = project.generic_packages.download(
        package_name="signatures", package_version="0.1.0", file_name=f"dist/{payload.name}"
    )
    assert data == payload.read_bytes()
    uploaded = project.generic_packages.upload(
        package_name="notes", package_version="1.0.0", file_name="n.txt", data=b"n"
    )
    assert uploaded.message == "201 Created"
    with pytest.raises(gitlab.GitlabHttpError):
        sandbox.gitlab().http_get(
            f"/projects/{project.id}/packages/generic/notes/1.0.0/missing.txt"
        )
