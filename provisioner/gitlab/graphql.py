"""GitLab's GraphQL API (``POST /api/graphql``), over the same auth and transport as REST.

- :meth:`GraphQL.query` sends one document and returns its ``data`` with the
  ``queryComplexity`` GitLab scored (when the query asks for it);
- :meth:`GraphQL.pages` / :meth:`GraphQL.nodes` follow ``pageInfo { hasNextPage endCursor }``
  of one connection, named by its path in ``data``, feeding ``endCursor`` back as ``$after``;
- an answer with ``errors`` becomes a :class:`~provisioner.errors.GitLabError` that names the
  query's operation.

Queries are retried like REST reads; a ``mutation`` is sent once (429 aside).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.errors import GitLabError
from provisioner.secrets import redact

if TYPE_CHECKING:
    from provisioner.gitlab.transport import Transport

GRAPHQL_PATH = "/api/graphql"
_OPERATION = re.compile(r"^\s*(query|mutation|subscription)\b\s*([_A-Za-z][_0-9A-Za-z]*)?")
_COMMENT = re.compile(r"#[^\n]*")


@dataclass(frozen=True)
class QueryComplexity:
    """GitLab's static score of a query, and the most it allows for this caller."""

    score: int
    limit: int


@dataclass(frozen=True)
class GraphQLResult:
    """One answer: its ``data`` and, if the query selected it, ``queryComplexity``."""

    data: Mapping[str, Any] = field(repr=False)
    complexity: QueryComplexity | None = None


def operation_of(document: str) -> tuple[str, str]:
    """The operation type (``query``, ``mutation``) and name of ``document`` (``anonymous``)."""
    match = _OPERATION.match(_COMMENT.sub("", document))
    if match is None:
        return "query", "anonymous"  # the shorthand `{ … }` is a query
    return match.group(1), match.group(2) or "anonymous"


class GraphQL:
    """GraphQL calls through a :class:`~provisioner.gitlab.transport.Transport`."""

    def __init__(self, transport: Transport, *, max_pages: int = 1000) -> None:
        self._t = transport
        self.max_pages = max_pages

    @property
    def url(self) -> str:
        """The endpoint: beside ``/api/v4``, not under it."""
        return self._t.settings.url.rstrip("/") + GRAPHQL_PATH

    def query(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        *,
        operation_name: str | None = None,
    ) -> GraphQLResult:
        """Run ``document`` with ``variables``; its data and complexity.

        Raises:
            GitLabError: for an HTTP failure, or when GitLab answers with ``errors``.
        """
        kind, name = operation_of(document)
        name = operation_name or name
        body: dict[str, Any] = {"query": document, "variables": dict(variables or {})}
        if operation_name is not None:
            body["operationName"] = operation_name
        response = self._t.require(
            "post",
            self.url,
            body=body,
            what=f"running GraphQL {kind} {name}",
            hints={
                404: "This GitLab serves no GraphQL API at /api/graphql: check --gitlab-url "
                "(the instance's address, without /api/v4).",
            },
            idempotent=kind == "query",
        )
        answer = self._t.json(response)
        if not isinstance(answer, dict):
            raise GitLabError(f"GitLab sent no GraphQL answer to {kind} {name}.")
        errors = answer.get("errors")
        if errors:
            raise _error(kind, name, errors)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise GitLabError(f"GitLab's answer to GraphQL {kind} {name} has no data.")
        return GraphQLResult(data, _complexity(data.get("queryComplexity")))

    def pages(
        self, document: str, variables: Mapping[str, Any] | None, path: Sequence[str]
    ) -> Iterator[GraphQLResult]:
        """Every page of the connection at ``path`` (e.g. ``("group", "projects")``).

        ``document`` must declare ``$after: String`` and select ``pageInfo { hasNextPage
        endCursor }`` on that connection. A ``null`` on the path (an unknown group) ends the
        pages after the first.
        """
        after: str | None = None
        _, name = operation_of(document)
        for _page in range(self.max_pages):
            result = self.query(document, {**dict(variables or {}), "after": after})
            yield result
            connection = _walk(result.data, path)
            if connection is None:
                return
            info = connection.get("pageInfo")
            if not isinstance(info, dict):
                raise GitLabError(
                    f"GraphQL query {name} selects no pageInfo on {'.'.join(path)}.",
                    hint="Select pageInfo { hasNextPage endCursor } on the paged connection.",
                )
            cursor = info.get("endCursor")
            if not info.get("hasNextPage") or not cursor:
                return
            if cursor == after:
                raise GitLabError(f"GitLab repeated the cursor of query {name}; stopping.")
            after = str(cursor)
        raise GitLabError(f"GraphQL query {name} had more than {self.max_pages} pages; stopping.")

    def nodes(
        self, document: str, variables: Mapping[str, Any] | None, path: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """The ``nodes`` of every page of the connection at ``path``."""
        for page in self.pages(document, variables, path):
            connection = _walk(page.data, path)
            if connection is None:
                return
            yield from (n for n in connection.get("nodes") or () if isinstance(n, dict))


def _walk(data: Mapping[str, Any], path: Sequence[str]) -> dict[str, Any] | None:
    node: Any = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def _complexity(value: Any) -> QueryComplexity | None:
    if not isinstance(value, dict):
        return None
    try:
        return QueryComplexity(score=int(value["score"]), limit=int(value["limit"]))
    except (KeyError, TypeError, ValueError):
        return None


def _error(kind: str, name: str, errors: Any) -> GitLabError:
    items = errors if isinstance(errors, list) else [errors]
    messages = [
        str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in items if e
    ] or ["unknown error"]
    text = redact("; ".join(messages))[:500]
    lowered = text.lower()
    if "complexity" in lowered or "depth" in lowered:
        hint = "Ask for fewer fields or fewer nodes per page (a smaller first:)."
    elif "invalid token" in lowered or "authentication" in lowered:
        hint = "The access token was refused; check GITLAB_TOKEN or --token-file."
    elif "cursor" in lowered:
        hint = "The page cursor is stale or invalid; start again without $after."
    else:
        hint = "GitLab's schema may differ from what runnerctl expects; check its version."
    return GitLabError(f"GitLab refused GraphQL {kind} {name}: {text}", hint=hint)
