"""Refresh the group's rows (GraphQL, else REST), re-poll the running ones, and watch.

A full refresh costs one GraphQL request per page of projects; ``queryComplexity`` is read on
every answer and the page shrinks when the score nears GitLab's limit. A GitLab whose GraphQL
lacks a field is detected once (the first refresh) and served by REST from then on.

A refresh that cannot complete keeps the last good rows and marks them stale.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from provisioner.errors import GitLabError
from provisioner.gitlab.monitoring import MAX_PAGE
from provisioner.monitor.model import (
    ACTIVE,
    Change,
    MonitorSpec,
    RefMode,
    Row,
    Snapshot,
    sort_rows,
)

if TYPE_CHECKING:
    from provisioner.gitlab.graphql import QueryComplexity
    from provisioner.gitlab.monitoring import GroupProject, PipelineSummary, ProjectPage

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MIN_PAGE = 5
MAX_DEFAULT_REFS = 4
HOT_CHUNK = 10
# Above this share of the limit, the next page is made smaller.
COMPLEXITY_MARGIN = 0.8


class MonitorAPI(Protocol):
    """What the monitor needs from the GitLab adapter (``GitLabAPI`` satisfies it)."""

    @property
    def request_count(self) -> int: ...

    def latest_pipelines_page(
        self,
        group: str,
        *,
        refs: Sequence[str | None],
        root_ref: bool,
        first: int,
        after: str | None = None,
        subgroups: bool = True,
        archived: bool = False,
        ids: Sequence[int] | None = None,
    ) -> ProjectPage: ...

    def hot_pipelines(
        self, wanted: Sequence[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], PipelineSummary], QueryComplexity | None]: ...

    def group_projects_rest(
        self, group: str, *, subgroups: bool = True, archived: bool = False
    ) -> Iterator[GroupProject]: ...

    def latest_pipeline_rest(self, project_id: int, ref: str | None) -> PipelineSummary | None: ...

    def pipeline_rest(self, project_id: int, pipeline_id: int) -> PipelineSummary | None: ...


def _schema_mismatch(exc: GitLabError) -> bool:
    """True when GitLab's GraphQL cannot serve the query (an old version), not a failure."""
    text = f"{exc.message} {exc.hint or ''}".lower()
    return any(
        marker in text
        for marker in (
            "doesn't exist on type",
            "unknown argument",
            "schema may differ",
            "no graphql",
        )
    )


