"""The runner job protocol: what gitlab-runner (or the stand-in runner) speaks.

``POST /jobs/request`` hands out the oldest pending job this runner may take, ``PUT /jobs/:id``
and ``PATCH /jobs/:id/trace`` report progress, ``POST|GET /jobs/:id/artifacts`` move artifacts.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox import entities as ent
from provisioner.sandbox import pipelines
from provisioner.sandbox.api_runners import (
    runner_for_token,
    runner_serves_project,
    touch_runner,
)
from provisioner.sandbox.auth import (
    authenticate,
    job_may_access,
    load_project,
)
from provisioner.sandbox.state import digest, new_token, now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    forbidden,
    json_response,
    missing_param,
    not_found,
    to_int,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

# GitLab asks runners for a trace update every 60 s, and every 3 s while someone watches the
# job's log (``Gitlab::Ci::Trace::UPDATE_FREQUENCY_DEFAULT`` / ``_WHEN_BEING_WATCHED``). A read
# of the job's trace through the API counts as watching for WATCH_TTL seconds (the sandbox has
# no job page whose polling GitLab would count).
TRACE_UPDATE_INTERVAL = 60
TRACE_UPDATE_INTERVAL_WATCHED = 3
WATCH_TTL = 60.0
MAX_ARTIFACT_BYTES = 100 << 20
FAILURE_REASONS = (
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "user_blocked",
    "project_deleted",
    "insufficient_bridge_permissions",
    "downstream_bridge_project_not_found",
    "invalid_bridge_trigger",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
    "ip_restriction_failure",
    "reached_max_pipeline_hierarchy_size",
    "image_pull_failure",
)


routes = RouteTable()


def mark_watched(app: Any, job_id: int) -> None:
    """Someone reads job ``job_id``'s log: its runner should send updates often."""
    watched: dict[int, float] = app.extras.setdefault("trace_watched", {})
    watched[job_id] = time.monotonic()


def trace_update_interval(app: Any, job_id: int) -> str:
    """``X-GitLab-Trace-Update-Interval`` for job ``job_id``: 3 while watched, else 60."""
    seen = app.extras.get("trace_watched", {}).get(job_id)
    if seen is not None and time.monotonic() - seen < WATCH_TTL:
        return str(TRACE_UPDATE_INTERVAL_WATCHED)
    return str(TRACE_UPDATE_INTERVAL)


def trace_path(store: Store, job_id: int) -> Path:
    return store.data_dir / "traces" / f"{job_id}.log"


def trace_size(store: Store, job_id: int) -> int:
    path = trace_path(store, job_id)
    return path.stat().st_size if path.exists() else 0


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower())[:63].strip("-")


def _queue_marker(store: Store) -> str:
    row = store.one(
        "SELECT COALESCE(MAX(id), 0) AS m, COUNT(*) AS c FROM jobs WHERE status = 'pending'"
    )
    assert row is not None
    return f"{row['m']}-{row['c']}"


def _runner_takes(store: Store, runner: Row, job: Row, project: Row) -> bool:
    if not runner_serves_project(store, runner, project):
        return False
    job_tags = set(json.loads(job["spec"]).get("tags") or [])
    runner_tags = set(json.loads(runner["tag_list"]))
    if not job_tags:
        return bool(runner["run_untagged"])
    return job_tags <= runner_tags


@routes.post("/api/v4/jobs/request")
def request_job(ctx: Ctx) -> Response:
    store = ctx.store
    token = ctx.json().get("token") or ctx.header("runner-token")
    runner = runner_for_token(store, token)
    touch_runner(store, runner, ctx)
    no_job = Response(status_code=204, headers={"X-GitLab-Last-Update": _queue_marker(store)})
    if runner["paused"]:
        return no_job
    job_token = new_token("glcbt-64_", 20)
    with store.tx():
        claimed: Row | None = None
        for job in store.all("SELECT * FROM jobs WHERE status = 'pending' ORDER BY id"):
            project = store.one("SELECT * FROM projects WHERE id = ?", [job["project_id"]])
            if project is not None and _runner_takes(store, runner, job, project):
                claimed = job
                break
        if claimed is None:
            return no_job
        store.update(
            "jobs",
            claimed["id"],
            {
                "status": "running",
                "started_at": now_iso(),
                "runner_id": runner["id"],
                "token_digest": digest(job_token),
            },
        )
        pipelines.update_status(store, claimed["pipeline_id"])
        running = store.one("SELECT * FROM jobs WHERE id = ?", [claimed["id"]])
        assert running is not None
        payload = build_payload(ctx, store, running, runner, job_token)
    return json_response(payload, 201)


