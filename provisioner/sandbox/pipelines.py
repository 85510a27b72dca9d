"""Pipelines: created from `.gitlab-ci.yml` at a ref, then advanced as jobs finish.

Job statuses move ``created -> pending -> running -> success/failed/canceled`` (or ``skipped``,
``manual``) the way GitLab's ``Ci::ProcessPipelineService`` moves them: a job waits for the
jobs of earlier stages (or only for its ``needs``), then its ``when`` decides whether it runs.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from provisioner.sandbox import repo
from provisioner.sandbox.state import now_iso

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

TERMINAL = frozenset({"success", "failed", "canceled", "skipped"})
ACTIVE = frozenset({"created", "waiting_for_resource", "pending", "running", "manual"})


class PipelineError(Exception):
    """GitLab refuses to create the pipeline; ``errors`` go into ``{"message": {"base": ...}}``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def jsonable(value: Any) -> Any:
    """Dataclasses, mappings and tuples from ``ci`` as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def rules_variables(
    store: Store,
    project: Row,
    *,
    ref: str,
    kind: str,
    sha: str,
    source: str,
    pipeline_vars: Mapping[str, str],
) -> dict[str, str]:
    """What ``rules:if`` and ``workflow:rules`` see when the pipeline is created."""
    ns = store.one("SELECT * FROM namespaces WHERE id = ?", [project["namespace_id"]])
    assert ns is not None
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": source,
        "CI_DEFAULT_BRANCH": project["default_branch"],
        "CI_PROJECT_PATH": f"{ns['full_path']}/{project['path']}",
        "CI_PROJECT_NAME": project["path"],
        "CI_PROJECT_NAMESPACE": ns["full_path"],
        "CI_PROJECT_ID": str(project["id"]),
        "CI_COMMIT_SHA": sha,
        "CI_COMMIT_REF_NAME": ref,
    }
    if kind == "tag":
        env["CI_COMMIT_TAG"] = ref
    else:
        env["CI_COMMIT_BRANCH"] = ref
    from provisioner.sandbox.auth import ancestor_ids

    owners = [-g for g in reversed(ancestor_ids(store, project["namespace_id"]))]
    for owner in [*owners, project["id"]]:
        for var in store.all("SELECT key, value FROM variables WHERE project_id = ?", [owner]):
            env[var["key"]] = var["value"]
    env.update(pipeline_vars)
    return env


class StoreProjectFiles:
    """Other projects' repositories in the sandbox, for ``include: project``/``component``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def _path(self, project: str) -> Any:
        from provisioner.sandbox.auth import find_project

        row = find_project(self._store, project)
        return repo.repo_dir(self._store, row) if row is not None else None

    def exists(self, project: str) -> bool:
        return self._path(project) is not None

    def commit(self, project: str, ref: str | None) -> str | None:
        from provisioner.sandbox.auth import find_project

        row = find_project(self._store, project)
        if row is None:
            return None
        found = repo.resolve(repo.repo_dir(self._store, row), ref or row["default_branch"])
        return found[0] if found is not None else None

    def tags(self, project: str) -> list[str]:
        path = self._path(project)
        return [name for name, _sha, _msg in repo.tags(path)] if path is not None else []

    def read(self, project: str, commit: str, path: str) -> str | None:
        where = self._path(project)
        data = repo.read_blob(where, commit, path.lstrip("/")) if where is not None else None
        return data.decode(errors="replace") if data is not None else None


