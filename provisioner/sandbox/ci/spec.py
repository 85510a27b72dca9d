"""The frozen results: a :class:`PipelineSpec` of :class:`JobSpec` entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArtifactsSpec:
    """A job's ``artifacts:`` section, normalised."""

    paths: tuple[str, ...]
    reports: Mapping[str, tuple[str, ...]]
    expire_in: str | None
    when: str
    name: str | None
    exclude: tuple[str, ...]
    untracked: bool = False
    coverage_format: str | None = None


@dataclass(frozen=True)
class JobSpec:
    """One job of the pipeline, after extends, default inheritance and rules."""

    name: str
    stage: str
    image: str | None
    services: tuple[str, ...]
    before_script: tuple[str, ...]
    script: tuple[str, ...]
    after_script: tuple[str, ...]
    variables: Mapping[str, str]
    artifacts: ArtifactsSpec | None
    dependencies: tuple[str, ...] | None
    needs: tuple[str, ...] | None
    tags: tuple[str, ...]
    allow_failure: bool
    when: str
    timeout_seconds: int | None
    id_tokens: Mapping[str, Mapping[str, Any]]
    cache: tuple[Mapping[str, Any], ...]
    retry: int
    allow_failure_exit_codes: tuple[int, ...] = ()
    interruptible: bool = False
    start_in: str | None = None
    coverage: str | None = None
    image_entrypoint: tuple[str, ...] | None = None
    trigger: Mapping[str, Any] | None = None
    environment: str | None = None
    resource_group: str | None = None  # jobs of one group in a project never run at once


@dataclass(frozen=True)
class PipelineSpec:
    """The stages (``.pre``/``.post`` included), global variables and the jobs to create."""

    stages: tuple[str, ...]
    variables: Mapping[str, str]
    jobs: tuple[JobSpec, ...]

    def job(self, name: str) -> JobSpec:
        """Return the job called ``name`` (KeyError if the pipeline has none)."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)