def _var(
    key: str,
    value: str,
    *,
    public: bool = True,
    masked: bool = False,
    file: bool = False,
    raw: bool = False,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"key": key, "value": value, "public": public, "masked": masked}
    if file:
        doc["file"] = True
    if raw:
        doc["raw"] = True
    return doc


def _settings_variables(store: Store, project: Row) -> list[dict[str, Any]]:
    """CI/CD variables from the settings of the project's groups and of the project."""
    from provisioner.sandbox.auth import ancestor_ids

    # Group variables (outermost group first), then the project's: later ones win.
    owners = [-g for g in reversed(ancestor_ids(store, project["namespace_id"]))]
    owners.append(project["id"])
    marks = ",".join("?" * len(owners))
    ordered = {o: i for i, o in enumerate(owners)}
    rows = store.all(f"SELECT rowid, * FROM variables WHERE project_id IN ({marks})", owners)  # noqa: S608
    rows.sort(key=lambda r: (ordered[r["project_id"]], r["rowid"]))
    out = []
    for row in rows:
        out.append(
            _var(
                row["key"],
                row["value"],
                public=False,
                masked=bool(row["masked"]),
                file=row["variable_type"] == "file",
                raw=bool(row["raw"]),
            )
        )
    return out


def _commit_facts(store: Store, project: Row, pipeline: Row) -> tuple[str, str]:
    """The pipeline commit's message and time (ISO 8601, UTC): the commit's, not the pipeline's."""
    try:
        from provisioner.sandbox import repo

        info = repo.commit_info(repo.repo_dir(store, project), pipeline["sha"])
    except Exception:  # a commit that vanished must not stop the job
        return "", pipeline["created_at"].split(".")[0] + "Z"
    committed = datetime.fromisoformat(info.committed_date).astimezone(UTC)
    return info.message, committed.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_payload(ctx: Ctx, store: Store, job: Row, runner: Row, token: str) -> dict[str, Any]:
    """The JobResponse gitlab-runner decodes (``common/network.go`` ``JobResponse``)."""
    spec = json.loads(job["spec"])
    project = store.one("SELECT * FROM projects WHERE id = ?", [job["project_id"]])
    pipeline = store.one("SELECT * FROM pipelines WHERE id = ?", [job["pipeline_id"]])
    assert project is not None
    assert pipeline is not None
    ns = store.one("SELECT * FROM namespaces WHERE id = ?", [project["namespace_id"]])
    user = store.one("SELECT * FROM users WHERE id = ?", [job["user_id"] or 1])
    assert ns is not None
    assert user is not None
    base = ctx.base_url
    scheme, _, hostport = base.partition("://")
    host, _, port = hostport.partition(":")
    full_path = f"{ns['full_path']}/{project['path']}"
    repo_url = f"{scheme}://gitlab-ci-token:{token}@{hostport}/{full_path}.git"
    ref, sha, is_tag = pipeline["ref"], pipeline["sha"], bool(pipeline["tag"])
    yaml_vars: dict[str, str] = {
        **json.loads(pipeline["pipeline_variables"]),
        **(spec.get("variables") or {}),
    }
    depth = int(yaml_vars.get("GIT_DEPTH") or project["ci_default_git_depth"] or 0)
    refspecs = [f"+refs/pipelines/{pipeline['id']}:refs/pipelines/{pipeline['id']}"]
    if depth > 0:
        refspecs.append(
            f"+refs/tags/{ref}:refs/tags/{ref}"
            if is_tag
            else f"+refs/heads/{ref}:refs/remotes/origin/{ref}"
        )
    else:
        refspecs += ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
    timeout = int(spec.get("timeout_seconds") or project["build_timeout"] or 3600)
    if runner["maximum_timeout"]:
        timeout = min(timeout, int(runner["maximum_timeout"]))
    commit_message, commit_timestamp = _commit_facts(store, project, pipeline)
    server_port = port or ("443" if scheme == "https" else "80")
    proxy_server = f"{host}:{server_port}"
    top_group = ns["full_path"].split("/")[0]
    started = job["started_at"] or now_iso()
    predefined = [
        _var("CI_PIPELINE_ID", str(pipeline["id"])),
        _var("CI_PIPELINE_URL", f"{base}/{full_path}/-/pipelines/{pipeline['id']}"),
        _var("CI_JOB_ID", str(job["id"])),
        _var("CI_JOB_URL", f"{base}/{full_path}/-/jobs/{job['id']}"),
        _var("CI_JOB_TOKEN", token, public=False, masked=True),
        _var("CI_JOB_STARTED_AT", started.split(".")[0] + "Z"),
        _var("CI_REGISTRY_USER", "gitlab-ci-token"),
        _var("CI_REGISTRY_PASSWORD", token, public=False, masked=True),
        _var("CI_REPOSITORY_URL", repo_url, public=False),
        _var("CI_DEPENDENCY_PROXY_USER", "gitlab-ci-token"),
        _var("CI_DEPENDENCY_PROXY_PASSWORD", token, public=False, masked=True),
        _var("CI_DEPENDENCY_PROXY_SERVER", proxy_server),
        _var(
            "CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX",
            f"{proxy_server}/{top_group}/dependency_proxy/containers",
        ),
        _var(
            "CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX",
            f"{proxy_server}/{ns['full_path']}/dependency_proxy/containers",
        ),
        _var("CI_JOB_NAME", job["name"]),
        _var("CI_JOB_NAME_SLUG", _slug(job["name"])),
        _var("CI_JOB_STAGE", job["stage"]),
        _var("CI_NODE_TOTAL", "1"),
        _var("CI_BUILD_ID", str(job["id"])),
        _var("CI", "true"),
        _var("GITLAB_CI", "true"),
        _var("CI_SERVER_URL", base),
        _var("CI_SERVER_HOST", host),
        _var("CI_SERVER_PORT", server_port),
        _var("CI_SERVER_FQDN", hostport),
        _var("CI_TEMPLATE_REGISTRY_HOST", "registry.gitlab.com"),
        _var("CI_SERVER_PROTOCOL", scheme),
        _var("CI_SERVER_SHELL_SSH_HOST", host),
        _var("CI_SERVER_SHELL_SSH_PORT", "22"),
        _var("CI_SERVER_NAME", "GitLab"),
        _var("CI_SERVER_VERSION", ent.VERSION),
        _var("CI_SERVER_VERSION_MAJOR", ent.VERSION.split(".")[0]),
        _var("CI_SERVER_VERSION_MINOR", ent.VERSION.split(".")[1]),
        _var("CI_SERVER_VERSION_PATCH", ent.VERSION.split(".")[2]),
        _var("CI_SERVER_REVISION", ent.REVISION),
        _var("GITLAB_FEATURES", ""),
        _var("CI_PROJECT_ID", str(project["id"])),
        _var("CI_PROJECT_NAME", project["path"]),
        _var("CI_PROJECT_TITLE", project["name"]),
        _var("CI_PROJECT_DESCRIPTION", project["description"] or ""),
        _var("CI_PROJECT_PATH", full_path),
        _var("CI_PROJECT_PATH_SLUG", _slug(full_path)),
        _var("CI_PROJECT_NAMESPACE", ns["full_path"]),
        _var("CI_PROJECT_NAMESPACE_ID", str(ns["id"])),
        _var("CI_PROJECT_ROOT_NAMESPACE", ns["full_path"].split("/")[0]),
        _var("CI_PROJECT_URL", f"{base}/{full_path}"),
        _var("CI_PROJECT_VISIBILITY", project["visibility"]),
        _var("CI_PROJECT_REPOSITORY_LANGUAGES", ""),
        _var("CI_PROJECT_CLASSIFICATION_LABEL", ""),
        _var("CI_DEFAULT_BRANCH", project["default_branch"]),
        _var("CI_CONFIG_PATH", project["ci_config_path"] or ".gitlab-ci.yml"),
        _var("CI_PAGES_DOMAIN", "example.com"),
        _var("CI_API_V4_URL", f"{base}/api/v4"),
        _var("CI_API_GRAPHQL_URL", f"{base}/api/graphql"),
        _var("CI_PIPELINE_IID", str(pipeline["iid"])),
        _var("CI_PIPELINE_SOURCE", pipeline["source"]),
        _var("CI_PIPELINE_CREATED_AT", pipeline["created_at"].split(".")[0] + "Z"),
        _var("CI_PIPELINE_NAME", ""),
        _var("CI_COMMIT_SHA", sha),
        _var("CI_COMMIT_SHORT_SHA", sha[:8]),
        _var("CI_COMMIT_BEFORE_SHA", pipeline["before_sha"]),
        _var("CI_COMMIT_REF_NAME", ref),
        _var("CI_COMMIT_REF_SLUG", _slug(ref)),
        _var("CI_COMMIT_REF_PROTECTED", "false"),
        *([_var("CI_COMMIT_TAG", ref)] if is_tag else [_var("CI_COMMIT_BRANCH", ref)]),
        _var("CI_COMMIT_MESSAGE", commit_message),
        _var("CI_COMMIT_TITLE", commit_message.split("\n", 1)[0]),
        _var("CI_COMMIT_DESCRIPTION", commit_message.partition("\n")[2].strip()),
        _var("CI_COMMIT_TIMESTAMP", commit_timestamp),
        _var("CI_COMMIT_AUTHOR", f"{user['name']} <{user['email']}>"),
        _var("CI_RUNNER_ID", str(runner["id"])),
        _var("CI_RUNNER_DESCRIPTION", runner["description"] or ""),
        _var("CI_RUNNER_TAGS", json.dumps(json.loads(runner["tag_list"]))),
        _var("GITLAB_USER_ID", str(user["id"])),
        _var("GITLAB_USER_EMAIL", user["email"]),
        _var("GITLAB_USER_LOGIN", user["username"]),
        _var("GITLAB_USER_NAME", user["name"]),
    ]
    variables = [v for v in predefined if v is not None]
    for key, value in yaml_vars.items():
        variables.append(_var(key, str(value)))
    variables.extend(_settings_variables(store, project))
    for item in json.loads(pipeline["variables"]):
        variables.append(
            _var(
                str(item.get("key")),
                str(item.get("value", "")),
                public=False,
                file=item.get("variable_type") == "file",
            )
        )
    signer = ctx.app.signer
    from provisioner.sandbox.idtokens import job_claims

    for name, cfg in (spec.get("id_tokens") or {}).items():
        claims = job_claims(
            issuer=base,
            audience=(cfg or {}).get("aud", base),
            ttl=timeout + 300,
            job={
                "namespace_id": ns["id"],
                "namespace_path": ns["full_path"],
                "project_id": project["id"],
                "project_path": full_path,
                "user_id": user["id"],
                "user_login": user["username"],
                "user_email": user["email"],
                "pipeline_id": pipeline["id"],
                "pipeline_source": pipeline["source"],
                "job_id": job["id"],
                "ref": ref,
                "ref_type": "tag" if is_tag else "branch",
                "runner_id": runner["id"],
                "sha": sha,
                "project_visibility": project["visibility"],
            },
        )
        variables.append(_var(name, signer.sign(claims), public=False, masked=True))

    steps = [
        {
            "name": "script",
            "script": list(spec.get("before_script") or []) + list(spec.get("script") or []),
            "timeout": timeout,
            "when": "on_success",
            "allow_failure": False,
        }
    ]
    if spec.get("after_script"):
        steps.append(
            {
                "name": "after_script",
                "script": list(spec["after_script"]),
                "timeout": timeout,
                "when": "always",
                "allow_failure": True,
            }
        )
    return {
        "id": job["id"],
        "token": token,
        "allow_git_fetch": True,
        "job_info": {
            "id": job["id"],
            "name": job["name"],
            "stage": job["stage"],
            "project_id": project["id"],
            "project_name": project["name"],
            "project_full_path": full_path,
            "time_in_queue_seconds": 0,
            "project_jobs_running_on_instance_runners_count": "+Inf",
            "queue_size": 0,
            "queue_depth": 0,
        },
        "git_info": {
            "repo_url": repo_url,
            "repo_object_format": "sha1",
            "ref": ref,
            "sha": sha,
            "before_sha": pipeline["before_sha"],
            "ref_type": "tag" if is_tag else "branch",
            "refspecs": refspecs,
            "depth": depth,
            "protected": False,
        },
        "runner_info": {"timeout": timeout, "runner_session_url": None},
        "variables": variables,
        "steps": steps,
        "image": _image(spec),
        "services": [
            {"name": s, "alias": "", "entrypoint": None, "command": None}
            for s in spec.get("services") or []
        ],
        "artifacts": _artifacts(spec),
        "cache": [_cache(c) for c in spec.get("cache") or []],
        "credentials": [],
        "dependencies": _dependencies(store, job, spec, token),
        "features": {
            "trace_sections": True,
            "failure_reasons": list(FAILURE_REASONS),
            "token_mask_prefixes": ["glpat-", "glrt-", "glcbt-", "GR1348941"],
        },
        "hooks": [],
    }


