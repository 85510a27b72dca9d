"""HTTP plumbing shared by every sandbox route: the request context, errors, pagination.

Routes match the *raw* request path, because GitLab's ``:id`` is "ID or URL-encoded path"
(``grp%2Fsub%2Fproj``) and most frameworks decode ``%2F`` before routing.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.responses import Response

if TYPE_CHECKING:
    from provisioner.sandbox.state import Row, Store


class ApiError(Exception):
    """Turns into GitLab's JSON error body: ``{"message": ...}`` or ``{"error": ...}``."""

    def __init__(
        self,
        status: int,
        message: Any = None,
        *,
        key: str = "message",
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.key = key
        self.headers = headers or {}
        self.body = body

    def response(self) -> Response:
        body = self.body if self.body is not None else {self.key: self.message}
        return json_response(body, self.status, headers=self.headers)


def not_found(what: str = "") -> ApiError:
    """GitLab's ``not_found!(resource)``: ``404 Project Not Found`` or plain ``404 Not Found``."""
    return ApiError(404, f"404 {what} Not Found" if what else "404 Not Found")


def forbidden(reason: str = "") -> ApiError:
    return ApiError(403, f"403 Forbidden - {reason}" if reason else "403 Forbidden")


def unauthorized() -> ApiError:
    return ApiError(401, "401 Unauthorized")


def bad_request(reason: str) -> ApiError:
    return ApiError(400, f"400 Bad request - {reason}")


def missing_param(name: str) -> ApiError:
    """Grape's parameter validation error."""
    return ApiError(400, f"{name} is missing", key="error")


def invalid_param(name: str) -> ApiError:
    return ApiError(400, f"{name} is invalid", key="error")


def json_response(
    body: Any, status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def parse_json_body(body: bytes) -> Any:
    """A JSON request body, or GitLab's 400 for one that is not valid (UTF-8) JSON.

    Python's decoder accepts lone surrogates (``"\\ud800"``) that no UTF-8 store can hold;
    Rails refuses them while parsing, so they are refused here too.
    """
    try:
        parsed = json.loads(body)
        json.dumps(parsed, ensure_ascii=False).encode()
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise ApiError(400, "400 Bad request - Invalid JSON") from exc
    return parsed


@dataclass
class UploadedFile:
    filename: str
    content: bytes
    content_type: str


@dataclass
class Ctx:
    """Everything a (synchronous) route handler needs about the request."""

    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    scheme: str
    host: str
    params: dict[str, str] = field(default_factory=dict)
    form: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)
    _json: Any = None
    app: Any = None

    @property
    def store(self) -> Store:
        """The sandbox's state (the app's SQLite store)."""
        store: Store = self.app.store
        return store

    @property
    def base_url(self) -> str:
        """The external URL as the client reached us (GitLab builds links from its own)."""
        forced = getattr(self.app, "external_url", None)
        return forced or f"{self.scheme}://{self.host}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/v4"

    def query_items(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query_string, keep_blank_values=True)

    def query(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query_items():
            if key == name:
                return value
        return default

    def query_list(self, name: str) -> list[str]:
        return [v for k, v in self.query_items() if k in (name, name + "[]")]

    def json(self) -> dict[str, Any]:
        if self._json is None:
            self._json = {}
            ctype = self.headers.get("content-type", "")
            if self.body and "json" in ctype:
                parsed = parse_json_body(self.body)
                if isinstance(parsed, dict):
                    self._json = parsed
            elif self.body and "x-www-form-urlencoded" in ctype:
                merged: dict[str, Any] = {}
                try:
                    text = self.body.decode()
                except UnicodeDecodeError as exc:
                    raise bad_request("Invalid byte sequence in UTF-8") from exc
                for key, value in parse_qsl(text, keep_blank_values=True):
                    if key.endswith("[]"):
                        merged.setdefault(key[:-2], []).append(value)
                    else:
                        merged[key] = value
                self._json = merged
            elif self.form:
                self._json = {k: v[-1] for k, v in self.form.items()}
        result: dict[str, Any] = self._json
        return result

    def searched(self, rows: Iterable[Row], field: str) -> list[Row]:
        """``rows`` whose ``field`` contains ``?search=``, ignoring case (all rows without it)."""
        search = (self.query("search") or "").lower()
        return [r for r in rows if search in str(r[field]).lower()] if search else list(rows)

    def required(self, *names: str) -> tuple[Any, ...]:
        """The parameters ``names`` (as :meth:`arg`); the first missing or empty one is a 400."""
        values = tuple(self.arg(name) for name in names)
        for name, value in zip(names, values, strict=True):
            if not value:
                raise missing_param(name)
        return values

    def arg(self, name: str, default: Any = None) -> Any:
        """A parameter from the JSON/form body, else from the query string (Grape merges them)."""
        body = self.json()
        if name in body:
            return body[name]
        for key, value in self.query_items():
            if key == name:
                return value
        values = self.query_list(name)
        return values if values else default

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.header("authorization") or ""
        if not value.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(value[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return user, password


def to_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on", "t")


INT64_MAX = (1 << 63) - 1
_ASCII_INT = re.compile(r"-?[0-9]+")


def parse_id(text: str) -> int | None:
    """A database id written in ASCII digits and within SQLite's 64 bits, else ``None``.

    ``str.isdigit`` and ``int`` accept Unicode digits (superscripts, Arabic-Indic digits)
    that GitLab's Grape coercion refuses, and SQLite cannot bind integers beyond 64 bits.
    """
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


def is_id(text: str) -> bool:
    """``:id`` written as a number (ASCII digits), as opposed to a URL-encoded path."""
    return text.isascii() and text.isdigit()


def to_int(value: Any, name: str) -> int | None:
    """An integer parameter as Grape coerces it: ASCII digits within 64 bits, else 400."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid_param(name)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer() and abs(value) <= INT64_MAX:
        number = int(value)
    elif isinstance(value, str) and _ASCII_INT.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise invalid_param(name)
    if abs(number) > INT64_MAX:
        raise invalid_param(name)
    return number


def to_list(value: Any) -> list[str]:
    """``tag_list`` arrives as a JSON array, repeated form keys or a CSV string."""
    if value is None:
        return []
    items = [str(v) for v in value] if isinstance(value, list) else str(value).split(",")
    return [i.strip() for i in items if i.strip()]


# query parameters ---------------------------------------------------------------------------

PAGING = frozenset({"page", "per_page"})
RouteFn = TypeVar("RouteFn", bound=Callable[..., Response])


def query_params(
    *, supported: Iterable[str], documented: Iterable[str]
) -> Callable[[RouteFn], RouteFn]:
    """Declare which of GitLab's documented query parameters a route implements.

    A request naming a documented parameter the sandbox does not implement is answered 400,
    naming it, instead of silently ignoring a filter (a client would get unfiltered data and
    not know). Parameters GitLab does not document are ignored, as Grape ignores them.
    ``name[]`` counts as ``name``. Goes below the route's authentication decorator, so that
    credentials are checked first, as in GitLab.
    """
    refused = frozenset(documented) - frozenset(supported) - PAGING

    def decorate(fn: RouteFn) -> RouteFn:
        @functools.wraps(fn)
        def handler(ctx: Ctx, *args: Any) -> Response:
            for key, _ in ctx.query_items():
                name = key.removesuffix("[]")
                if name in refused:
                    raise ApiError(
                        400, f"{name} is not supported by the GitLab sandbox", key="error"
                    )
            return fn(ctx, *args)

        return cast("RouteFn", handler)

    return decorate


# pagination ---------------------------------------------------------------------------------

MAX_COUNTED = 10_000


def paginate(ctx: Ctx, rows: Sequence[Any], render: Callable[[Any], Any]) -> Response:
    """One page of ``rows`` with GitLab's offset-pagination headers and ``Link``."""
    return paginate_query(
        ctx, len(rows), lambda offset, limit: rows[offset : offset + limit], render
    )


def paginate_query(
    ctx: Ctx,
    total: int,
    fetch: Callable[[int, int], Sequence[Any]],
    render: Callable[[Any], Any],
) -> Response:
    """Like :func:`paginate`, loading only the requested page: ``fetch(offset, limit)``."""
    page = max(to_int(ctx.query("page"), "page") or 1, 1)
    per_page = to_int(ctx.query("per_page"), "per_page") or 20
    per_page = min(max(per_page, 1), 100)
    total_pages = max((total + per_page - 1) // per_page, 1)
    chunk = fetch((page - 1) * per_page, per_page)
    counted = total <= MAX_COUNTED
    next_page = page + 1 if page * per_page < total else None
    prev_page = page - 1 if page > 1 else None

    def link(p: int) -> str:
        items = [(k, v) for k, v in ctx.query_items() if k not in ("page", "per_page")]
        items += [("page", str(p)), ("per_page", str(per_page))]
        return f"<{ctx.base_url}{ctx.raw_path}?{urlencode(items)}>"

    links = []
    if prev_page:
        links.append(f'{link(prev_page)}; rel="prev"')
    if next_page:
        links.append(f'{link(next_page)}; rel="next"')
    links.append(f'{link(1)}; rel="first"')
    if counted:
        links.append(f'{link(total_pages)}; rel="last"')
    headers = {
        "X-Page": str(page),
        "X-Per-Page": str(per_page),
        "X-Next-Page": str(next_page or ""),
        "X-Prev-Page": str(prev_page or ""),
        "Link": ", ".join(links),
    }
    if counted:
        headers["X-Total"] = str(total)
        headers["X-Total-Pages"] = str(total_pages)
    return json_response([render(r) for r in chunk], headers=headers)


# routing ------------------------------------------------------------------------------------

Handler = Callable[[Ctx], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    needs_form: bool = False
    template: str = ""


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


def compile_path(template: str) -> re.Pattern[str]:
    """``/projects/{id}/jobs/{job_id}`` -> a regex over the raw path; ``{x:path}`` spans ``/``."""
    out = "^"
    pos = 0
    for match in _PARAM.finditer(template):
        out += re.escape(template[pos : match.start()])
        out += f"(?P<{match.group(1)}>.+)" if match.group(2) else f"(?P<{match.group(1)}>[^/]+)"
        pos = match.end()
    return re.compile(out + re.escape(template[pos:]) + "$")


class RouteTable:
    """A module's routes, registered where each handler is defined: ``@routes.get(template)``.

    The server's router tries the routes of each module in the order they were registered.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, Handler]] = []

    def __iter__(self) -> Iterator[tuple[str, str, Handler]]:
        return iter(self.entries)

    def add(self, method: str, template: str, handler: Handler) -> None:
        self.entries.append((method, template, handler))

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, template, handler)
            return handler

        return register

    def get(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("GET", template)

    def post(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("POST", template)

    def put(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("PUT", template)

    def patch(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("PATCH", template)

    def delete(self, template: str) -> Callable[[Handler], Handler]:
        return self.route("DELETE", template)


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, form: bool = False) -> None:
        self.routes.append(Route(method, compile_path(template), handler, form, template))

    def extend(self, entries: Iterable[tuple[str, str, Handler]]) -> None:
        for method, template, handler in entries:
            self.add(method, template, handler)

    def match(self, method: str, raw_path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, decoded params, path_matched_other_method)."""
        path_seen = False
        for route in self.routes:
            found = route.pattern.match(raw_path)
            if not found:
                continue
            if route.method != method and not (route.method == "GET" and method == "HEAD"):
                path_seen = True
                continue
            return route, {k: unquote(v) for k, v in found.groupdict().items()}, False
        return None, {}, path_seen
