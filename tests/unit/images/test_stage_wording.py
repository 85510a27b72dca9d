"""The image domain reports stages as values; ``cli/image.py`` words each of them."""

from __future__ import annotations

import pytest

from provisioner.cli.image import stage_sentence
from provisioner.images.events import ImageStage, Stage

IMAGE_ID = "sha256:0123456789abcdef0123456789abcdef"
SHA = "a" * 64


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            ImageStage(Stage.BASE_EXISTS, "runnerctl/base:bookworm", IMAGE_ID),
            "runnerctl/base:bookworm exists (0123456789ab): skipped",
        ),
        (
            ImageStage(Stage.ROOTFS_CACHED, "/c/base/bookworm-1.tar"),
            "reusing cached root filesystem /c/base/bookworm-1.tar",
        ),
        (ImageStage(Stage.IMPORTING, "bookworm-1.tar"), "docker import bookworm-1.tar"),
        (
            ImageStage(Stage.IMPORTED, "runnerctl/base:bookworm", IMAGE_ID),
            "runnerctl/base:bookworm is 0123456789ab",
        ),
        (
            ImageStage(Stage.BOOTSTRAPPING, "bookworm", "http://deb.debian.org/debian"),
            "debootstrap bookworm from http://deb.debian.org/debian",
        ),
        (ImageStage(Stage.STRIPPING), "stripping apt lists, caches, docs and locales"),
        (ImageStage(Stage.PACKING, "bookworm-1.tar"), "packing bookworm-1.tar"),
        (
            ImageStage(Stage.BASE_FALLBACK, "python:3.11-slim", "bookworm"),
            "python:3.11-slim could not be pulled (no registry reachable): using the local "
            "Debian bookworm base runnerctl/base:bookworm instead",
        ),
        (ImageStage(Stage.COSIGN_SOURCE, "debian:2.5.0"), "cosign from debian:2.5.0"),
        (
            ImageStage(Stage.COSIGN_READY, "2.5.0", SHA),
            "cosign 2.5.0 sha256 aaaaaaaaaaaaaaaa…",
        ),
        (
            ImageStage(Stage.WHEELHOUSE, "3.11", "manylinux_2_36_x86_64"),
            "wheelhouse for Python 3.11 on manylinux_2_36_x86_64",
        ),
        (ImageStage(Stage.WHEELS_READY, count=12, cached=True), "12 wheels (cached)"),
        (ImageStage(Stage.WHEELS_READY, count=3), "3 wheels (downloaded)"),
        (
            ImageStage(Stage.BUILDING, "runnerctl/python:3.11", "runnerctl/base:bookworm"),
            "building runnerctl/python:3.11 from runnerctl/base:bookworm",
        ),
        (ImageStage(Stage.PUSHING, "127.0.0.1:5000/a:b"), "pushing 127.0.0.1:5000/a:b"),
        (ImageStage(Stage.SIGNING, "r/a@sha256:1"), "signing r/a@sha256:1"),
        (
            ImageStage(Stage.VERIFYING, "r/a@sha256:1"),
            "verifying the signature of r/a@sha256:1",
        ),
    ],
)
def test_each_stage_reads_as_before(event: ImageStage, line: str) -> None:
    assert stage_sentence(event) == line


def test_every_stage_has_wording() -> None:
    for stage in Stage:
        assert stage_sentence(ImageStage(stage, "s", IMAGE_ID)) != ""