def _image(spec: dict[str, Any]) -> dict[str, Any] | None:
    if not spec.get("image"):
        return None
    entry = spec.get("image_entrypoint")
    return {
        "name": spec["image"],
        "alias": "",
        "entrypoint": entry,
        "command": None,
        "ports": [],
        "pull_policy": None,
    }


def _artifacts(spec: dict[str, Any]) -> list[dict[str, Any]] | None:
    art = spec.get("artifacts")
    if not art:
        return None
    out: list[dict[str, Any]] = []
    if art.get("paths") or art.get("untracked"):
        out.append(
            {
                "name": art.get("name") or "",
                "untracked": bool(art.get("untracked")),
                "paths": list(art.get("paths") or []),
                "exclude": list(art.get("exclude") or []),
                "when": art.get("when") or "on_success",
                "artifact_type": "archive",
                "artifact_format": "zip",
                "expire_in": art.get("expire_in"),
            }
        )
    for report, paths in (art.get("reports") or {}).items():
        out.append(
            {
                "name": f"{report}.xml.gz" if report == "junit" else report,
                "untracked": False,
                "paths": list(paths),
                "when": "always",
                "artifact_type": report,
                "artifact_format": "gzip" if report == "junit" else "raw",
                "expire_in": art.get("expire_in"),
            }
        )
    return out or None


