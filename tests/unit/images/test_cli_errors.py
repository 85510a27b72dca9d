"""The image commands' error paths that need no daemon: exit 6 with a hint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, cast

import pytest

from provisioner.errors import ImageError
from provisioner.images import BuildSpec, build_image
from tests.conftest import Cli


@pytest.mark.parametrize(
    "argv",
    [
        ["image", "verify", "runnerctl/python:3.11"],
        ["image", "build", "--python", "3.11"],
        ["image", "base", "--suite", "bookworm"],
        ["image", "push", "runnerctl/python:3.11", "127.0.0.1:5000"],
    ],
)
def test_no_daemon_exits_6_with_a_hint(
    argv: list[str],
    tmp_path: Path,
    cli: Cli,
) -> None:
    code, out, err = cli(*argv, env={"DOCKER_HOST": f"unix://{tmp_path}/no-dockerd.sock"})
    assert code == 6
    assert out == ""
    assert "Error: Cannot reach the Docker daemon" in err
    assert err.endswith("Hint: start dockerd or run make setup\n")


def test_bad_user_is_a_usage_error(cli: Cli) -> None:
    code, _, err = cli("image", "build", "--user", "admin")
    assert code == 2
    assert "Unknown --user 'admin'" in err
    assert "Hint: use root or ci" in err


def test_unwritable_cache_is_an_image_error_and_writes_nothing(tmp_path: Path) -> None:
    deb = tmp_path / "cosign"
    deb.write_bytes(b"\x7fELF fake")
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache should be")
    spec = BuildSpec(cosign_source=f"file:{deb}#sha256={digest}")
    with pytest.raises(ImageError) as raised:
        # The cache write fails before any docker call: no daemon object is needed.
        build_image(spec, docker=cast(Any, object()), cache=blocker / "cache")
    assert raised.value.exit_code == 6
    assert raised.value.message.startswith(f"Cannot write {blocker}")
    assert "RUNNERCTL_CACHE" in (raised.value.hint or "")
    assert blocker.read_text() == "a file where the cache should be"
