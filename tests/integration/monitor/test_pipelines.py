"""``runnerctl pipelines`` against the sandbox: rows vs REST ground truth, request cost,
fault injection, the REST fallback, --on-change, and watch mode in a pseudo-terminal."""

from __future__ import annotations

import json
import math
import os
import pty
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.connection import resolve_connection
from provisioner.gitlab.models import PipelineStatus
from provisioner.monitor import GroupMonitor, MonitorSpec, RefMode
from tests.conftest import RUNNERCTL, Cli
from tests.helpers import seed_pipeline, wait_until
from tests.integration.conftest import RunningSandbox

pytestmark = pytest.mark.sandbox

CI = {".gitlab-ci.yml": "job:\n  script: [echo]\n"}
STATUSES = [s.value for s in PipelineStatus if s is not PipelineStatus.UNKNOWN]


@dataclass
class Landscape:
    """A group with nested subgroups, every status, empty and archived projects."""

    group: str
    projects: list[Any]
    archived: str
    empty: list[str]
    develop: str


@pytest.fixture(scope="module")
def landscape(sandbox: RunningSandbox) -> Landscape:
    gl = sandbox.gitlab()
    name = sandbox.unique("mon")
    top = gl.groups.create({"name": name, "path": name})
    sub = gl.groups.create({"name": "sub", "path": "sub", "parent_id": top.id})
    deep = gl.groups.create({"name": "deep", "path": "deep", "parent_id": sub.id})
    homes = [top, sub, deep]
    projects = []
    for i, status in enumerate(STATUSES):
        project = sandbox.new_project(group=homes[i % 3], files=CI, name=f"p{i}")
        seed_pipeline(sandbox, project.id, "main", status, age=30 + i)
        # A newer pipeline on another ref: --ref any sees it, the default view does not.
        seed_pipeline(sandbox, project.id, "feature", STATUSES[-1 - i], age=i)
        projects.append(project)
    empty = [sandbox.new_project(group=g, name="empty") for g in (top, deep)]
    archived = sandbox.new_project(group=sub, files=CI, name="old")
    seed_pipeline(sandbox, archived.id, "main", "failed", age=90)
    gl.http_post(f"/projects/{archived.id}/archive")
    develop = sandbox.new_project(group=deep, files=CI, name="dev")
    develop.branches.create({"branch": "develop", "ref": "main"})
    develop.default_branch = "develop"
    develop.save()
    seed_pipeline(sandbox, develop.id, "develop", "running", age=3)
    seed_pipeline(sandbox, develop.id, "main", "failed", age=2)
    return Landscape(
        group=top.full_path,
        projects=projects,
        archived=archived.path_with_namespace,
        empty=[p.path_with_namespace for p in empty],
        develop=develop.path_with_namespace,
    )


def _api(sandbox: RunningSandbox) -> GitLabAPI:
    settings = resolve_connection(
        url=sandbox.url, token_file=None, env={"GITLAB_TOKEN": sandbox.root_token}
    )
    return GitLabAPI.from_settings(settings)


def _ground_truth(sandbox: RunningSandbox, group: str, *, ref: str) -> dict[str, Any]:
    """Project path -> newest pipeline, read one project at a time through REST."""
    gl = sandbox.gitlab()
    truth: dict[str, Any] = {}
    for item in gl.groups.get(group).projects.list(
        include_subgroups=True, archived=False, get_all=True
    ):
        project = gl.projects.get(item.id)
        wanted = project.default_branch if ref == "default" else None
        found = (
            project.pipelines.list(
                ref=wanted, per_page=1, order_by="id", sort="desc", get_all=False
            )
            if (wanted or ref == "any")
            else []
        )
        truth[project.path_with_namespace] = (
            {"id": found[0].id, "status": found[0].status, "ref": found[0].ref} if found else None
        )
    return truth


def _rows(document: dict[str, Any]) -> dict[str, Any]:
    return {
        p["project"]: (
            {k: p["pipeline"][k] for k in ("id", "status", "ref")} if p["pipeline"] else None
        )
        for p in document["projects"]
    }


def _env(sandbox: RunningSandbox) -> dict[str, str | None]:
    return {"GITLAB_URL": sandbox.url, "GITLAB_TOKEN": sandbox.root_token}


@pytest.mark.parametrize("ref", ["default", "any"])
def test_rows_equal_the_rest_ground_truth(
    cli: Cli, sandbox: RunningSandbox, landscape: Landscape, ref: str
) -> None:
    code, out, err = cli(
        "pipelines",
        "--group",
        landscape.group,
        "--ref",
        ref,
        "--once",
        "-o",
        "json",
        "--max-rps",
        "0",
        env=_env(sandbox),
    )
    assert code == 11, err  # failed pipelines are listed
    document = json.loads(out)
    rows = _rows(document)
    assert rows == _ground_truth(sandbox, landscape.group, ref=ref)
    assert landscape.archived not in rows
    assert all(rows[p] is None for p in landscape.empty)
    assert {r["status"] for r in rows.values() if r} == (
        set(STATUSES) if ref == "any" else set(STATUSES) | {"running"}
    )
    if ref == "default":
        assert rows[landscape.develop] == {
            "id": rows[landscape.develop]["id"],
            "status": "running",
            "ref": "develop",
        }
    # Failed first.
    assert document["projects"][0]["pipeline"]["status"] == "failed"