class GroupMonitor:
    """The rows of one group, refreshed on demand; remembers the last good rows."""

    def __init__(
        self,
        spec: MonitorSpec,
        *,
        gitlab: MonitorAPI,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_size: int = MAX_PAGE,
    ) -> None:
        self.spec = spec
        self._gitlab = gitlab
        self._now = now
        self.page_size = page_size
        self.source: str | None = None  # "graphql" or "rest", decided by the first refresh
        self.default_refs: list[str] = ["main", "master"]
        self._rows: dict[str, Row] = {}
        self._order: tuple[Row, ...] = ()
        self._skipped = 0
        self.last: Snapshot | None = None

    # -- public ----------------------------------------------------------------------------------

    def refresh(self, *, keep_going: bool = False) -> Snapshot:
        """Re-read every project of the group.

        Raises:
            GitLabError: when the refresh fails and there are no earlier rows to keep (unless
                ``keep_going``: then an empty stale snapshot).
        """
        start = self._gitlab.request_count
        try:
            rows = self._read_all()
        except GitLabError as exc:
            if self.last is None and not keep_going:
                raise
            return self._stale(exc, start)
        return self._publish(rows, start, full=True)

    def refresh_hot(self) -> Snapshot:
        """Re-read only the pipelines still running or pending, by their ids."""
        start = self._gitlab.request_count
        hot = [r for r in self._rows.values() if r.pipeline is not None and r.status in ACTIVE]
        if not hot:
            return self._publish(dict(self._rows), start, full=False)
        try:
            updated = self._read_hot(hot)
        except GitLabError as exc:
            return self._stale(exc, start)
        rows = dict(self._rows)
        for row in hot:
            fresh = updated.get(row.project)
            if fresh is not None:
                rows[row.project] = Row(row.project, row.project_id, row.web_url, row.ref, fresh)
        return self._publish(rows, start, full=False)

    @property
    def hot(self) -> bool:
        """True when a listed pipeline is still running or pending."""
        return any(r.status in ACTIVE for r in self._rows.values())

    # -- reading ---------------------------------------------------------------------------------

    def _read_all(self) -> dict[str, Row]:
        if self.source != "rest":
            try:
                rows = self._read_graphql()
            except GitLabError as exc:
                if self.source == "graphql" or not _schema_mismatch(exc):
                    raise
                log.info("GitLab's GraphQL cannot serve the query (%s); using REST", exc.message)
                self.source = "rest"
            else:
                self.source = "graphql"
                return rows
        return self._read_rest()

    def _refs(self) -> list[str | None]:
        if self.spec.ref_mode is RefMode.ANY:
            return [None]
        if self.spec.ref_mode is RefMode.NAMED:
            return [self.spec.ref_name]
        return list(self.default_refs)

    def _page(
        self, refs: Sequence[str | None], after: str | None, ids: Sequence[int] | None = None
    ) -> ProjectPage:
        """One page, shrinking it while GitLab says the query is too complex."""
        while True:
            try:
                page = self._gitlab.latest_pipelines_page(
                    self.spec.group,
                    refs=refs,
                    root_ref=self.spec.ref_mode is RefMode.DEFAULT,
                    first=self.page_size if ids is None else len(ids),
                    after=after,
                    subgroups=self.spec.subgroups,
                    archived=self.spec.include_archived,
                    ids=ids,
                )
            except GitLabError as exc:
                if "complexity" not in exc.message.lower() or self.page_size <= MIN_PAGE:
                    raise
                self.page_size = max(MIN_PAGE, self.page_size // 2)
                log.info("query too complex; %d projects a page from now on", self.page_size)
                continue
            self._adapt(page.complexity)
            return page

    def _adapt(self, complexity: QueryComplexity | None) -> None:
        if complexity is None or complexity.limit <= 0:
            return
        if complexity.score > COMPLEXITY_MARGIN * complexity.limit and self.page_size > MIN_PAGE:
            self.page_size = max(MIN_PAGE, self.page_size // 2)
            log.info(
                "query complexity %d of %d; %d projects a page from now on",
                complexity.score,
                complexity.limit,
                self.page_size,
            )

    def _read_graphql(self) -> dict[str, Row]:
        refs = self._refs()
        rows: dict[str, Row] = {}
        unknown: dict[str, list[GroupProject]] = {}
        after: str | None = None
        skipped = 0
        while True:
            page = self._page(refs, after)
            if not page.group_found:
                raise GitLabError(
                    f"No group {self.spec.group!r} is visible to this token.",
                    hint="Check the group's full path (parent/child, case matters) and that the "
                    "token's user is a member.",
                )
            for project, found in page.projects:
                if not project.ci_enabled:
                    skipped += 1
                    continue
                ref = self._ref_of(project)
                if self.spec.ref_mode is RefMode.DEFAULT and ref is not None and ref not in found:
                    unknown.setdefault(ref, []).append(project)
                    continue
                key = "" if self.spec.ref_mode is RefMode.ANY else ref
                pipeline = found.get(key) if key is not None else None
                rows[project.full_path] = _row(project, ref, pipeline)
            if not page.has_next or not page.end_cursor or page.end_cursor == after:
                break
            after = page.end_cursor
        # Default branches named otherwise than the names asked so far: one more query per
        # name, and the name joins the next refreshes' aliases.
        for ref, projects in unknown.items():
            for chunk in _chunks(projects, MAX_PAGE):
                page = self._page([ref], None, ids=[p.id for p in chunk])
                for project, found in page.projects:
                    rows[project.full_path] = _row(project, ref, found.get(ref))
            if len(self.default_refs) < MAX_DEFAULT_REFS:
                self.default_refs.append(ref)
        self._skipped = skipped
        return rows

    def _ref_of(self, project: GroupProject) -> str | None:
        if self.spec.ref_mode is RefMode.DEFAULT:
            return project.default_branch
        if self.spec.ref_mode is RefMode.NAMED:
            return self.spec.ref_name
        return None

    def _read_rest(self) -> dict[str, Row]:
        rows: dict[str, Row] = {}
        skipped = 0
        for project in self._gitlab.group_projects_rest(
            self.spec.group, subgroups=self.spec.subgroups, archived=self.spec.include_archived
        ):
            if not project.ci_enabled:
                skipped += 1
                continue
            ref = self._ref_of(project)
            if self.spec.ref_mode is RefMode.DEFAULT and ref is None:
                pipeline = None  # an empty repository has no default branch, and no pipeline
            else:
                pipeline = self._gitlab.latest_pipeline_rest(project.id, ref)
            rows[project.full_path] = _row(project, ref, pipeline)
        self._skipped = skipped
        return rows

    def _read_hot(self, hot: list[Row]) -> dict[str, PipelineSummary]:
        found: dict[str, PipelineSummary] = {}
        if self.source == "rest":
            for row in hot:
                assert row.pipeline is not None
                fresh = self._gitlab.pipeline_rest(row.project_id, row.pipeline.id)
                if fresh is not None:
                    found[row.project] = fresh
            return found
        for chunk in _chunks(hot, HOT_CHUNK):
            wanted = [(r.project, r.pipeline.iid) for r in chunk if r.pipeline is not None]
            answer, _ = self._gitlab.hot_pipelines(wanted)
            for (path, _iid), summary in answer.items():
                found[path] = summary
        return found

    # -- results ---------------------------------------------------------------------------------

    def _publish(self, rows: dict[str, Row], start: int, *, full: bool) -> Snapshot:
        changes = _changes(self._rows, rows) if self.last is not None else ()
        self._rows = rows
        listed = [r for r in rows.values() if self._listed(r)]
        snapshot = Snapshot(
            group=self.spec.group,
            refreshed_at=self._now(),
            rows=sort_rows(listed, self.spec.sort),
            source=self.source or "graphql",
            requests=self._gitlab.request_count - start,
            full=full,
            skipped_no_ci=self._skipped,
            changes=tuple(c for c in changes if self._listed(rows[c.project])),
            changed=frozenset(c.project for c in changes),
        )
        self.last = snapshot
        return snapshot

    def _listed(self, row: Row) -> bool:
        if not self.spec.statuses:
            return True
        return row.status is not None and row.status in self.spec.statuses

    def _stale(self, exc: GitLabError, start: int) -> Snapshot:
        log.info("refresh failed, keeping the last rows: %s", exc.message)
        previous = self.last
        return Snapshot(
            group=self.spec.group,
            refreshed_at=previous.refreshed_at if previous is not None else self._now(),
            rows=previous.rows if previous is not None else (),
            source=self.source or "graphql",
            requests=self._gitlab.request_count - start,
            full=False,
            stale=True,
            error=exc.message,
            skipped_no_ci=self._skipped,
        )


def _row(project: GroupProject, ref: str | None, pipeline: PipelineSummary | None) -> Row:
    shown = pipeline.ref if pipeline is not None else ref
    return Row(project.full_path, project.id, project.web_url, shown, pipeline)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _changes(before: Mapping[str, Row], after: Mapping[str, Row]) -> tuple[Change, ...]:
    found = []
    for path, row in after.items():
        old = before.get(path)
        old_id = old.pipeline.id if old is not None and old.pipeline is not None else None
        new_id = row.pipeline.id if row.pipeline is not None else None
        old_status = old.status if old is not None else None
        if old is not None and old_id == new_id and old_status == row.status:
            continue
        if old is None and row.pipeline is None:
            continue
        found.append(
            Change(
                project=path,
                ref=row.ref,
                old=old_status,
                new=row.status,
                pipeline_id=new_id,
                web_url=row.pipeline.web_url if row.pipeline is not None else row.web_url,
            )
        )
    return tuple(sorted(found, key=lambda c: c.project))


def watch(
    monitor: GroupMonitor,
    *,
    interval: float = 30.0,
    fast_interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> Iterator[Snapshot]:
    """Snapshots forever: a full refresh every ``interval`` (±10 % jitter), and in between
    a narrow re-poll of running or pending pipelines every ``fast_interval``."""
    while True:
        yield monitor.refresh(keep_going=True)
        next_full = clock() + interval * (0.9 + 0.2 * jitter())
        while True:
            left = next_full - clock()
            if left <= 0:
                break
            if not monitor.hot:
                sleep(left)
                break
            sleep(min(fast_interval, left))
            if next_full - clock() <= 0:
                break
            yield monitor.refresh_hot()