def create(
    store: Store,
    project: Row,
    *,
    ref: str,
    user_id: int,
    source: str = "api",
    variables: list[dict[str, str]] | None = None,
) -> int:
    """Create the pipeline for ``ref``; raise :class:`PipelineError` as GitLab would refuse it."""
    from provisioner.sandbox import ci

    path = repo.repo_dir(store, project)
    found = repo.resolve(path, ref)
    if found is None or found[1] == "sha":
        raise PipelineError(["Reference not found"])
    sha, kind = found
    config_path = project["ci_config_path"] or ".gitlab-ci.yml"
    blob = repo.read_blob(path, sha, config_path)
    if blob is None:
        raise PipelineError(["Missing CI config file"])
    pipeline_vars = {v["key"]: str(v.get("value", "")) for v in variables or []}
    env = rules_variables(
        store, project, ref=ref, kind=kind, sha=sha, source=source, pipeline_vars=pipeline_vars
    )

    def read_file(name: str) -> str | None:
        data = repo.read_blob(path, sha, name.lstrip("/"))
        return data.decode(errors="replace") if data is not None else None

    try:
        spec = ci.load_pipeline(
            blob.decode(errors="replace"),
            ref=ref,
            variables=env,
            read_file=read_file,
            project_files=StoreProjectFiles(store),
        )
    except ci.CiConfigError as exc:
        raise PipelineError([exc.message]) from exc
    if not spec.jobs:
        raise PipelineError(
            [
                "Pipeline will not run for the selected trigger. The rules configuration prevented "
                "any jobs from being added to the pipeline."
            ]
        )
    stages = list(spec.stages)
    with store.tx():
        now = now_iso()
        pid = _insert_pipeline(
            store,
            project,
            ref=ref,
            sha=sha,
            kind=kind,
            status="created",
            source=source,
            user_id=user_id,
            extra={
                "variables": json.dumps(variables or []),
                "pipeline_variables": json.dumps(jsonable(spec.variables)),
                "stages": json.dumps(stages),
            },
        )
        for job in spec.jobs:
            store.insert(
                "jobs",
                {
                    "pipeline_id": pid,
                    "project_id": project["id"],
                    "name": job.name,
                    "stage": job.stage,
                    "stage_idx": stages.index(job.stage) if job.stage in stages else 0,
                    "status": "created",
                    "spec": json.dumps(jsonable(job)),
                    "when_": job.when,
                    "allow_failure": 1 if job.allow_failure else 0,
                    "created_at": now,
                    "user_id": user_id,
                },
            )
        # GitLab keeps every pipeline's commit reachable through a persistent ref; the
        # runner fetches it first (git_info.refspecs).
        repo.update_ref(path, f"refs/pipelines/{pid}", sha)
        process(store, pid)
    return pid


def _insert_pipeline(
    store: Store,
    project: Row,
    *,
    ref: str,
    sha: str,
    kind: str,
    status: str,
    source: str,
    user_id: int,
    extra: Mapping[str, Any],
) -> int:
    """The pipeline row, with a fresh id and the project's next iid (caller holds a tx)."""
    now = now_iso()
    before = repo.commit_info(repo.repo_dir(store, project), sha).parents
    iid = store.next_value(
        f"pipelines.iid:{project['id']}",
        int(
            store.scalar(
                "SELECT COALESCE(MAX(iid), 0) FROM pipelines WHERE project_id = ?",
                [project["id"]],
            )
        ),
    )
    return store.insert(
        "pipelines",
        {
            "iid": iid,
            "project_id": project["id"],
            "ref": ref,
            "sha": sha,
            "before_sha": before[0] if before else repo.ZERO_SHA,
            "tag": 1 if kind == "tag" else 0,
            "status": status,
            "source": source,
            "user_id": user_id,
            "created_at": now,
            "updated_at": now,
            **extra,
        },
    )


# GitLab's Ci::Pipeline::Chain::Skip: these in the commit message skip the push pipeline.
SKIP_CI = re.compile(r"\[(?:ci[ _-]skip|skip[ _-]ci)\]", re.IGNORECASE)


def on_push(
    store: Store, project: Row, *, ref: str, user_id: int, skip: bool = False
) -> int | None:
    """The ``push`` pipeline GitLab creates when a commit reaches ``ref``; its id, or ``None``.

    Commits through the API and ``git push`` both get one. ``[ci skip]``/``[skip ci]`` in the
    message, or ``git push -o ci.skip`` (``skip``), make it a ``skipped`` pipeline without jobs.
    Like GitLab, no pipeline comes of a ref without CI configuration or whose ``workflow:rules``
    (or job rules) leave nothing to run. Unlike GitLab, a broken configuration creates nothing
    either (GitLab records a failed pipeline with the YAML errors).
    """
    path = repo.repo_dir(store, project)
    found = repo.resolve(path, ref)
    if found is None or found[1] == "sha":
        return None
    sha, kind = found
    config_path = project["ci_config_path"] or ".gitlab-ci.yml"
    if repo.read_blob(path, sha, config_path) is None:
        return None
    if skip or SKIP_CI.search(repo.commit_info(path, sha).message):
        with store.tx():
            pid = _insert_pipeline(
                store,
                project,
                ref=ref,
                sha=sha,
                kind=kind,
                status="skipped",
                source="push",
                user_id=user_id,
                extra={"finished_at": now_iso()},
            )
            repo.update_ref(path, f"refs/pipelines/{pid}", sha)
        return pid
    try:
        return create(store, project, ref=ref, user_id=user_id, source="push")
    except PipelineError:
        return None


