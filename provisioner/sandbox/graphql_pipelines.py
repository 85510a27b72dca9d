"""GraphQL additions for ``runnerctl pipelines``: ``Project.repository`` and friends.

``repository { rootRef }`` is the project's default branch, ``null`` while the repository is
empty (GitLab's ``Repository#root_ref``); the monitor reads it to pick each project's
default-branch pipeline. ``archived`` and ``jobsEnabled`` (always true: the sandbox has no
CI/CD switch) come along. ``Group.projects(includeArchived: false)`` leaves archived projects
out (the filter lives with the ``projects`` resolver in :mod:`.graphql_api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioner.sandbox.graphql_api import GqlProject

EXTENSION_SDL = """
type Repository {
  rootRef: String
  empty: Boolean!
  exists: Boolean!
}

extend type Project {
  repository: Repository
  archived: Boolean
  jobsEnabled: Boolean
}
"""


def project_fields(project: GqlProject) -> dict[str, Any]:
    """The extra fields of a ``Project`` node."""
    empty = project.default_branch is None
    return {
        "repository": {
            "rootRef": project.default_branch,
            "empty": empty,
            "exists": not empty,
        },
        "archived": project.archived,
        "jobsEnabled": True,  # the sandbox has no switch for CI/CD
    }
