"""Python-ready job images: ``image base | build | verify | push``.

The entry points, each taking its :class:`~provisioner.docker_api.DockerAPI` as a keyword:

- :func:`build_base` makes ``runnerctl/base:<suite>`` from a Debian mirror (debootstrap);
- :func:`build_image` / :func:`build_matrix` build ``runnerctl/python:<v>``;
- :func:`verify_image` runs the self-tests;
- :func:`push_image` pushes, signs and verifies;
- :func:`ensure_job_image` returns the default job image, building it only when missing.
"""

from __future__ import annotations

from provisioner.images.base import BaseResult, build_base
from provisioner.images.build import (
    BuildResult,
    BuildSpec,
    ImageRef,
    ImageUser,
    build_image,
    build_matrix,
    ensure_job_image,
)
from provisioner.images.push import PushReport, push_image
from provisioner.images.verify import CheckResult, CheckStatus, VerifyReport, verify_image

__all__ = [
    "BaseResult",
    "BuildResult",
    "BuildSpec",
    "CheckResult",
    "CheckStatus",
    "ImageRef",
    "ImageUser",
    "PushReport",
    "VerifyReport",
    "build_base",
    "build_image",
    "build_matrix",
    "ensure_job_image",
    "push_image",
    "verify_image",
]
