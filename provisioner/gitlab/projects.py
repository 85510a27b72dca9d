"""Groups and projects, and what lives in a project: files, commits, CI/CD variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from provisioner.gitlab.models import Namespace, Project, Variable

if TYPE_CHECKING:
    from provisioner.gitlab.transport import Transport

VARIABLE_HINTS = {403: "Reading CI/CD variables needs the Maintainer role."}


class ProjectsMixin:
    """The namespace, project, repository and variable calls of ``GitLabAPI``."""

    _t: Transport

    # -- namespaces ------------------------------------------------------------------------------

    def resolve_group(self, path_or_id: str) -> Namespace:
        """``GET /groups/:id``: the group's numeric id and full path."""
        response = self._t.require(
            "get",
            f"/groups/{quote(path_or_id, safe='')}",
            query={"with_projects": "false"},
            what=f"looking up group {path_or_id!r}",
            hints={
                404: f"No group {path_or_id!r} is visible to this token: check the full "
                "path (parent/child, case matters) or use group:ID.",
            },
        )
        data = self._t.json(response)
        return Namespace(int(data["id"]), str(data.get("full_path", path_or_id)), "group")

    def resolve_project(self, path_or_id: str) -> Namespace:
        """``GET /projects/:id``: the project's numeric id and full path."""
        response = self._t.require(
            "get",
            f"/projects/{quote(path_or_id, safe='')}",
            what=f"looking up project {path_or_id!r}",
            hints={
                404: f"No project {path_or_id!r} is visible to this token: check the full "
                "path (group/project) or use project:ID.",
            },
        )
        data = self._t.json(response)
        full = data.get("path_with_namespace", path_or_id)
        return Namespace(int(data["id"]), str(full), "project")

    def current_username(self) -> str:
        """``GET /user``: the token owner's username (their personal namespace)."""
        data = self._t.json(self._t.require("get", "/user", what="reading the current user"))
        return str(data["username"])

    # -- projects --------------------------------------------------------------------------------

    def find_project(self, path: str) -> Project | None:
        """``GET /projects/:id``; ``None`` when it does not exist or is invisible."""
        response = self._t.request(
            "get",
            f"/projects/{quote(path, safe='')}",
            what=f"looking up project {path!r}",
            missing=(404,),
        )
        return None if response is None else _project(self._t.json(response))

    def create_project(self, path: str, *, namespace_id: int | None = None) -> Project:
        """``POST /projects`` (private, ``main`` as default branch).

        After a lost answer, the project is looked up by ``path`` before a re-send.
        """
        name = path.rsplit("/", 1)[-1]
        body: dict[str, Any] = {
            "name": name,
            "path": name,
            "visibility": "private",
            "default_branch": "main",
        }
        if namespace_id is not None:
            body["namespace_id"] = namespace_id
        return self._t.create(
            "post",
            "/projects",
            body=body,
            what=f"creating project {path!r}",
            hints={403: "The token's user may not create projects in that namespace."},
            parse=lambda response: _project(self._t.json(response)),
            # Only a full path can be looked up; a bare name is re-sent (GitLab then says 400).
            recover=lambda: self.find_project(path) if "/" in path else None,
        )

    # -- repository ------------------------------------------------------------------------------

    def read_file(self, project_id: int, file_path: str, ref: str) -> str | None:
        """``GET /projects/:id/repository/files/:path/raw``; ``None`` when it does not exist."""
        response = self._t.request(
            "get",
            f"/projects/{project_id}/repository/files/{quote(file_path, safe='')}/raw",
            query={"ref": ref},
            what=f"reading {file_path}",
            missing=(404,),
        )
        return None if response is None else response.text

    def commit_files(
        self,
        project_id: int,
        *,
        branch: str,
        message: str,
        files: Mapping[str, str],
        existing: frozenset[str] = frozenset(),
    ) -> str:
        """``POST /projects/:id/repository/commits``: create or update ``files``; the new sha."""
        actions = [
            {
                "action": "update" if path in existing else "create",
                "file_path": path,
                "content": content,
            }
            for path, content in sorted(files.items())
        ]

        def recover() -> str | None:
            # A commit is atomic: if every file reads back as sent, the lost attempt landed
            # (or changed nothing), and the branch head is the answer.
            if any(self.read_file(project_id, p, branch) != c for p, c in files.items()):
                return None
            return self.branch_head(project_id, branch)

        return self._t.create(
            "post",
            f"/projects/{project_id}/repository/commits",
            body={"branch": branch, "commit_message": message, "actions": actions},
            what=f"committing {len(actions)} files to project {project_id}",
            hints={403: "The token's user needs the Developer role to push to the project."},
            parse=lambda response: str(self._t.json(response)["id"]),
            recover=recover,
        )

    def branch_head(self, project_id: int, branch: str) -> str | None:
        """``GET /projects/:id/repository/branches/:branch``: its commit sha (``None``: none)."""
        response = self._t.request(
            "get",
            f"/projects/{project_id}/repository/branches/{quote(branch, safe='')}",
            what=f"reading branch {branch}",
            missing=(404,),
        )
        return None if response is None else str(self._t.json(response)["commit"]["id"])

    def list_tree(self, project_id: int, ref: str) -> frozenset[str]:
        """Every file path of the repository at ``ref`` (empty for an empty repository)."""
        items = self._t.paginate(
            f"/projects/{project_id}/repository/tree",
            {"ref": ref, "recursive": "true"},
            what="listing the repository",
            missing=(404,),
        )
        return frozenset(str(i["path"]) for i in items if i.get("type") == "blob")

    # -- CI/CD variables -------------------------------------------------------------------------

    def get_variable(self, project_id: int, key: str) -> Variable | None:
        """``GET /projects/:id/variables/:key``; ``None`` when it is not set."""
        response = self._t.request(
            "get",
            f"/projects/{project_id}/variables/{key}",
            what=f"reading CI/CD variable {key}",
            hints=VARIABLE_HINTS,
            missing=(404,),
        )
        return None if response is None else _variable(self._t.json(response))

    def set_variable(self, project_id: int, variable: Variable) -> None:
        """Create (or replace) a project CI/CD variable."""
        body = {
            "key": variable.key,
            "value": variable.value,
            "variable_type": variable.variable_type,
            "masked": variable.masked,
            "protected": variable.protected,
        }
        what = f"setting CI/CD variable {variable.key}"
        hints = {403: "Setting CI/CD variables needs the Maintainer role."}

        def update() -> bool:
            self._t.require(
                "put",
                f"/projects/{project_id}/variables/{variable.key}",
                body=body,
                what=what,
                hints=hints,
            )
            return True

        if self.get_variable(project_id, variable.key) is None:
            self._t.create(
                "post",
                f"/projects/{project_id}/variables",
                body=body,
                what=what,
                hints=hints,
                parse=lambda _response: True,
                # A create whose answer got lost left the variable: replacing it is the same.
                recover=lambda: update() if self.get_variable(project_id, variable.key) else None,
            )
        else:
            update()


# ---------------------------------------------------------------------------------------------
# Parsing


def _project(data: Any) -> Project:
    return Project(
        id=int(data["id"]),
        path_with_namespace=str(data.get("path_with_namespace", "")),
        web_url=str(data.get("web_url", "")),
        default_branch=data.get("default_branch"),
    )


def _variable(data: Any) -> Variable:
    return Variable(
        key=str(data["key"]),
        value=str(data.get("value") or ""),
        variable_type=str(data.get("variable_type") or "env_var"),
        masked=bool(data.get("masked")),
        protected=bool(data.get("protected")),
    )
