"""The error every ``.gitlab-ci.yml`` refusal raises, carrying GitLab's wording."""

from __future__ import annotations

from provisioner.errors import SandboxError


class CiConfigError(SandboxError):
    """The `.gitlab-ci.yml` cannot become a pipeline; the message is GitLab's wording."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="Fix .gitlab-ci.yml; GitLab would refuse it the same way.")
