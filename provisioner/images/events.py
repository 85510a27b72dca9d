"""The progress of making, building and pushing an image, as typed events.

The build stream of :mod:`provisioner.docker_api` (:class:`BuildEvent`: Dockerfile steps, tool
output, the daemon's own status lines) and :class:`ImageStage` (what runnerctl itself is doing)
go to one reporter. Events carry values only: ``cli/image.py`` words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from provisioner.docker_api import BuildEvent
from provisioner.events import Event, Reporter


class Stage(StrEnum):
    """A stage of ``image base``, ``image build`` or ``image push``."""

    BASE_EXISTS = "base_exists"  # subject: tag, detail: image id
    ROOTFS_CACHED = "rootfs_cached"  # subject: tarball path
    IMPORTING = "importing"  # subject: tarball file name
    IMPORTED = "imported"  # subject: tag, detail: image id
    BOOTSTRAPPING = "bootstrapping"  # subject: suite, detail: mirror
    STRIPPING = "stripping"
    PACKING = "packing"  # subject: tarball file name
    BASE_FALLBACK = "base_fallback"  # subject: the official image, detail: the Debian suite
    COSIGN_SOURCE = "cosign_source"  # subject: the cosign source
    COSIGN_READY = "cosign_ready"  # subject: version, detail: sha256
    WHEELHOUSE = "wheelhouse"  # subject: Python version, detail: platform tag
    WHEELS_READY = "wheels_ready"  # count: wheels, cached: from the cache
    BUILDING = "building"  # subject: tag, detail: base
    PUSHING = "pushing"  # subject: reference
    SIGNING = "signing"  # subject: pinned reference
    VERIFYING = "verifying"  # subject: pinned reference


@dataclass(frozen=True)
class ImageStage(Event):
    """runnerctl reached a stage; ``subject`` and ``detail`` are the values it concerns."""

    stage: Stage
    subject: str = ""
    detail: str = ""
    count: int = 0
    cached: bool = False


#: The reporter every image entry point takes.
Progress = Reporter[BuildEvent | ImageStage]