def _jobs(store: Store, pipeline_id: int) -> list[Row]:
    return store.all(
        "SELECT * FROM jobs WHERE pipeline_id = ? AND retried = 0 ORDER BY stage_idx, id",
        [pipeline_id],
    )


def _blocks(job: Row) -> bool:
    """Is ``job`` unfinished as a prerequisite? (non-blocking manual jobs do not block)."""
    if job["status"] in TERMINAL:
        return False
    return not (job["status"] == "manual" and job["allow_failure"])


def _failed(job: Row) -> bool:
    return job["status"] == "canceled" or (job["status"] == "failed" and not job["allow_failure"])


def process(store: Store, pipeline_id: int) -> None:
    """Advance ``created`` jobs whose prerequisites are done, then recompute the pipeline."""
    with store.tx():
        changed = True
        while changed:
            changed = False
            jobs = _jobs(store, pipeline_id)
            by_name = {j["name"]: j for j in jobs}
            for job in jobs:
                if job["status"] != "created":
                    continue
                needs = json.loads(job["spec"]).get("needs")
                if needs is not None:
                    prereqs = [by_name[n] for n in needs if n in by_name]
                else:
                    prereqs = [j for j in jobs if j["stage_idx"] < job["stage_idx"]]
                if any(_blocks(p) for p in prereqs):
                    continue
                failed = any(_failed(p) for p in prereqs)
                status = _next_status(job["when_"], failed)
                if status == "pending" and json.loads(job["spec"]).get("resource_group"):
                    status = "waiting_for_resource"  # assign_resources() makes it pending
                values: dict[str, Any] = {"status": status}
                if status == "pending":
                    values["queued_at"] = now_iso()
                elif status == "skipped":
                    values["finished_at"] = None
                store.update("jobs", job["id"], values)
                changed = True
        update_status(store, pipeline_id)
        assign_resources(store, pipeline_id)


# Statuses in which a job holds its resource group: handed to a runner, or about to be.
_HOLDS_RESOURCE = ("pending", "running", "canceling")


def assign_resources(store: Store, pipeline_id: int) -> None:
    """Give each free resource group of the pipeline's project to one waiting job.

    GitLab's ``resource_group`` (``process_mode: unordered``): a job whose turn has come waits
    in ``waiting_for_resource`` while another job of the same group in the project is pending or
    running, and becomes ``pending`` (available to runners) once the group is free. The oldest
    waiting job gets it, whichever pipeline it is in.
    """
    project_id = store.scalar("SELECT project_id FROM pipelines WHERE id = ?", [pipeline_id])
    with store.tx():
        waiting = store.all(
            "SELECT * FROM jobs WHERE project_id = ? AND status = 'waiting_for_resource' "
            "AND retried = 0 ORDER BY id",
            [project_id],
        )
        if not waiting:
            return
        marks = ",".join("?" * len(_HOLDS_RESOURCE))
        held = {
            json.loads(row["spec"]).get("resource_group")
            for row in store.all(
                f"SELECT spec FROM jobs WHERE project_id = ? AND status IN ({marks})",  # noqa: S608
                [project_id, *_HOLDS_RESOURCE],
            )
        }
        for job in waiting:
            group = json.loads(job["spec"]).get("resource_group")
            if group in held:
                continue
            held.add(group)
            store.update("jobs", job["id"], {"status": "pending", "queued_at": now_iso()})
            update_status(store, job["pipeline_id"])


def _next_status(when: str, failed: bool) -> str:
    if when == "on_failure":
        return "pending" if failed else "skipped"
    if when == "always":
        return "pending"
    if failed:
        return "skipped"
    return "manual" if when == "manual" else "pending"


