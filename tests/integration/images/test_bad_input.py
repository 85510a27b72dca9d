"""Bad input exits 6 with a hint and leaves no tag, no context and no cached partial file behind."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.docker_api import DockerAPI
from provisioner.images import BaseResult
from provisioner.images import cosign as cosign_mod
from provisioner.settings import cache_dir
from tests.conftest import run_runnerctl
from tests.integration.images.conftest import TEST_REPO

pytestmark = [pytest.mark.docker]


def runnerctl(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RUNNERCTL_CACHE=str(cache))
    return run_runnerctl(*args, env=env, timeout=600)


def _cached_deb(tmp_path: Path) -> Path:
    """The real Debian cosign .deb, resolved (and so fetched) through the default source."""
    source = cosign_mod.parse_source(cosign_mod.DEFAULT_SOURCE)
    cosign_mod.resolve(source)
    deb = cache_dir() / "downloads" / "cosign_2.5.0-2+b4_amd64.deb"
    copy = tmp_path / deb.name
    shutil.copyfile(deb, copy)
    return copy


def _nothing_left(cache: Path) -> list[str]:
    if not cache.exists():
        return []
    return sorted(
        str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() or p.name == "contexts"
    )


@pytest.mark.parametrize("kind", ["file", "url"])
def test_tampered_cosign_digest_aborts_before_building(
    kind: str, tmp_path: Path, docker_api: DockerAPI, bases: dict[str, BaseResult]
) -> None:
    deb = _cached_deb(tmp_path)
    real = cosign_mod.sha256_file(deb)
    tampered = real[:-4] + ("0000" if not real.endswith("0000") else "1111")
    location = (
        str(deb) if kind == "file" else cosign_mod.parse_source(cosign_mod.DEFAULT_SOURCE).location
    )
    tag = f"{TEST_REPO}:tampered-{kind}"
    cache = tmp_path / "cache"
    proc = runnerctl(
        ["image", "build", "--base", bases["bookworm"].tag, "--tag", tag,
         "--cosign-source", f"{kind}:{location}#sha256={tampered}"],
        cache,
    )  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert f"expected sha256 {tampered}, got {real}" in proc.stderr
    assert "Hint: " in proc.stderr
    assert "Step " not in proc.stderr  # no build started
    assert docker_api.inspect_image(tag) is None
    assert _nothing_left(cache) == []


def test_unknown_base_is_refused(tmp_path: Path, docker_api: DockerAPI) -> None:
    tag = f"{TEST_REPO}:nobase"
    proc = runnerctl(
        ["image", "build", "--base", "runnerctl-test/no-such-base:1", "--tag", tag], tmp_path
    )
    assert proc.returncode == 6
    assert "Base image runnerctl-test/no-such-base:1 is not available" in proc.stderr
    assert "Hint: build a local base: runnerctl image base --suite bookworm" in proc.stderr
    assert docker_api.inspect_image(tag) is None


def test_wrong_python_for_the_base_is_refused(
    tmp_path: Path, docker_api: DockerAPI, bases: dict[str, BaseResult]
) -> None:
    tag = f"{TEST_REPO}:mismatch"
    proc = runnerctl(
        ["image", "build", "--python", "3.13", "--base", bases["bookworm"].tag, "--tag", tag],
        tmp_path / "cache",
    )
    assert proc.returncode == 6
    assert "has Python 3.11." in proc.stderr
    assert "not 3.13" in proc.stderr
    assert "--suite trixie" in proc.stderr
    assert docker_api.inspect_image(tag) is None


def test_unresolvable_requirement_is_refused(
    tmp_path: Path, docker_api: DockerAPI, bases: dict[str, BaseResult]
) -> None:
    tag = f"{TEST_REPO}:unresolvable"
    cache = tmp_path / "cache"
    # Seed the cosign download so only the wheelhouse step can fail.
    (cache / "downloads").mkdir(parents=True)
    shutil.copyfile(_cached_deb(tmp_path), cache / "downloads" / "cosign_2.5.0-2+b4_amd64.deb")
    proc = runnerctl(
        ["image", "build", "--base", bases["bookworm"].tag, "--tag", tag,
         "--wheel", "runnerctl-no-such-package-zz==0.0.1"],
        cache,
    )  # fmt: skip
    assert proc.returncode == 6
    assert "pip could not fetch the wheelhouse for Python 3.11" in proc.stderr
    assert "runnerctl-no-such-package-zz" in proc.stderr
    assert "Hint: check the requirement names" in proc.stderr
    assert docker_api.inspect_image(tag) is None
    assert [p.name for p in (cache / "wheelhouse").iterdir()] == []
    assert not (cache / "contexts").exists() or list((cache / "contexts").iterdir()) == []


@pytest.mark.parametrize("option", ["--ca-bundle", "--requirement"])
def test_unreadable_inputs_are_refused_before_docker_work(
    option: str, tmp_path: Path, docker_api: DockerAPI
) -> None:
    tag = f"{TEST_REPO}:unreadable"
    proc = runnerctl(["image", "build", option, str(tmp_path / "missing"), "--tag", tag], tmp_path)
    assert proc.returncode == 6
    assert "Cannot read" in proc.stderr
    assert "Hint: " in proc.stderr
    assert docker_api.inspect_image(tag) is None
