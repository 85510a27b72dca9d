"""The monitor's refresh logic: pages, complexity, fallback, stale rows, changes, the watch."""

from __future__ import annotations

import pytest

from provisioner.errors import GitLabError
from provisioner.gitlab.models import PipelineStatus
from provisioner.monitor import GroupMonitor, MonitorSpec, RefMode, SortKey, watch
from tests.unit.monitor.fakes import FakeMonitorAPI, summary


def _fake(n: int = 7) -> FakeMonitorAPI:
    statuses = ["success", "failed", "running", "pending", "canceled", "manual", "skipped"]
    return FakeMonitorAPI(
        {f"g/p{i}": summary(i + 1, statuses[i % len(statuses)]) for i in range(n)}
        | {"g/empty": None}
    )


def test_a_refresh_reads_every_page_and_lists_failed_first() -> None:
    fake = _fake()
    snapshot = GroupMonitor(MonitorSpec(group="g"), gitlab=fake, page_size=3).refresh()
    assert [c for c in fake.calls if c[0] == "graphql"] == [("graphql", 3)] * 3
    assert snapshot.requests == 3
    assert [r.status.value if r.status else None for r in snapshot.rows] == [
        "failed",
        "running",
        "pending",
        "canceled",
        "manual",
        "skipped",
        "success",
        None,
    ]
    assert snapshot.counts() == {
        "failed": 1,
        "running": 1,
        "pending": 1,
        "canceled": 1,
        "manual": 1,
        "skipped": 1,
        "success": 1,
        "none": 1,
    }
    assert snapshot.any_failed


def test_status_filter_and_path_sort() -> None:
    spec = MonitorSpec(
        group="g",
        statuses=frozenset({PipelineStatus.SUCCESS, PipelineStatus.RUNNING}),
        sort=SortKey.PATH,
    )
    snapshot = GroupMonitor(spec, gitlab=_fake()).refresh()
    assert [r.project for r in snapshot.rows] == ["g/p0", "g/p2"]
    assert not snapshot.any_failed


def test_the_page_shrinks_when_complexity_nears_the_limit() -> None:
    fake = _fake(15)
    fake.score = 240  # above 80 % of 250
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake, page_size=8)
    snapshot = monitor.refresh()
    assert [first for _, first in fake.calls] == [8, 5, 5]  # halved, never below 5
    assert len(snapshot.rows) == 16


def test_a_query_refused_as_too_complex_is_sent_again_smaller() -> None:
    fake = _fake(3)
    fake.failures = [GitLabError("GitLab refused GraphQL query X: Query has complexity of 300")]
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake, page_size=40)
    snapshot = monitor.refresh()
    assert [first for _, first in fake.calls] == [40, 20]
    assert len(snapshot.rows) == 4
    assert monitor.page_size == 20


def test_a_schema_mismatch_switches_to_rest_once() -> None:
    fake = _fake(2)
    fake.failures = [
        GitLabError(
            "GitLab refused GraphQL query GroupLatestPipelines: Field 'repository' doesn't "
            "exist on type 'Project'",
            hint="GitLab's schema may differ from what runnerctl expects; check its version.",
        )
    ]
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake)
    first = monitor.refresh()
    monitor.refresh()
    assert first.source == "rest"
    assert [c[0] for c in fake.calls].count("graphql") == 1
    assert {r.project for r in first.rows} == {"g/p0", "g/p1", "g/empty"}


def test_a_failed_refresh_keeps_the_last_rows_and_marks_them_stale() -> None:
    fake = _fake(3)
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake)
    good = monitor.refresh()
    fake.failures = [GitLabError("GitLab answered 503 while running GraphQL query")]
    stale = monitor.refresh()
    assert stale.stale
    assert stale.error == "GitLab answered 503 while running GraphQL query"
    assert stale.rows == good.rows
    assert stale.refreshed_at == good.refreshed_at


def test_the_first_refresh_failing_is_an_error_unless_watching() -> None:
    fake = _fake(1)
    fake.failures = [GitLabError("boom"), GitLabError("boom")]
    with pytest.raises(GitLabError, match="boom"):
        GroupMonitor(MonitorSpec(group="g"), gitlab=fake).refresh()
    empty = GroupMonitor(MonitorSpec(group="g"), gitlab=fake).refresh(keep_going=True)
    assert empty.stale
    assert empty.rows == ()


def test_hot_pipelines_are_re_read_by_id_and_changes_reported() -> None:
    fake = _fake(3)  # p2 is running
    monitor = GroupMonitor(MonitorSpec(group="g", ref_mode=RefMode.ANY), gitlab=fake)
    monitor.refresh()
    assert monitor.hot
    fake.pipelines["g/p2"] = summary(3, "failed")
    snapshot = monitor.refresh_hot()
    assert fake.calls[-1] == ("hot", 1)
    assert not snapshot.full
    (change,) = snapshot.changes
    assert (change.project, change.old, change.new) == (
        "g/p2",
        PipelineStatus.RUNNING,
        PipelineStatus.FAILED,
    )
    assert snapshot.changed == {"g/p2"}
    assert monitor.refresh_hot().changes == ()  # highlighted for one refresh only
    assert not monitor.hot


def test_default_branches_not_asked_yet_cost_one_query_then_join_the_aliases() -> None:
    fake = _fake(3)
    fake.pipelines["g/p1"] = summary(2, "failed", ref="develop")
    fake.default_branch["g/p1"] = "develop"
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake)
    first = monitor.refresh()
    assert first.requests == 2
    assert {r.project: r.ref for r in first.rows}["g/p1"] == "develop"
    assert monitor.default_refs == ["main", "master", "develop"]
    assert monitor.refresh().requests == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_watch_polls_running_pipelines_fast_and_everything_at_the_interval() -> None:
    fake = _fake(3)
    clock = Clock()
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake)
    snapshots = watch(
        monitor,
        interval=30,
        fast_interval=5,
        sleep=clock.sleep,
        clock=lambda: clock.now,
        jitter=lambda: 0.5,
    )
    kinds = [next(snapshots).full for _ in range(8)]
    # A full refresh, five fast polls (5…25 s), the next full at 30 s, then fast again.
    assert kinds == [True, False, False, False, False, False, True, False]
    assert clock.sleeps[:6] == [5, 5, 5, 5, 5, 5]


def test_watch_sleeps_the_whole_interval_when_nothing_runs() -> None:
    fake = _fake(2)  # success and failed only
    clock = Clock()
    monitor = GroupMonitor(MonitorSpec(group="g"), gitlab=fake)
    snapshots = watch(
        monitor, interval=30, sleep=clock.sleep, clock=lambda: clock.now, jitter=lambda: 1.0
    )
    assert [next(snapshots).full for _ in range(3)] == [True, True, True]
    assert clock.sleeps == pytest.approx([33.0, 33.0])  # 30 s + 10 % jitter


@pytest.mark.parametrize("rest", [False, True])
def test_projects_without_ci_are_counted_and_skipped(rest: bool) -> None:
    fake = _fake(3)
    fake.no_ci = {"g/p1"}
    if rest:
        fake.failures = [GitLabError("x", hint="GitLab's schema may differ from what it expects")]
    snapshot = GroupMonitor(MonitorSpec(group="g"), gitlab=fake).refresh()
    assert snapshot.source == ("rest" if rest else "graphql")
    assert "g/p1" not in {r.project for r in snapshot.rows}
    assert snapshot.skipped_no_ci == 1
