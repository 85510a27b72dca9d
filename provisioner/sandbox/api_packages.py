"""Package registries: PyPI (twine upload, pip simple index) and generic packages."""

from __future__ import annotations

import hashlib
import html
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from provisioner.sandbox.auth import (
    DEVELOPER,
    INSUFFICIENT_SCOPE,
    MAINTAINER,
    Identity,
    authenticate,
    load_project,
)
from provisioner.sandbox.state import now_iso
from provisioner.sandbox.web import (
    ApiError,
    Ctx,
    RouteTable,
    bad_request,
    json_response,
    missing_param,
    not_found,
    paginate,
    to_int,
)

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store

PACKAGES_REALM = 'Basic realm="GitLab Packages Registry"'
GENERIC_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]+$")
GENERIC_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
MAX_FILE_BYTES = 512 << 20
PACKAGE_TYPES = ("pypi", "generic")


routes = RouteTable()


def normalize(name: str) -> str:
    """PEP 503 normalisation (how GitLab looks PyPI packages up)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _caller(ctx: Ctx, *, basic_only: bool) -> Identity | None:
    """Packages take Basic (PAT or ``gitlab-ci-token:<job token>``); generic also headers."""
    store = ctx.store
    if basic_only and (ctx.header("private-token") or ctx.header("job-token")):
        return None
    try:
        return authenticate(store, ctx, job_token=True, basic=True)
    except ApiError as exc:
        raise _challenge() from exc


def _challenge() -> ApiError:
    return ApiError(401, "401 Unauthorized", headers={"WWW-Authenticate": PACKAGES_REALM})


def _project(ctx: Ctx, *, write: bool, basic_only: bool) -> Row:
    store = ctx.store
    ident = _caller(ctx, basic_only=basic_only)
    project_ref = ctx.params["id"]
    if ident is None:
        from provisioner.sandbox.auth import find_project

        project = find_project(store, project_ref)
        if project is not None and project["visibility"] == "public" and not write:
            return project
        raise _challenge()
    if not ident.is_job:
        allowed = (
            {"api", "write_registry", "write_package_registry"}
            if write
            else {
                "api",
                "read_api",
                "read_registry",
                "read_package_registry",
                "write_package_registry",
            }
        )
        if not ident.scopes & allowed:
            raise ApiError(403, body=dict(INSUFFICIENT_SCOPE))
    return load_project(store, ident, project_ref, min_level=DEVELOPER if write else 20)


def _file_doc(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "package_id": row["package_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "size": row["size"],
        "file_store": 1,
        "file_md5": row["md5"],
        "file_sha1": row["sha1"],
        "file_sha256": row["sha256"],
        "file_name": row["file_name"],
        "file": {"url": f"/{row['file_name']}"},
        "pipelines": [],
    }


def _store_file(
    store: Store,
    package_id: int,
    file_name: str,
    data: bytes,
    requires_python: str | None,
) -> int:
    folder = store.data_dir / "packages" / str(package_id)
    folder.mkdir(parents=True, exist_ok=True)
    now = now_iso()
    fid = store.insert(
        "package_files",
        {
            "package_id": package_id,
            "file_name": file_name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(),  # noqa: S324 - GitLab reports md5 as metadata
            "sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - likewise
            "path": "",
            "requires_python": requires_python,
            "created_at": now,
            "updated_at": now,
        },
    )
    path = folder / f"{fid}-{Path(file_name).name}"
    path.write_bytes(data)
    store.run("UPDATE package_files SET path = ? WHERE id = ?", [str(path), fid])
    return fid


def _package(
    store: Store,
    project_id: int,
    *,
    kind: str,
    name: str,
    version: str,
    pipeline_id: int | None,
    status: str = "default",
) -> int:
    norm = normalize(name) if kind == "pypi" else name
    row = store.one(
        "SELECT id FROM packages WHERE project_id = ? AND package_type = ? AND "
        "normalized_name = ? AND version = ?",
        [project_id, kind, norm, version],
    )
    if row is not None:
        return int(row["id"])
    return store.insert(
        "packages",
        {
            "project_id": project_id,
            "name": name,
            "normalized_name": norm,
            "version": version,
            "package_type": kind,
            "status": status,
            "created_at": now_iso(),
            "pipeline_id": pipeline_id,
        },
    )


def _pipeline_of(ctx: Ctx) -> int | None:
    ident = _caller(ctx, basic_only=False)
    return int(ident.job["pipeline_id"]) if ident is not None and ident.job is not None else None


# PyPI ---------------------------------------------------------------------------------------


@routes.post("/api/v4/projects/{id}/packages/pypi")
def pypi_upload(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=True, basic_only=True)
    upload = ctx.files.get("content")
    if upload is None:
        raise missing_param("content")
    name = (ctx.form.get("name") or [""])[-1]
    version = (ctx.form.get("version") or [""])[-1]
    if not name:
        raise missing_param("name")
    if not version:
        raise missing_param("version")
    if len(upload.content) > MAX_FILE_BYTES:
        raise bad_request("File is too large")
    digest = (ctx.form.get("sha256_digest") or [""])[-1]
    if digest and not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ApiError(400, "sha256_digest is invalid", key="error")
    if digest and digest.lower() != hashlib.sha256(upload.content).hexdigest():
        raise bad_request("sha256_digest does not match the file")
    file_name = Path(upload.filename or "").name
    requires_python = (ctx.form.get("requires_python") or [""])[-1] or None
    with store.tx():
        pkg = _package(
            store,
            project["id"],
            kind="pypi",
            name=name,
            version=version,
            pipeline_id=_pipeline_of(ctx),
        )
        if store.one(
            "SELECT 1 FROM package_files WHERE package_id = ? AND file_name = ?", [pkg, file_name]
        ):
            raise bad_request("Validation failed: File name has already been taken")
        _store_file(store, pkg, file_name, upload.content, requires_python)
    return json_response({"message": "201 Created"}, 201)


_SIMPLE_PAGE = """        <!DOCTYPE html>
        <html>
          <head>
            <title>Links for {name}</title>
          </head>
          <body>
            <h1>Links for {name}</h1>
            {links}
          </body>
        </html>
