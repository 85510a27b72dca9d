"""Package registries: the package list, generic files and the PyPI simple index."""

from __future__ import annotations

import re
from html import unescape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from provisioner.errors import GitLabError
from provisioner.gitlab.models import ConnectionSettings, DistFile, Package, parse_time

if TYPE_CHECKING:
    from provisioner.gitlab.transport import Transport

_SIMPLE_LINK = re.compile(r'<a href="([^"#]+)#sha256=([0-9a-f]{64})"[^>]*>([^<]+)</a>')


class PackagesMixin:
    """The package registry calls of ``GitLabAPI``."""

    _t: Transport
    settings: ConnectionSettings

    def list_packages(
        self, project_id: int, *, package_name: str | None = None, package_type: str | None = None
    ) -> tuple[Package, ...]:
        """``GET /projects/:id/packages`` filtered by name and type."""
        query: dict[str, Any] = {}
        if package_name:
            query["package_name"] = package_name
        if package_type:
            query["package_type"] = package_type
        items = self._t.paginate(f"/projects/{project_id}/packages", query, what="listing packages")
        return tuple(_package(item) for item in items)

    def delete_package(self, project_id: int, package_id: int) -> bool:
        """``DELETE /projects/:id/packages/:package_id``; ``False`` when it was gone."""
        response = self._t.request(
            "delete",
            f"/projects/{project_id}/packages/{package_id}",
            what=f"deleting package {package_id}",
            missing=(404,),
        )
        return response is not None

    def download_generic(
        self, project_id: int, package_name: str, version: str, file_name: str
    ) -> bytes | None:
        """``GET …/packages/generic/:name/:version/:file``; ``None`` when it is not there."""
        path = (
            f"/projects/{project_id}/packages/generic/"
            f"{quote(package_name, safe='')}/{quote(version, safe='')}/{quote(file_name)}"
        )
        response = self._t.request("get", path, what=f"downloading {file_name}", missing=(404,))
        return None if response is None else bytes(response.content)

    def pypi_files(self, project_id: int, package_name: str) -> tuple[DistFile, ...]:
        """The links of the project's PyPI simple index for ``package_name`` (empty on 404).

        The PyPI endpoints take HTTP Basic only (any user name, the token as password).
        """
        url = f"{self.settings.api_url}/projects/{project_id}/packages/pypi/simple/{package_name}/"
        response = self._t.basic_get(url, what=f"reading the PyPI index of {package_name}")
        if response is None:
            return ()
        return tuple(
            DistFile(unescape(name), unescape(href), digest)
            for href, digest, name in _SIMPLE_LINK.findall(response.text)
        )

    def download_url(self, url: str) -> bytes:
        """Download a registry file by absolute URL (a simple-index link), with Basic auth."""
        if urlsplit(url).netloc != urlsplit(self.settings.url).netloc:
            raise GitLabError(
                f"The registry link {url} points away from {self.settings.url}.",
                hint="Set GitLab's external URL to the address runnerctl uses.",
            )
        response = self._t.basic_get(url, what="downloading a package file")
        if response is None:
            raise GitLabError(f"GitLab has no file at {url}.")
        return bytes(response.content)


def _package(data: Any) -> Package:
    return Package(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        version=str(data.get("version", "")),
        package_type=str(data.get("package_type", "")),
        created_at=parse_time(data.get("created_at")),
    )
