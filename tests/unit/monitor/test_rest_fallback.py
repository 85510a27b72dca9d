"""The REST fallback's project listing follows ``X-Next-Page`` and keeps subgroups and filters."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from provisioner.gitlab.client import GitLabAPI
from provisioner.gitlab.models import ConnectionSettings
from provisioner.gitlab.transport import Transport

BASE = "https://gitlab.example"


class Pages(requests.adapters.BaseAdapter):
    """Three projects over two pages, as GitLab pages ``/groups/:id/projects``."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, list[str]]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        query = parse_qs(parts.query)
        self.queries.append(query)
        page = query["page"][0]
        items = [{"id": 1}, {"id": 2}] if page == "1" else [{"id": 3, "jobs_enabled": False}]
        body = [
            {
                "path_with_namespace": f"g/sub/p{i['id']}",
                "web_url": f"{BASE}/g/sub/p{i['id']}",
                "default_branch": "main",
                **i,
            }
            for i in items
        ]
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(body).encode()
        response.headers.update(
            {"Content-Type": "application/json", "X-Next-Page": "2" if page == "1" else ""}
        )
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def test_every_page_is_read_by_x_next_page_with_subgroups_and_no_archived() -> None:
    pages = Pages()
    session = requests.Session()
    session.mount(BASE, pages)
    settings = ConnectionSettings(url=BASE, token="Qq1plainAccessToken2468")
    api = GitLabAPI(settings, transport=Transport(settings, session=session, sleep=lambda _: None))
    projects = list(api.group_projects_rest("g/sub"))
    assert [(p.id, p.full_path, p.ci_enabled) for p in projects] == [
        (1, "g/sub/p1", True),
        (2, "g/sub/p2", True),
        (3, "g/sub/p3", False),
    ]
    assert [q["page"] for q in pages.queries] == [["1"], ["2"]]
    assert all(q["include_subgroups"] == ["true"] for q in pages.queries)
    assert all(q["archived"] == ["false"] for q in pages.queries)
    assert api.request_count == 2