def composite_status(jobs: list[Row]) -> str:
    statuses = [j["status"] for j in jobs]
    if not statuses:
        return "skipped"
    if "running" in statuses or "canceling" in statuses:
        return "running"
    if "pending" in statuses:
        started = any(s in ("success", "failed") for s in statuses)
        return "running" if started else "pending"
    if "waiting_for_resource" in statuses:
        return "waiting_for_resource"
    if "created" in statuses:
        return (
            "manual"
            if any(j["status"] == "manual" and not j["allow_failure"] for j in jobs)
            else "created"
        )
    if any(j["status"] == "manual" and not j["allow_failure"] for j in jobs):
        return "manual"
    if any(j["status"] == "failed" and not j["allow_failure"] for j in jobs):
        return "failed"
    if "canceled" in statuses:
        return "canceled"
    if "success" in statuses or "failed" in statuses:
        return "success"
    if "manual" in statuses:
        return "manual"
    return "skipped"


def update_status(store: Store, pipeline_id: int) -> None:
    pipeline = store.one("SELECT * FROM pipelines WHERE id = ?", [pipeline_id])
    assert pipeline is not None
    jobs = _jobs(store, pipeline_id)
    status = composite_status(jobs)
    now = now_iso()
    values: dict[str, Any] = {"status": status, "updated_at": now}
    starts = [j["started_at"] for j in jobs if j["started_at"]]
    if starts and not pipeline["started_at"]:
        values["started_at"] = min(starts)
    if status in TERMINAL or status == "manual":
        ends = [j["finished_at"] for j in jobs if j["finished_at"]]
        values["finished_at"] = max(ends) if ends else now
    else:
        values["finished_at"] = None
    store.update("pipelines", pipeline_id, values)


def finish_job(
    store: Store,
    job: Row,
    status: str,
    *,
    failure_reason: str | None = None,
    exit_code: int | None = None,
) -> None:
    with store.tx():
        store.update(
            "jobs",
            job["id"],
            {
                "status": status,
                "finished_at": now_iso(),
                "failure_reason": failure_reason,
                "exit_code": exit_code,
            },
        )
        process(store, job["pipeline_id"])


def cancel_job(store: Store, job: Row) -> bool:
    if job["status"] not in ACTIVE:
        return False
    finish_job(store, job, "canceled")
    return True


def cancel_pipeline(store: Store, pipeline_id: int) -> None:
    with store.tx():
        for job in _jobs(store, pipeline_id):
            if job["status"] in ACTIVE:
                store.update("jobs", job["id"], {"status": "canceled", "finished_at": now_iso()})
        update_status(store, pipeline_id)
        assign_resources(store, pipeline_id)


def retry_job(store: Store, job: Row, user_id: int) -> int:
    """Clone ``job`` as a new attempt (the old one becomes ``retried``) and re-process."""
    with store.tx():
        store.update("jobs", job["id"], {"retried": 1})
        new_id = store.insert(
            "jobs",
            {
                "pipeline_id": job["pipeline_id"],
                "project_id": job["project_id"],
                "name": job["name"],
                "stage": job["stage"],
                "stage_idx": job["stage_idx"],
                "status": "created",
                "spec": job["spec"],
                "when_": job["when_"],
                "allow_failure": job["allow_failure"],
                "created_at": now_iso(),
                "user_id": user_id,
            },
        )
        # Later jobs that were skipped because of this one get another chance.
        for later in _jobs(store, job["pipeline_id"]):
            if later["stage_idx"] > job["stage_idx"] and later["status"] == "skipped":
                store.update("jobs", later["id"], {"status": "created", "finished_at": None})
        if job["when_"] == "manual":
            store.update("jobs", new_id, {"when_": "on_success"})
        process(store, job["pipeline_id"])
    return new_id


def retry_pipeline(store: Store, pipeline_id: int, user_id: int) -> None:
    with store.tx():
        for job in _jobs(store, pipeline_id):
            if job["status"] in ("failed", "canceled"):
                retry_job(store, job, user_id)
        process(store, pipeline_id)


def play_job(store: Store, job: Row) -> None:
    with store.tx():
        if json.loads(job["spec"]).get("resource_group"):
            store.update("jobs", job["id"], {"status": "waiting_for_resource"})
        else:
            store.update("jobs", job["id"], {"status": "pending", "queued_at": now_iso()})
        process(store, job["pipeline_id"])