def _cache(cache: dict[str, Any]) -> dict[str, Any]:
    key = cache.get("key", "default")
    if isinstance(key, dict):
        key = "-".join(str(v) for v in key.values())
    return {
        "key": str(key),
        "untracked": bool(cache.get("untracked")),
        "policy": cache.get("policy", "pull-push"),
        "paths": list(cache.get("paths") or []),
        "when": cache.get("when", "on_success"),
        "fallback_keys": list(cache.get("fallback_keys") or []),
    }


def _dependencies(store: Store, job: Row, spec: dict[str, Any], token: str) -> list[dict[str, Any]]:
    jobs = store.all(
        "SELECT * FROM jobs WHERE pipeline_id = ? AND retried = 0 ORDER BY id", [job["pipeline_id"]]
    )
    names = spec.get("dependencies")
    if names is None:
        chosen = [j for j in jobs if j["stage_idx"] < job["stage_idx"]]
    else:
        chosen = [j for j in jobs if j["name"] in names]
    out = []
    for dep in chosen:
        archive = store.one(
            "SELECT * FROM artifacts WHERE job_id = ? AND file_type = 'archive'", [dep["id"]]
        )
        doc: dict[str, Any] = {"id": dep["id"], "name": dep["name"], "token": token}
        if archive is not None:
            doc["artifacts_file"] = {"filename": archive["filename"], "size": archive["size"]}
        out.append(doc)
    return out


