"""What the monitor returns: rows, snapshots of a refresh, and status changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from provisioner.gitlab.models import PipelineStatus
from provisioner.gitlab.monitoring import PipelineSummary

FAILED_EXIT = 11
"""Exit code of ``runnerctl pipelines --once`` when a listed pipeline failed."""

ACTIVE = frozenset(
    {
        PipelineStatus.CREATED,
        PipelineStatus.WAITING_FOR_RESOURCE,
        PipelineStatus.PREPARING,
        PipelineStatus.PENDING,
        PipelineStatus.RUNNING,
    }
)

# Failed first, then what moves, then what waits for a person, then the green and the empty.
_STATUS_ORDER = {
    status: rank
    for rank, status in enumerate(
        (
            PipelineStatus.FAILED,
            PipelineStatus.RUNNING,
            PipelineStatus.PENDING,
            PipelineStatus.PREPARING,
            PipelineStatus.WAITING_FOR_RESOURCE,
            PipelineStatus.WAITING_FOR_CALLBACK,
            PipelineStatus.CREATED,
            PipelineStatus.CANCELING,
            PipelineStatus.CANCELED,
            PipelineStatus.MANUAL,
            PipelineStatus.SCHEDULED,
            PipelineStatus.SKIPPED,
            PipelineStatus.SUCCESS,
            PipelineStatus.UNKNOWN,
        )
    )
}


class RefMode(StrEnum):
    """Which pipeline of a project is "the latest"."""

    DEFAULT = "default"
    ANY = "any"
    NAMED = "named"


class SortKey(StrEnum):
    """Row order of the table."""

    STATUS = "status"
    AGE = "age"
    PATH = "path"


@dataclass(frozen=True)
class MonitorSpec:
    """What to watch: the group, which pipeline, which rows."""

    group: str
    ref_mode: RefMode = RefMode.DEFAULT
    ref_name: str | None = None
    statuses: frozenset[PipelineStatus] = frozenset()
    include_archived: bool = False
    subgroups: bool = True
    sort: SortKey = SortKey.STATUS


@dataclass(frozen=True)
class Row:
    """One project and its latest pipeline (``None``: no pipeline)."""

    project: str
    project_id: int
    web_url: str
    ref: str | None
    pipeline: PipelineSummary | None

    @property
    def status(self) -> PipelineStatus | None:
        """The pipeline's status, ``None`` when the project has no pipeline."""
        return self.pipeline.status if self.pipeline is not None else None


@dataclass(frozen=True)
class Change:
    """A project whose latest pipeline changed status (or is a new pipeline)."""

    project: str
    ref: str | None
    old: PipelineStatus | None
    new: PipelineStatus | None
    pipeline_id: int | None
    web_url: str


@dataclass(frozen=True)
class Snapshot:
    """The view after one refresh.

    ``stale`` is true when the refresh failed and these are the last good rows; ``error`` then
    says why. ``changed`` names the projects whose status changed in this refresh.
    """

    group: str
    refreshed_at: datetime
    rows: tuple[Row, ...]
    source: str
    requests: int
    full: bool = True
    stale: bool = False
    error: str | None = None
    skipped_no_ci: int = 0
    changes: tuple[Change, ...] = ()
    changed: frozenset[str] = field(default_factory=frozenset)

    def counts(self) -> dict[str, int]:
        """How many rows per status (``none`` for projects without a pipeline)."""
        found: dict[str, int] = {}
        for row in self.rows:
            key = row.status.value if row.status is not None else "none"
            found[key] = found.get(key, 0) + 1
        return found

    @property
    def any_failed(self) -> bool:
        """True when a listed pipeline failed."""
        return any(row.status is PipelineStatus.FAILED for row in self.rows)


def sort_rows(rows: list[Row], key: SortKey) -> tuple[Row, ...]:
    """Rows in the order of ``key`` (paths break ties)."""
    if key is SortKey.PATH:
        return tuple(sorted(rows, key=lambda r: r.project))
    if key is SortKey.AGE:

        def age(row: Row) -> tuple[float, str]:
            moment = row.pipeline.created_at if row.pipeline is not None else None
            return (-moment.timestamp() if moment is not None else float("inf"), row.project)

        return tuple(sorted(rows, key=age))
    last = len(_STATUS_ORDER) + 1
    return tuple(
        sorted(
            rows,
            key=lambda r: (
                _STATUS_ORDER.get(r.status, last) if r.status is not None else last,
                r.project,
            ),
        )
    )