def test_archived_projects_on_request_and_no_subgroups(
    cli: Cli, sandbox: RunningSandbox, landscape: Landscape
) -> None:
    _, out, _ = cli(
        "pipelines",
        "-g",
        landscape.group,
        "--include-archived",
        "-o",
        "json",
        "--max-rps",
        "0",
        env=_env(sandbox),
    )
    assert _rows(json.loads(out))[landscape.archived]["status"] == "failed"
    _, out, _ = cli(
        "pipelines",
        "-g",
        landscape.group,
        "--no-subgroups",
        "--status",
        "failed,success",
        "-o",
        "json",
        "--max-rps",
        "0",
        env=_env(sandbox),
    )
    rows = _rows(json.loads(out))
    assert rows
    assert all(path.count("/") == landscape.group.count("/") + 1 for path in rows)
    assert {r["status"] for r in rows.values()} <= {"failed", "success"}


def test_a_refresh_costs_a_request_per_page(sandbox: RunningSandbox, landscape: Landscape) -> None:
    api = _api(sandbox)
    counter = sandbox.handle.app.requests
    monitor = GroupMonitor(MonitorSpec(group=landscape.group), gitlab=api, page_size=4)
    total = len(landscape.projects) + len(landscape.empty) + 1
    before = counter.total("POST /api/graphql")
    first = monitor.refresh()
    cost = counter.total("POST /api/graphql") - before
    assert len(first.rows) == total
    # One request a page, plus one for the default branch no alias named yet ("develop").
    assert cost == first.requests <= math.ceil(total / 4) + 1
    before = counter.total("")
    second = monitor.refresh()
    assert counter.total("") - before == second.requests == math.ceil(total / 4)
    assert [r.project for r in second.rows] == [r.project for r in first.rows]


def test_faults_and_429s_converge_to_the_same_rows(
    cli: Cli, sandbox: RunningSandbox, landscape: Landscape
) -> None:
    _, clean, _ = cli(
        "pipelines", "-g", landscape.group, "-o", "json", "--max-rps", "0", env=_env(sandbox)
    )
    faults = sandbox.handle.app.faults
    faults.configure(fault_rate=0.3)
    injected = faults.snapshot()["injected_total"]
    try:
        for _ in range(3):
            code, out, err = cli(
                "pipelines",
                "-g",
                landscape.group,
                "-o",
                "json",
                "--max-rps",
                "0",
                "-v",
                env=_env(sandbox),
            )
            assert code == 0, err
            assert _rows(json.loads(out)) == _rows(json.loads(clean))
    finally:
        faults.configure(fault_rate=0.0)
    assert faults.snapshot()["injected_total"] > injected


