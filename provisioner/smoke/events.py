"""What a smoke run reports while it runs (the CLI words and draws it)."""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.events import Event
from provisioner.gitlab.models import Job


@dataclass(frozen=True)
class ProjectReady(Event):
    """The smoke project exists (``created`` when this run created it)."""

    path: str
    created: bool


@dataclass(frozen=True)
class KeyPairReady(Event):
    """The cosign key pair is in the project's CI/CD variables (``generated`` by this run)."""

    generated: bool


@dataclass(frozen=True)
class TemplateSynced(Event):
    """The template is on the branch: pushed as ``commit`` with ``files``, or already there."""

    pushed: bool
    files: int = 0
    commit: str = ""


@dataclass(frozen=True)
class PipelineCreated(Event):
    """The pipeline was triggered."""

    pipeline_id: int
    web_url: str


@dataclass(frozen=True)
class JobsChanged(Event):
    """A job appeared or changed status: every job of the pipeline, as GitLab lists them."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class CheckFinished(Event):
    """One of runnerctl's own checks of what the pipeline published."""

    name: str
    passed: bool


@dataclass(frozen=True)
class OldVersionsDeleted(Event):
    """Retention removed ``count`` old smoke versions, keeping the last ``keep``."""

    count: int
    keep: int


SmokeEvent = (
    ProjectReady
    | KeyPairReady
    | TemplateSynced
    | PipelineCreated
    | JobsChanged
    | CheckFinished
    | OldVersionsDeleted
)
