"""The GitLab calls behind ``runnerctl smoke``, against the sandbox with real twine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings, Variable

pytestmark = [pytest.mark.sandbox]


@pytest.fixture
def api(sandbox: Any) -> GitLabAPI:
    return GitLabAPI.from_settings(ConnectionSettings(url=sandbox.url, token=sandbox.root_token))


def test_project_variables_and_commits(sandbox: Any, api: GitLabAPI) -> None:
    path = f"root/{sandbox.unique('smoke-api')}"
    assert api.find_project(path) is None
    project = api.create_project(path)
    assert api.find_project(path) == project
    assert project.default_branch == "main"
    assert api.current_username() == "root"

    assert api.get_variable(project.id, "COSIGN_PASSWORD") is None
    api.set_variable(project.id, Variable("COSIGN_PASSWORD", "a1b2c3d4e5f6a7b8", masked=True))
    api.set_variable(project.id, Variable("KEY_FILE", "-----BEGIN-----\n", variable_type="file"))
    api.set_variable(project.id, Variable("COSIGN_PASSWORD", "0011223344556677", masked=True))
    password = api.get_variable(project.id, "COSIGN_PASSWORD")
    assert password is not None
    assert (password.value, password.masked) == ("0011223344556677", True)
    key_file = api.get_variable(project.id, "KEY_FILE")
    assert key_file is not None
    assert key_file.variable_type == "file"

    assert api.list_tree(project.id, "main") == frozenset()
    files = {".gitlab-ci.yml": 'a:\n  script: ["true"]\n', "src/x.py": "X = 1\n"}
    api.commit_files(project.id, branch="main", message="one", files=files)
    assert api.list_tree(project.id, "main") == frozenset(files)
    api.commit_files(
        project.id,
        branch="main",
        message="two",
        files={"src/x.py": "X = 2\n", "new.txt": "n\n"},
        existing=api.list_tree(project.id, "main"),
    )
    assert api.read_file(project.id, "src/x.py", "main") == "X = 2\n"
    assert api.read_file(project.id, "missing.txt", "main") is None

    pipeline = api.create_pipeline(project.id, "main", {"V": "1"})
    jobs = api.pipeline_jobs(project.id, pipeline.id)
    assert [(j.name, j.status) for j in jobs] == [("a", "pending")]
    api.cancel_pipeline(project.id, pipeline.id)
    assert api.get_pipeline(project.id, pipeline.id).status == "canceled"
    assert isinstance(api.job_trace(project.id, jobs[0].id), str)


def test_registries(sandbox: Any, api: GitLabAPI, tmp_path: Path) -> None:
    project = api.create_project(f"root/{sandbox.unique('smoke-reg')}")
    dist = tmp_path / "dist"
    pkg = tmp_path / "pkg"
    (pkg / "src" / "regpkg").mkdir(parents=True)
    (pkg / "src" / "regpkg" / "__init__.py").write_text("")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "regpkg"\nversion = "0.1.0.dev3"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(pkg)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--repository-url",
            f"{sandbox.url}/api/v4/projects/{project.id}/packages/pypi",
            *map(str, sorted(dist.iterdir())),
        ],
        env={**os.environ, "TWINE_USERNAME": "root", "TWINE_PASSWORD": sandbox.root_token},
        check=True,
        capture_output=True,
    )
    base = f"{sandbox.url}/api/v4/projects/{project.id}/packages/generic/regpkg/0.1.0.dev3"
    put = requests.put(
        f"{base}/regpkg-0.1.0.dev3.tar.gz.sig",
        data=b"SIG",
        headers={"PRIVATE-TOKEN": sandbox.root_token},
        timeout=10,
    )
    assert put.status_code == 201

    files = api.pypi_files(project.id, "regpkg")
    assert sorted(f.filename for f in files) == [
        "regpkg-0.1.0.dev3-py3-none-any.whl",
        "regpkg-0.1.0.dev3.tar.gz",
    ]
    for f in files:
        assert api.download_url(f.url) == (dist / f.filename).read_bytes()
    assert api.pypi_files(project.id, "nothing-here") == ()
    sig = "regpkg-0.1.0.dev3.tar.gz.sig"
    assert api.download_generic(project.id, "regpkg", "0.1.0.dev3", sig) == b"SIG"
    assert api.download_generic(project.id, "regpkg", "0.1.0.dev3", "nope.sig") is None

    packages = api.list_packages(project.id, package_name="regpkg")
    assert sorted(p.package_type for p in packages) == ["generic", "pypi"]
    for package in packages:
        assert api.delete_package(project.id, package.id)
        assert not api.delete_package(project.id, package.id)
    assert api.list_packages(project.id, package_name="regpkg") == ()