def test_rest_fallback_when_graphql_lacks_a_field(
    sandbox: RunningSandbox,
    landscape: Landscape,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from provisioner.gitlab import monitoring

    original = monitoring.latest_pipelines_query
    # An older GitLab: its Project type has no `repository` field under this name.
    monkeypatch.setattr(
        monitoring,
        "latest_pipelines_query",
        lambda *a, **k: original(*a, **k).replace("repository {", "repositoryV2 {"),
    )
    api = _api(sandbox)
    counter = sandbox.handle.app.requests
    monitor = GroupMonitor(MonitorSpec(group=landscape.group), gitlab=api)
    with caplog.at_level("INFO"):
        snapshot = monitor.refresh()
    assert snapshot.source == "rest"
    assert "using REST" in caplog.text
    rows = {r.project: r for r in snapshot.rows}
    truth = _ground_truth(sandbox, landscape.group, ref="default")
    assert {
        p: (
            {"id": r.pipeline.id, "status": r.pipeline.status.value, "ref": r.pipeline.ref}
            if r.pipeline
            else None
        )
        for p, r in rows.items()
    } == truth
    graphql_before = counter.total("POST /api/graphql")
    monitor.refresh()
    assert counter.total("POST /api/graphql") == graphql_before  # detected once


def test_on_change_runs_a_command_with_the_change_in_its_environment(
    sandbox: RunningSandbox, landscape: Landscape, tmp_path: Path
) -> None:
    from provisioner.monitor import watch
    from provisioner.monitor.hooks import run_hook

    project = sandbox.new_project(
        group=sandbox.gitlab().groups.get(landscape.group), files=CI, name="hook"
    )
    pid = seed_pipeline(sandbox, project.id, "main", "running", age=1)
    monitor = GroupMonitor(
        MonitorSpec(group=landscape.group, ref_mode=RefMode.ANY), gitlab=_api(sandbox)
    )
    snapshots = watch(monitor, interval=600, fast_interval=0.01)
    next(snapshots)
    sandbox.handle.app.store.run("UPDATE pipelines SET status = 'failed' WHERE id = ?", [pid])
    changed = next(s for s in snapshots if s.changes)
    (change,) = [c for c in changed.changes if c.project == project.path_with_namespace]
    out = tmp_path / "env.txt"
    script = (
        "import os, sys; e = os.environ; open(sys.argv[1], 'w').write("
        "' '.join((e['RUNNERCTL_PROJECT'], e['RUNNERCTL_OLD_STATUS'], e['RUNNERCTL_STATUS'])))"
    )
    assert run_hook([sys.executable, "-c", script, str(out)], change, group=landscape.group) == 0
    assert out.read_text() == f"{project.path_with_namespace} running failed"


def _read_until(fd: int, needle: str, buffer: list[str], timeout: float) -> str:
    def seen() -> bool:
        import select

        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                buffer.append(os.read(fd, 65536).decode(errors="replace"))
            except OSError:
                return needle in "".join(buffer)
        return needle in "".join(buffer)

    wait_until(
        seen,
        timeout=timeout,
        interval=0.01,
        message=lambda: f"{needle!r} not in {''.join(buffer)[-2000:]!r}",
    )
    return "".join(buffer)


def test_watch_in_a_terminal_shows_a_finished_pipeline_at_the_next_fast_poll(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    gl = sandbox.gitlab()
    name = sandbox.unique("live")
    group = gl.groups.create({"name": name, "path": name})
    project = sandbox.new_project(group=group, files=CI, name="busy")
    pid = seed_pipeline(sandbox, project.id, "main", "running", age=1)
    counter = sandbox.handle.app.requests
    master, slave = pty.openpty()
    env = {
        **os.environ,
        "GITLAB_URL": sandbox.url,
        "GITLAB_TOKEN": sandbox.root_token,
        "COLUMNS": "160",
        "LINES": "40",
        "TERM": "xterm-256color",
    }
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [
            str(RUNNERCTL),
            "pipelines",
            "-g",
            name,
            "--watch",
            "--interval",
            "600s",
            "--fast-interval",
            "1s",
            "--max-rps",
            "0",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    buffer: list[str] = []
    try:
        _read_until(master, "Running", buffer, timeout=60)
        polls = counter.total("POST /api/graphql")
        sandbox.handle.app.store.run(
            "UPDATE pipelines SET status = 'success', finished_at = started_at WHERE id = ?", [pid]
        )
        _read_until(master, "Passed", buffer, timeout=60)
        # Shown by one of the next two fast polls; the full refresh is 10 minutes away.
        assert counter.total("POST /api/graphql") - polls <= 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        try:
            _read_until(master, "\x1b[?25h", buffer, timeout=5)  # the cursor is shown again
        except AssertionError:
            pytest.fail(f"the cursor was left hidden: {''.join(buffer)[-300:]!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert "Traceback" not in "".join(buffer)


def test_watch_off_a_terminal_prints_ndjson_changes_and_runs_the_hook(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    gl = sandbox.gitlab()
    name = sandbox.unique("pipe")
    group = gl.groups.create({"name": name, "path": name})
    project = sandbox.new_project(group=group, files=CI, name="busy")
    pid = seed_pipeline(sandbox, project.id, "main", "pending", age=1)
    seen = tmp_path / "hook.txt"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import os\n"
        f"with open({str(seen)!r}, 'a') as f:\n"
        "    e = os.environ\n"
        "    assert 'GITLAB_TOKEN' not in e\n"
        "    f.write(e['RUNNERCTL_PROJECT'] + ' ' + e['RUNNERCTL_STATUS'] + '\\n')\n"
    )
    env = {**os.environ, "GITLAB_URL": sandbox.url, "GITLAB_TOKEN": sandbox.root_token}
    proc = subprocess.Popen(
        [
            str(RUNNERCTL),
            "pipelines",
            "-g",
            name,
            "--watch",
            "--interval",
            "600s",
            "--fast-interval",
            "1s",
            "--max-rps",
            "0",
            "-o",
            "ndjson",
            "--on-change",
            f"{sys.executable} {hook}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert (first["event"], first["pipeline"]["status"]) == ("row", "pending")
        sandbox.handle.app.store.run("UPDATE pipelines SET status = 'failed' WHERE id = ?", [pid])
        change = json.loads(proc.stdout.readline())
        assert {k: change[k] for k in ("event", "project", "old_status", "status")} == {
            "event": "change",
            "project": project.path_with_namespace,
            "old_status": "pending",
            "status": "failed",
        }
        wait_until(seen.exists, timeout=30, interval=0.1, message="the hook never ran")
        assert seen.read_text() == f"{project.path_with_namespace} failed\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