# job updates ----------------------------------------------------------------------------------


def _job_for_token(ctx: Ctx, *, body_token: bool) -> Row:
    store = ctx.store
    job_id = to_int(ctx.params["job_id"], "id")
    job = store.one("SELECT * FROM jobs WHERE id = ?", [job_id])
    if job is None:
        raise not_found()
    token = ctx.header("job-token") or (ctx.json().get("token") if body_token else None)
    if not token or job["token_digest"] != digest(str(token)):
        raise forbidden()
    if job["runner_id"] is not None:
        runner = store.one("SELECT * FROM runners WHERE id = ?", [job["runner_id"]])
        if runner is not None:
            touch_runner(store, runner)
    if job["status"] != "running":
        raise ApiError(
            403, "403 Forbidden - Job is not running", headers={"Job-Status": job["status"]}
        )
    return job


@routes.put("/api/v4/jobs/{job_id}")
def update_job(ctx: Ctx) -> Response:
    store = ctx.store
    job = _job_for_token(ctx, body_token=True)
    body = ctx.json()
    state = body.get("state")
    checksum = body.get("checksum") or (body.get("output") or {}).get("checksum")
    if checksum:
        store.update("jobs", job["id"], {"checksum": str(checksum)})
    headers = {
        "Job-Status": job["status"],
        "X-GitLab-Trace-Update-Interval": trace_update_interval(ctx.app, job["id"]),
    }
    if state in (None, "", "running"):
        return Response("200", status_code=200, media_type="text/plain", headers=headers)
    if state == "success":
        pipelines.finish_job(store, job, "success", exit_code=0)
    elif state == "failed":
        reason = body.get("failure_reason") or "unknown_failure"
        if reason not in FAILURE_REASONS:
            reason = "unknown_failure"
        exit_code = to_int(body.get("exit_code"), "exit_code")
        allowed = json.loads(job["spec"]).get("allow_failure_exit_codes") or []
        if exit_code is not None and exit_code in allowed:
            store.update("jobs", job["id"], {"allow_failure": 1})
            job = store.one("SELECT * FROM jobs WHERE id = ?", [job["id"]]) or job
        pipelines.finish_job(store, job, "failed", failure_reason=reason, exit_code=exit_code)
    else:
        raise ApiError(400, "400 Bad request - Invalid state", headers=headers)
    fresh = store.one("SELECT status FROM jobs WHERE id = ?", [job["id"]])
    headers["Job-Status"] = fresh["status"] if fresh is not None else "success"
    return Response("200", status_code=200, media_type="text/plain", headers=headers)


