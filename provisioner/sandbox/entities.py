"""GitLab's REST entities (``lib/api/entities``) rendered from sandbox rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from provisioner.sandbox.auth import MAINTAINER, project_access
from provisioner.sandbox.state import parse_iso

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

VERSION = "17.11.0"
REVISION = "5a0e4b7c1d2"

ONLINE_CONTACT_TIMEOUT = timedelta(hours=2)
STALE_TIMEOUT = timedelta(days=7)

_PROJECT_DEFAULTS: dict[str, Any] = {
    "tag_list": [],
    "topics": [],
    "avatar_url": None,
    "star_count": 0,
    "forks_count": 0,
    "readme_url": None,
    "marked_for_deletion_at": None,
    "marked_for_deletion_on": None,
    "packages_enabled": True,
    "archived": False,
    "resolve_outdated_diff_discussions": False,
    "repository_object_format": "sha1",
    "issues_enabled": True,
    "merge_requests_enabled": True,
    "wiki_enabled": True,
    "jobs_enabled": True,
    "snippets_enabled": True,
    "container_registry_enabled": False,
    "service_desk_enabled": False,
    "can_create_merge_request_in": True,
    "issues_access_level": "enabled",
    "repository_access_level": "enabled",
    "merge_requests_access_level": "enabled",
    "forking_access_level": "enabled",
    "wiki_access_level": "enabled",
    "builds_access_level": "enabled",
    "snippets_access_level": "enabled",
    "pages_access_level": "private",
    "analytics_access_level": "enabled",
    "container_registry_access_level": "disabled",
    "security_and_compliance_access_level": "private",
    "releases_access_level": "enabled",
    "environments_access_level": "enabled",
    "feature_flags_access_level": "enabled",
    "infrastructure_access_level": "enabled",
    "monitor_access_level": "enabled",
    "model_experiments_access_level": "enabled",
    "model_registry_access_level": "enabled",
    "package_registry_access_level": "enabled",
    "emails_disabled": False,
    "emails_enabled": True,
    "show_diff_preview_in_email": True,
    "lfs_enabled": True,
    "import_status": "none",
    "public_jobs": True,
    "shared_with_groups": [],
    "only_allow_merge_if_pipeline_succeeds": False,
    "allow_merge_on_skipped_pipeline": None,
    "request_access_enabled": True,
    "only_allow_merge_if_all_discussions_are_resolved": False,
    "remove_source_branch_after_merge": True,
    "printing_merge_request_link_enabled": True,
    "merge_method": "merge",
    "squash_option": "default_off",
    "enforce_auth_checks_on_uploads": True,
    "suggestion_commit_message": None,
    "merge_commit_template": None,
    "squash_commit_template": None,
    "issue_branch_template": None,
    "warn_about_potentially_unwanted_characters": True,
    "autoclose_referenced_issues": True,
    "max_artifacts_size": None,
    "requirements_enabled": False,
    "requirements_access_level": "enabled",
    "security_and_compliance_enabled": False,
    "compliance_frameworks": [],
    "build_git_strategy": "fetch",
    "auto_cancel_pending_pipelines": "enabled",
    "ci_forward_deployment_enabled": True,
    "ci_separated_caches": True,
    "ci_allow_fork_pipelines_to_run_in_parent_project": True,
    "auto_devops_enabled": False,
    "open_issues_count": 0,
    "keep_latest_artifact": True,
}


def user_basic(store: Store, base: str, user_id: int | None) -> dict[str, Any] | None:
    if user_id is None:
        return None
    row = store.one("SELECT * FROM users WHERE id = ?", [user_id])
    if row is None:
        return None
    return {
        "id": row["id"],
        "username": row["username"],
        "public_email": None,
        "name": row["name"],
        "state": "active",
        "locked": False,
        "avatar_url": None,
        "web_url": f"{base}/{row['username']}",
    }


def user_full(store: Store, base: str, user_id: int) -> dict[str, Any]:
    basic = user_basic(store, base, user_id)
    assert basic is not None
    row = store.one("SELECT * FROM users WHERE id = ?", [user_id])
    assert row is not None
    basic.update(
        {
            "bio": "",
            "location": "",
            "linkedin": "",
            "twitter": "",
            "discord": "",
            "website_url": "",
            "github": "",
            "job_title": "",
            "pronouns": None,
            "organization": "",
            "bot": False,
            "work_information": None,
            "local_time": None,
            "created_at": row["created_at"],
            "email": row["email"],
            "is_admin": bool(row["is_admin"]),
            "can_create_group": True,
            "can_create_project": True,
            "two_factor_enabled": False,
            "external": False,
            "private_profile": False,
            "namespace_id": row["namespace_id"],
        }
    )
    return basic


def namespace_basic(base: str, ns: Row) -> dict[str, Any]:
    web = f"{base}/groups/{ns['full_path']}" if ns["kind"] == "group" else f"{base}/{ns['path']}"
    return {
        "id": ns["id"],
        "name": ns["name"],
        "path": ns["path"],
        "kind": ns["kind"],
        "full_path": ns["full_path"],
        "parent_id": ns["parent_id"],
        "avatar_url": None,
        "web_url": web,
    }


def repo_exists(store: Store, project: Row) -> bool:
    from provisioner.sandbox import repo

    return repo.has_commits(repo.repo_dir(store, project))


def project_entity(
    store: Store,
    base: str,
    project: Row,
    *,
    viewer_id: int | None = None,
    with_access: bool = False,
    basic: bool = False,
) -> dict[str, Any]:
    ns = store.one("SELECT * FROM namespaces WHERE id = ?", [project["namespace_id"]])
    assert ns is not None
    full_path = f"{ns['full_path']}/{project['path']}"
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    doc: dict[str, Any] = {
        "id": project["id"],
        "description": project["description"],
        "name": project["name"],
        "name_with_namespace": " / ".join(
            [r["name"] for r in reversed(_ancestors(store, ns))] + [project["name"]]
        ),
        "path": project["path"],
        "path_with_namespace": full_path,
        "created_at": project["created_at"],
        "default_branch": project["default_branch"],
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@{host}:{full_path}.git",
        "http_url_to_repo": f"{base}/{full_path}.git",
        "web_url": f"{base}/{full_path}",
        "readme_url": None,
        "forks_count": 0,
        "avatar_url": None,
        "star_count": 0,
        "last_activity_at": project["last_activity_at"],
        "visibility": project["visibility"],
        "namespace": namespace_basic(base, ns),
    }
    if basic:
        return doc
    api = f"{base}/api/v4/projects/{project['id']}"
    doc.update(_PROJECT_DEFAULTS)
    doc.update(
        {
            "_links": {
                "self": api,
                "issues": f"{api}/issues",
                "merge_requests": f"{api}/merge_requests",
                "repo_branches": f"{api}/repository/branches",
                "labels": f"{api}/labels",
                "events": f"{api}/events",
                "members": f"{api}/members",
                "cluster_agents": f"{api}/cluster_agents",
            },
            "empty_repo": not repo_exists(store, project),
            "shared_runners_enabled": bool(project["shared_runners_enabled"]),
            "group_runners_enabled": bool(project["group_runners_enabled"]),
            "creator_id": project["creator_id"],
            "description_html": "",
            "updated_at": project["last_activity_at"],
            "ci_config_path": project["ci_config_path"],
            "ci_default_git_depth": project["ci_default_git_depth"],
            "build_timeout": project["build_timeout"],
            "ci_job_token_scope_enabled": bool(project["job_token_scope_enabled"]),
            "container_registry_image_prefix": f"{host}/{full_path}",
        }
    )
    if viewer_id is not None:
        level = project_access(store, viewer_id, project)
        is_admin = bool(store.scalar("SELECT is_admin FROM users WHERE id = ?", [viewer_id]))
        if level >= MAINTAINER or is_admin:
            doc["runners_token"] = project["runners_token"]
        if with_access:
            direct = store.scalar(
                "SELECT access_level FROM members WHERE source_type='project' AND source_id=? "
                "AND user_id=?",
                [project["id"], viewer_id],
            )
            from provisioner.sandbox.auth import group_access

            grp = group_access(store, viewer_id, project["namespace_id"])
            doc["permissions"] = {
                "project_access": {"access_level": direct, "notification_level": 3}
                if direct
                else None,
                "group_access": {"access_level": grp, "notification_level": 3} if grp else None,
            }
    return doc


def group_entity(
    store: Store, base: str, group: Row, *, detail: bool = False, viewer_id: int | None = None
) -> dict[str, Any]:
    full_name = " / ".join(r["name"] for r in reversed(_ancestors(store, group)))
    doc: dict[str, Any] = {
        "id": group["id"],
        "web_url": f"{base}/groups/{group['full_path']}",
        "name": group["name"],
        "path": group["path"],
        "description": group["description"],
        "visibility": group["visibility"],
        "share_with_group_lock": False,
        "require_two_factor_authentication": False,
        "two_factor_grace_period": 48,
        "project_creation_level": "developer",
        "auto_devops_enabled": None,
        "subgroup_creation_level": "maintainer",
        "emails_disabled": False,
        "emails_enabled": True,
        "show_diff_preview_in_email": True,
        "mentions_disabled": None,
        "lfs_enabled": True,
        "archived": False,
        "math_rendering_limits_enabled": True,
        "lock_math_rendering_limits_enabled": False,
        "default_branch": None,
        "default_branch_protection": 2,
        "default_branch_protection_defaults": {
            "allowed_to_push": [{"access_level": 40}],
            "allow_force_push": False,
            "allowed_to_merge": [{"access_level": 40}],
        },
        "avatar_url": None,
        "request_access_enabled": True,
        "full_name": full_name,
        "full_path": group["full_path"],
        "created_at": group["created_at"],
        "parent_id": group["parent_id"],
        "organization_id": 1,
        "shared_runners_setting": "enabled",
        "max_artifacts_size": None,
        "marked_for_deletion_on": None,
        "ldap_cn": None,
        "ldap_access": None,
        "wiki_access_level": "enabled",
        "shared_with_groups": [],
        "shared_runners_minutes_limit": None,
        "extra_shared_runners_minutes_limit": None,
        "prevent_forking_outside_group": None,
        "membership_lock": False,
    }
    if detail:
        if viewer_id is not None:
            from provisioner.sandbox.auth import OWNER, group_access

            admin = bool(store.scalar("SELECT is_admin FROM users WHERE id = ?", [viewer_id]))
            if admin or group_access(store, viewer_id, group["id"]) >= OWNER:
                doc["runners_token"] = group["runners_token"]
        projects = store.all(
            "SELECT * FROM projects WHERE namespace_id = ? ORDER BY id", [group["id"]]
        )
        doc["projects"] = [project_entity(store, base, p) for p in projects]
        doc["shared_projects"] = []
    return doc


def _ancestors(store: Store, group: Row) -> list[Row]:
    out = [group]
    while out[-1]["parent_id"] is not None:
        parent = store.one("SELECT * FROM namespaces WHERE id = ?", [out[-1]["parent_id"]])
        if parent is None:
            break
        out.append(parent)
    return out


# runners ------------------------------------------------------------------------------------


def runner_status(row: Row, *, rest: bool = True) -> str:
    """GitLab's ``deprecated_rest_status`` (``rest``) or the newer status without ``paused``."""
    now = datetime.now(UTC)
    contacted = parse_iso(row["contacted_at"])
    created = parse_iso(row["created_at"])
    assert created is not None
    latest = max(created, contacted) if contacted else created
    if latest <= now - STALE_TIMEOUT:
        return "stale"
    if contacted is None:
        return "never_contacted"
    if rest and row["paused"]:
        return "paused"
    return "online" if contacted > now - ONLINE_CONTACT_TIMEOUT else "offline"


