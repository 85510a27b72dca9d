"""Integration fixtures: one GitLab sandbox for the whole session, on a free loopback port."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.hostlab import bridge_sandbox, lab, vm_lab  # noqa: F401 (shared fixtures)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the shared VMs run last, and the hosts tests first among them.

    The hosts tests provision the VMs from scratch (their first run must change things), so
    nothing else may touch the VMs before them; the other tests on the VMs come after.
    """

    def on_the_vms(item: pytest.Item) -> bool:
        return "vm_lab" in getattr(item, "fixturenames", ())

    def rank(item: pytest.Item) -> int:
        if not on_the_vms(item):
            return 0
        return 1 if "/integration/hosts/" in str(item.path) else 2

    items.sort(key=rank)


@dataclass
class RunningSandbox:
    """A running sandbox: base URL, the root personal access token and helpers for tests."""

    url: str
    root_token: str
    data_dir: Path
    handle: Any
    _names: Iterator[int] = field(default_factory=itertools.count)

    def gitlab(self, token: str | None = None, **kwargs: Any) -> Any:
        """A python-gitlab client (root unless ``token`` is given), already authenticated."""
        import gitlab

        client = gitlab.Gitlab(self.url, private_token=token or self.root_token, **kwargs)
        client.auth()
        return client

    def unique(self, prefix: str) -> str:
        """A name no other test uses in this session."""
        return f"{prefix}-{next(self._names)}"

    def new_project(
        self, *, group: Any = None, files: dict[str, str] | None = None, **attrs: Any
    ) -> Any:
        """A fresh project (in ``group`` or root's namespace), optionally with a first commit."""
        gl = self.gitlab()
        name = self.unique(attrs.pop("name", "proj"))
        body = {"name": name, "path": name, **attrs}
        if group is not None:
            body["namespace_id"] = group.id
        project = gl.projects.create(body)
        if files:
            project.commits.create(
                {
                    "branch": "main",
                    "commit_message": "initial",
                    "actions": [
                        {"action": "create", "file_path": p, "content": c} for p, c in files.items()
                    ],
                }
            )
        return project


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """The GitLab sandbox, started through its documented Python entry point."""
    from provisioner.sandbox import start_background

    handle = start_background(tmp_path_factory.mktemp("gitlab-sandbox"), port=0)
    try:
        yield RunningSandbox(handle.url, handle.root_token, handle.data_dir, handle)
    finally:
        handle.stop()
