"""The smoke template ships inside runnerctl's wheel, dot files included."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from provisioner.smoke.template import template_files

REPO = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.slow]


def test_wheel_carries_every_template_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("runnerctl-*.whl")
    prefix = "provisioner/smoke/template/"
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            n[len(prefix) :]: archive.read(n) for n in archive.namelist() if n.startswith(prefix)
        }
    files = template_files()
    assert set(shipped) == set(files)
    assert ".gitlab-ci.yml" in shipped
    assert shipped[".gitlab-ci.yml"].decode() == files[".gitlab-ci.yml"]