def runner_online(row: Row) -> bool:
    contacted = parse_iso(row["contacted_at"])
    return contacted is not None and contacted > datetime.now(UTC) - ONLINE_CONTACT_TIMEOUT


def runner_entity(store: Store, base: str, row: Row) -> dict[str, Any]:
    busy = store.one(
        "SELECT 1 FROM jobs WHERE runner_id = ? AND status = 'running' LIMIT 1", [row["id"]]
    )
    return {
        "id": row["id"],
        "description": row["description"],
        "ip_address": None,
        "active": not row["paused"],
        "paused": bool(row["paused"]),
        "is_shared": row["runner_type"] == "instance_type",
        "runner_type": row["runner_type"],
        "name": row["name"],
        "online": runner_online(row),
        "created_by": user_basic(store, base, row["created_by"]),
        "created_at": row["created_at"],
        "status": runner_status(row),
        "job_execution_status": "active" if busy else "idle",
    }


def runner_details(store: Store, base: str, row: Row) -> dict[str, Any]:
    doc = runner_entity(store, base, row)
    projects = store.all(
        "SELECT p.* FROM projects p JOIN runner_projects rp ON rp.project_id = p.id "
        "WHERE rp.runner_id = ? ORDER BY rp.rowid",
        [row["id"]],
    )
    groups = []
    if row["group_id"] is not None:
        grp = store.one("SELECT * FROM namespaces WHERE id = ?", [row["group_id"]])
        if grp is not None:
            groups.append(
                {
                    "id": grp["id"],
                    "web_url": f"{base}/groups/{grp['full_path']}",
                    "name": grp["name"],
                }
            )
    doc.update(
        {
            "tag_list": json.loads(row["tag_list"]),
            "run_untagged": bool(row["run_untagged"]),
            "locked": bool(row["locked"]),
            "maximum_timeout": row["maximum_timeout"],
            "access_level": row["access_level"],
            "version": row["version"],
            "revision": row["revision"],
            "platform": row["platform"],
            "architecture": row["architecture"],
            "contacted_at": row["contacted_at"],
            "maintenance_note": row["maintenance_note"],
            "projects": [project_entity(store, base, p, basic=True) for p in projects],
            "groups": groups,
        }
    )
    return doc