@routes.patch("/api/v4/jobs/{job_id}/trace")
def patch_trace(ctx: Ctx) -> Response:
    store = ctx.store
    job = _job_for_token(ctx, body_token=False)
    content_range = ctx.header("content-range")
    if not content_range:
        raise ApiError(400, "400 Missing header Content-Range")
    match = re.fullmatch(r"(?:bytes )?(\d+)-(\d+)", content_range.strip())
    if match is None:
        raise ApiError(400, "400 Bad request - Invalid Content-Range")
    start = int(match.group(1))
    size = trace_size(store, job["id"])
    if start != size:
        return Response(
            status_code=416, headers={"Range": f"0-{size}", "Job-Status": job["status"]}
        )
    path = trace_path(store, job["id"])
    with path.open("ab") as handle:
        handle.write(ctx.body)
    return Response(
        status_code=202,
        headers={
            "Job-Status": "running",
            "Range": f"0-{size + len(ctx.body)}",
            "X-GitLab-Trace-Update-Interval": trace_update_interval(ctx.app, job["id"]),
        },
    )


def _expire_at(expire_in: str | None) -> str | None:
    if not expire_in or expire_in == "never":
        return None
    try:
        from provisioner.sandbox.ci import parse_duration

        seconds = parse_duration(expire_in)
    except ImportError:
        seconds = None
    if seconds is None:
        return None
    return now_iso(datetime.now(UTC) + timedelta(seconds=seconds))