"""


@routes.get("/api/v4/projects/{id}/packages/pypi/simple/{package_name:path}")
def pypi_simple_package(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=False, basic_only=True)
    wanted = normalize(ctx.params["package_name"].strip("/"))
    packages = store.all(
        "SELECT * FROM packages WHERE project_id = ? AND package_type = 'pypi' "
        "AND normalized_name = ? AND status = 'default' ORDER BY id",
        [project["id"], wanted],
    )
    if not packages:
        raise not_found("Package")
    base = f"{ctx.api_url}/projects/{project['id']}/packages/pypi/files"
    links = []
    for pkg in packages:
        for f in store.all(
            "SELECT * FROM package_files WHERE package_id = ? ORDER BY id", [pkg["id"]]
        ):
            href = f"{base}/{f['sha256']}/{f['file_name']}#sha256={f['sha256']}"
            links.append(
                f'<a href="{html.escape(href)}" data-requires-python='
                f'"{html.escape(f["requires_python"] or "")}">{html.escape(f["file_name"])}</a>'
            )
    body = _SIMPLE_PAGE.format(name=html.escape(packages[0]["name"]), links="".join(links))
    return Response(body, media_type="text/html; charset=utf-8")


@routes.get("/api/v4/projects/{id}/packages/pypi/simple")
@routes.get("/api/v4/projects/{id}/packages/pypi/simple/")
def pypi_simple_index(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=False, basic_only=True)
    rows = store.all(
        "SELECT DISTINCT name, normalized_name FROM packages WHERE project_id = ? "
        "AND package_type = 'pypi' AND status = 'default' ORDER BY normalized_name",
        [project["id"]],
    )
    base = f"{ctx.api_url}/projects/{project['id']}/packages/pypi/simple"
    links = "".join(
        f'<a href="{base}/{r["normalized_name"]}" data-requires-python="">'
        f"{html.escape(r['name'])}</a><br>"
        for r in rows
    )
    body = _SIMPLE_PAGE.format(name=html.escape(project["name"]), links=links)
    return Response(body, media_type="text/html; charset=utf-8")


@routes.get("/api/v4/projects/{id}/packages/pypi/files/{sha256}/{file_identifier:path}")
def pypi_file(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=False, basic_only=True)
    sha256 = ctx.params["sha256"]
    file_name = ctx.params["file_identifier"].rsplit("/", 1)[-1]
    row = store.one(
        "SELECT f.* FROM package_files f JOIN packages p ON p.id = f.package_id "
        "WHERE p.project_id = ? AND p.package_type = 'pypi' AND f.sha256 = ? AND f.file_name = ?",
        [project["id"], sha256, file_name],
    )
    if row is None:
        raise not_found()
    return Response(
        Path(row["path"]).read_bytes(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


# generic ------------------------------------------------------------------------------------


def _generic_parts(ctx: Ctx) -> tuple[str, str, str]:
    name, version = ctx.params["package_name"], ctx.params["package_version"]
    file_path = ctx.params["file_path"]
    file_name = file_path.rsplit("/", 1)[-1]
    if not GENERIC_NAME_RE.match(name) or name.startswith("."):
        raise ApiError(400, "package_name is invalid", key="error")
    if not GENERIC_VERSION_RE.match(version):
        raise ApiError(400, "package_version is invalid", key="error")
    if (
        not file_name
        or not GENERIC_NAME_RE.match(file_name)
        or any(part in ("", ".", "..") for part in file_path.split("/"))
    ):
        raise ApiError(400, "file_name is invalid", key="error")
    return name, version, file_path


@routes.put(
    "/api/v4/projects/{id}/packages/generic/{package_name}/{package_version}/{file_path:path}"
)
def generic_put(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=True, basic_only=False)
    name, version, file_path = _generic_parts(ctx)
    if len(ctx.body) > MAX_FILE_BYTES:
        raise bad_request("File is too large")
    status = ctx.query("status") or "default"
    if status not in ("default", "hidden"):
        raise ApiError(400, "status does not have a valid value", key="error")
    with store.tx():
        pkg = _package(
            store,
            project["id"],
            kind="generic",
            name=name,
            version=version,
            pipeline_id=_pipeline_of(ctx),
            status=status,
        )
        fid = _store_file(store, pkg, file_path, ctx.body, None)
    if ctx.query("select") == "package_file":
        row = store.one("SELECT * FROM package_files WHERE id = ?", [fid])
        assert row is not None
        return json_response(_file_doc(row), 200)
    return json_response({"message": "201 Created"}, 201)


@routes.get(
    "/api/v4/projects/{id}/packages/generic/{package_name}/{package_version}/{file_path:path}"
)
def generic_get(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=False, basic_only=False)
    name, version, file_path = _generic_parts(ctx)
    row = store.one(
        "SELECT f.* FROM package_files f JOIN packages p ON p.id = f.package_id "
        "WHERE p.project_id = ? AND p.package_type = 'generic' AND p.name = ? AND p.version = ? "
        "AND f.file_name = ? ORDER BY f.id DESC LIMIT 1",
        [project["id"], name, version, file_path],
    )
    if row is None:
        raise not_found("Package")
    return Response(
        Path(row["path"]).read_bytes(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{file_path.rsplit("/", 1)[-1]}"'},
    )


# listing ------------------------------------------------------------------------------------


def _package_doc(store: Store, ctx: Ctx, row: Row) -> dict[str, Any]:
    from provisioner.sandbox.entities import project_path_of

    path = project_path_of(store, row["project_id"])
    api = f"/api/v4/projects/{row['project_id']}/packages/{row['id']}"
    return {
        "id": row["id"],
        "name": row["name"],
        "version": row["version"],
        "package_type": row["package_type"],
        "status": row["status"],
        "_links": {
            "web_path": f"/{path}/-/packages/{row['id']}",
            "delete_api_path": f"{ctx.base_url}{api}",
        },
        "created_at": row["created_at"],
        "last_downloaded_at": None,
        "conan_package_name": None,
        "pipeline": None,
        "pipelines": [],
        "tags": [],
    }


@routes.get("/api/v4/projects/{id}/packages")
def list_packages(ctx: Ctx) -> Response:
    store = ctx.store
    project = _project(ctx, write=False, basic_only=False)
    rows = store.all("SELECT * FROM packages WHERE project_id = ? ORDER BY id", [project["id"]])
    kind = ctx.query("package_type")
    if kind is not None and kind not in PACKAGE_TYPES:
        raise ApiError(400, "package_type does not have a valid value", key="error")
    name = ctx.query("package_name")
    version = ctx.query("package_version")
    rows = [
        r
        for r in rows
        if (kind is None or r["package_type"] == kind)
        and (name is None or name.lower() in r["name"].lower())
        and (version is None or r["version"] == version)
        and (r["status"] == "default" or ctx.query("status") == r["status"])
    ]
    order_by = ctx.query("order_by") or "created_at"
    if order_by not in ("created_at", "name", "version", "type"):
        raise ApiError(400, "order_by does not have a valid value", key="error")
    column = "package_type" if order_by == "type" else order_by
    rows.sort(key=lambda r: (r[column], r["id"]), reverse=ctx.query("sort") == "desc")
    return paginate(ctx, rows, lambda r: _package_doc(store, ctx, r))


def _one_package(ctx: Ctx, *, write: bool) -> tuple[Store, Row]:
    store = ctx.store
    ident = _caller(ctx, basic_only=False)
    if ident is None:
        raise ApiError(401, "401 Unauthorized")
    project = load_project(store, ident, ctx.params["id"], min_level=MAINTAINER if write else 20)
    pid = to_int(ctx.params["package_id"], "package_id")
    row = store.one("SELECT * FROM packages WHERE id = ? AND project_id = ?", [pid, project["id"]])
    if row is None:
        raise not_found()
    return store, row


@routes.get("/api/v4/projects/{id}/packages/{package_id}")
def get_package(ctx: Ctx) -> Response:
    store, row = _one_package(ctx, write=False)
    return json_response(_package_doc(store, ctx, row))


@routes.get("/api/v4/projects/{id}/packages/{package_id}/package_files")
def package_files(ctx: Ctx) -> Response:
    store, row = _one_package(ctx, write=False)
    files = store.all("SELECT * FROM package_files WHERE package_id = ? ORDER BY id", [row["id"]])
    return paginate(ctx, files, _file_doc)


@routes.delete("/api/v4/projects/{id}/packages/{package_id}")
def delete_package(ctx: Ctx) -> Response:
    store, row = _one_package(ctx, write=True)
    with store.tx():
        store.run("DELETE FROM package_files WHERE package_id = ?", [row["id"]])
        store.run("DELETE FROM packages WHERE id = ?", [row["id"]])
    shutil.rmtree(store.data_dir / "packages" / str(row["id"]), ignore_errors=True)
    return Response(status_code=204)