# pipelines and jobs -------------------------------------------------------------------------

_STATUS_LABELS = {
    "waiting_for_resource": ("waiting-for-resource", "Waiting", "waiting for resource"),
    "created": ("created", "Created", "created"),
    "pending": ("pending", "Pending", "pending"),
    "running": ("running", "Running", "running"),
    "success": ("success", "Passed", "passed"),
    "failed": ("failed", "Failed", "failed"),
    "canceled": ("canceled", "Canceled", "canceled"),
    "skipped": ("skipped", "Skipped", "skipped"),
    "manual": ("manual", "Manual", "manual action"),
    "canceling": ("canceling", "Canceling", "canceling"),
}


def detailed_status(status: str, path: str) -> dict[str, Any]:
    group, text, label = _STATUS_LABELS.get(status, (status, status.title(), status))
    return {
        "icon": f"status_{group}",
        "text": text,
        "label": label,
        "group": group,
        "tooltip": label,
        "has_details": True,
        "details_path": path,
        "illustration": None,
        "favicon": f"/assets/ci_favicons/favicon_status_{group}.png",
    }


def project_path_of(store: Store, project_id: int) -> str:
    row = store.one(
        "SELECT n.full_path || '/' || p.path AS fp FROM projects p "
        "JOIN namespaces n ON n.id = p.namespace_id WHERE p.id = ?",
        [project_id],
    )
    assert row is not None
    return str(row["fp"])