@routes.post("/api/v4/jobs/{job_id}/artifacts")
def upload_artifacts(ctx: Ctx) -> Response:
    store = ctx.store
    job = _job_for_token(ctx, body_token=False)
    upload = ctx.files.get("file")
    if upload is None:
        raise missing_param("file")
    if len(upload.content) > MAX_ARTIFACT_BYTES:
        raise ApiError(413, "413 Request Entity Too Large")
    file_type = ctx.query("artifact_type") or "archive"
    file_format = ctx.query("artifact_format") or ("zip" if file_type == "archive" else "raw")
    if (
        file_type == "archive"
        and file_format == "zip"
        and not zipfile.is_zipfile(__import__("io").BytesIO(upload.content))
    ):
        raise ApiError(400, "400 Bad request - Invalid artifacts file")
    filename = "artifacts.zip" if file_type == "archive" else (upload.filename or file_type)
    folder = store.data_dir / "artifacts" / str(job["id"])
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{file_type}-{Path(filename).name}"
    target.write_bytes(upload.content)
    with store.tx():
        store.run(
            "DELETE FROM artifacts WHERE job_id = ? AND file_type = ?", [job["id"], file_type]
        )
        store.insert(
            "artifacts",
            {
                "job_id": job["id"],
                "file_type": file_type,
                "filename": filename,
                "file_format": file_format,
                "size": len(upload.content),
                "path": str(target),
                "expire_at": _expire_at(ctx.query("expire_in")),
                "created_at": now_iso(),
            },
        )
    return json_response({"message": "201 Created"}, 201)


def _artifact_response(store: Store, job: Row) -> Response:
    archive = store.one(
        "SELECT * FROM artifacts WHERE job_id = ? AND file_type = 'archive'", [job["id"]]
    )
    if archive is None or not Path(archive["path"]).exists():
        raise not_found()
    return Response(
        Path(archive["path"]).read_bytes(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{archive["filename"]}"; '
            f"filename*=UTF-8''{archive['filename']}",
        },
    )


@routes.get("/api/v4/jobs/{job_id}/artifacts")
def download_artifacts(ctx: Ctx) -> Response:
    """``GET /jobs/:id/artifacts``: dependencies downloaded with a running job's token."""
    store = ctx.store
    ident = authenticate(store, ctx, job_token=True)
    if ident is None:
        raise ApiError(401, "401 Unauthorized")
    job = store.one("SELECT * FROM jobs WHERE id = ?", [to_int(ctx.params["job_id"], "id")])
    if job is None:
        raise not_found()
    project = store.one("SELECT * FROM projects WHERE id = ?", [job["project_id"]])
    assert project is not None
    if ident.job is not None:
        if not job_may_access(store, ident.job, project):
            raise forbidden()
    else:
        load_project(store, ident, str(project["id"]))
    return _artifact_response(store, job)


@routes.get("/api/v4/job")
def current_job(ctx: Ctx) -> Response:
    store = ctx.store
    ident = authenticate(store, ctx, job_token=True)
    if ident is None or ident.job is None:
        raise ApiError(401, "401 Unauthorized")
    return json_response(ent.job_entity(store, ctx.base_url, ident.job))


def remove_job_files(store: Store, job_id: int) -> None:
    shutil.rmtree(store.data_dir / "artifacts" / str(job_id), ignore_errors=True)
    trace_path(store, job_id).unlink(missing_ok=True)