def pipeline_basic(store: Store, base: str, row: Row) -> dict[str, Any]:
    path = project_path_of(store, row["project_id"])
    return {
        "id": row["id"],
        "iid": row["iid"],
        "project_id": row["project_id"],
        "sha": row["sha"],
        "ref": row["ref"],
        "status": row["status"],
        "source": row["source"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "web_url": f"{base}/{path}/-/pipelines/{row['id']}",
    }


def _seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_iso(start), parse_iso(end)
    if a is None:
        return None
    b = b or datetime.now(UTC)
    return (b - a).total_seconds()


def pipeline_entity(store: Store, base: str, row: Row) -> dict[str, Any]:
    doc = pipeline_basic(store, base, row)
    path = project_path_of(store, row["project_id"])
    duration = (
        _seconds_between(row["started_at"], row["finished_at"]) if row["finished_at"] else None
    )
    queued = _seconds_between(row["created_at"], row["started_at"]) if row["started_at"] else None
    doc.update(
        {
            "before_sha": row["before_sha"],
            "tag": bool(row["tag"]),
            "yaml_errors": row["yaml_errors"],
            "user": user_basic(store, base, row["user_id"]),
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "committed_at": None,
            "duration": int(duration) if duration is not None else None,
            "queued_duration": int(queued) if queued is not None else None,
            "coverage": None,
            "detailed_status": detailed_status(row["status"], f"/{path}/-/pipelines/{row['id']}"),
            "archived": False,
            "name": None,
        }
    )
    return doc


def commit_entity(store: Store, base: str, project: Row, sha: str) -> dict[str, Any]:
    from provisioner.sandbox import repo

    info = repo.commit_info(repo.repo_dir(store, project), sha)
    path = project_path_of(store, project["id"])
    return {
        "id": info.sha,
        "short_id": info.sha[:8],
        "created_at": info.committed_date,
        "parent_ids": list(info.parents),
        "title": info.message.split("\n", 1)[0],
        "message": info.message,
        "author_name": info.author_name,
        "author_email": info.author_email,
        "authored_date": info.authored_date,
        "committer_name": info.committer_name,
        "committer_email": info.committer_email,
        "committed_date": info.committed_date,
        "trailers": {},
        "extended_trailers": {},
        "web_url": f"{base}/{path}/-/commit/{info.sha}",
    }


def job_entity(store: Store, base: str, row: Row) -> dict[str, Any]:
    pipeline = store.one("SELECT * FROM pipelines WHERE id = ?", [row["pipeline_id"]])
    project = store.one("SELECT * FROM projects WHERE id = ?", [row["project_id"]])
    assert pipeline is not None
    assert project is not None
    path = project_path_of(store, row["project_id"])
    spec = json.loads(row["spec"])
    arts = store.all("SELECT * FROM artifacts WHERE job_id = ? ORDER BY id", [row["id"]])
    archive = next((a for a in arts if a["file_type"] == "archive"), None)
    runner = None
    if row["runner_id"] is not None:
        rrow = store.one("SELECT * FROM runners WHERE id = ?", [row["runner_id"]])
        runner = runner_entity(store, base, rrow) if rrow is not None else None
    duration = _seconds_between(row["started_at"], row["finished_at"])
    queued = _seconds_between(row["queued_at"], row["started_at"]) if row["queued_at"] else None
    commit: dict[str, Any] | None
    try:
        commit = commit_entity(store, base, project, pipeline["sha"])
    except Exception:  # a pruned commit must not break the job view
        commit = None
    user = user_full(store, base, row["user_id"]) if row["user_id"] is not None else None
    return {
        "id": row["id"],
        "status": row["status"],
        "stage": row["stage"],
        "name": row["name"],
        "ref": pipeline["ref"],
        "tag": bool(pipeline["tag"]),
        "coverage": row["coverage"],
        "allow_failure": bool(row["allow_failure"]),
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "erased_at": None,
        "duration": duration,
        "queued_duration": queued,
        "user": user,
        "commit": commit,
        "pipeline": pipeline_basic(store, base, pipeline),
        "failure_reason": row["failure_reason"],
        "web_url": f"{base}/{path}/-/jobs/{row['id']}",
        "project": {"ci_job_token_scope_enabled": bool(project["job_token_scope_enabled"])},
        **(
            {"artifacts_file": {"filename": archive["filename"], "size": archive["size"]}}
            if archive is not None
            else {}
        ),
        "artifacts": [
            {
                "file_type": a["file_type"],
                "size": a["size"],
                "filename": a["filename"],
                "file_format": a["file_format"],
            }
            for a in arts
        ],
        "runner": runner,
        "runner_manager": None,
        "artifacts_expire_at": archive["expire_at"] if archive is not None else None,
        "archived": False,
        "tag_list": list(spec.get("tags", [])),
    }
