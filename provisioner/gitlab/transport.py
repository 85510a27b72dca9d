"""One HTTP transport for every GitLab call, with one retry policy.

Retries are ours, not python-gitlab's, because python-gitlab would blindly re-send a
``POST /user/runners`` after a 502 and create a second runner. The policy (:class:`RetryPolicy`):

- 408, 429, 500, 502, 503, 504 and connection failures (not TLS errors) are retried;
- the wait obeys ``Retry-After`` (seconds or an HTTP date) and ``RateLimit-Reset`` (a Unix time,
  as GitLab's rate limiter sends it), else grows exponentially with jitter;
- at most ``max_retries`` retries, and never past a total deadline;
- a call that creates or changes something (``idempotent=False``) is retried after a 429 only
  (GitLab throttles before it acts), unless the caller gives a recovery step that finds out
  whether the lost attempt went through (:meth:`Transport.create`);
- statuses listed in ``missing`` come back as ``None`` instead of an error ("missing is None").

Every retry is logged at INFO (``-v``), redacted. Every request is counted
(:attr:`Transport.request_count`) by a response hook on the one ``requests.Session``.

A request budget is opt-in (:meth:`Transport.limit_rate`, used by ``runnerctl pipelines``): at
most N requests per second, and after an answer with ``RateLimit-Remaining: 0`` nothing is sent
before ``RateLimit-Reset``. Without it, requests go out as soon as they are made.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from provisioner.errors import GitLabError
from provisioner.gitlab.connection import ACCESS_HINT
from provisioner.gitlab.models import ConnectionSettings
from provisioner.secrets import redact

if TYPE_CHECKING:
    import gitlab
    import requests

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0

NEW_WORKFLOW_HINT = (
    "This GitLab has registration tokens disabled (the default since GitLab 17.0). Use the "
    "new workflow instead: drop --legacy-registration-token-env and run `runnerctl register` "
    "with an access token that has the create_runner scope (User settings > Access tokens, "
    "or a group/project access token with the Owner/Maintainer role); runnerctl then creates "
    "the runner with POST /user/runners and gets a glrt- token."
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed exchange.

    Attributes:
        max_retries: retries after the first attempt.
        deadline: seconds from the first attempt after which no retry starts.
        base: the first backoff, doubled per retry (before jitter).
        cap: the longest backoff without a server-given wait.
        max_retry_after: the longest server-given wait that is obeyed as is.
    """

    max_retries: int = 4
    deadline: float = 300.0
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER

    def retryable(self, outcome: Outcome, *, idempotent: bool) -> bool:
        """True when ``outcome`` is worth another attempt of such a call."""
        if outcome.status is None:
            return idempotent and not outcome.tls
        if not idempotent:
            return outcome.status == 429
        return outcome.status in RETRYABLE_STATUS

    def backoff(self, outcome: Outcome, retry: int, jitter: float) -> float:
        """Seconds to wait before retry number ``retry`` (0-based); ``jitter`` is in [0, 1)."""
        if outcome.wait is not None:
            return min(outcome.wait, self.max_retry_after)
        step = float(min(self.base * 2**retry, self.cap))
        # "Equal jitter": half fixed, half random, so a wait is never zero.
        return step / 2 + step / 2 * jitter


@dataclass
class Outcome:
    """A failed exchange: the status (``None`` when no answer came) and a redacted message."""

    status: int | None
    message: str
    wait: float | None = None
    tls: bool = False


@dataclass(frozen=True)
class _Recovered:
    value: Any


class Transport:
    """Sends GitLab requests through python-gitlab's session, with :class:`RetryPolicy`."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        import gitlab as gitlab_module
        import requests

        self.settings = settings
        self.policy = RetryPolicy(
            max_retries=settings.max_retries, deadline=settings.retry_deadline
        )
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self.session = session if session is not None else requests.Session()
        self.session.hooks["response"].append(self._on_response)
        self._requests = 0
        self._last_headers: Mapping[str, str] = {}
        self._min_interval = 0.0
        self._not_before = 0.0
        self.verify: bool | str = True
        if settings.insecure:
            import urllib3

            # One warning from us instead of urllib3's on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning("TLS verification of %s is off (--insecure)", settings.url)
            self.verify = False
        elif settings.ca_bundle is not None:
            self.verify = str(settings.ca_bundle)
        self.gl: gitlab.Gitlab = gitlab_module.Gitlab(
            settings.url,
            private_token=settings.token or None,
            ssl_verify=self.verify,
            timeout=settings.timeout,
            retry_transient_errors=False,
            session=self.session,
            user_agent=f"runnerctl (python-gitlab {gitlab_module.__version__})",
        )

    # -- bookkeeping -----------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """How many HTTP requests were sent (retries included)."""
        return self._requests

    def limit_rate(self, per_second: float) -> None:
        """Send at most ``per_second`` requests a second (0: no budget), and obey
        ``RateLimit-Remaining: 0`` by waiting for ``RateLimit-Reset``."""
        self._min_interval = 1.0 / per_second if per_second > 0 else 0.0

    def _throttle(self) -> None:
        if self._min_interval <= 0:
            return
        wait = self._not_before - self._clock()
        if wait > 0:
            self._sleep(wait)
        self._not_before = self._clock() + self._min_interval

    def _on_response(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._requests += 1
        self._last_headers = dict(response.headers)
        if self._min_interval > 0 and response.headers.get("RateLimit-Remaining") == "0":
            wait = self._wait({"RateLimit-Reset": response.headers.get("RateLimit-Reset", "")})
            if wait:
                self._not_before = max(
                    self._not_before, self._clock() + min(wait, self.policy.max_retry_after)
                )
        request = response.request
        log.debug(
            "%s %s -> %s (%.0f ms)",
            request.method,
            urlsplit(request.url or "").path,
            response.status_code,
            response.elapsed.total_seconds() * 1000,
        )

    # -- one exchange ----------------------------------------------------------------------------

    def send(
        self,
        verb: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response | Outcome:
        """One exchange through python-gitlab; a failure comes back as an :class:`Outcome`."""
        return self._guarded(
            lambda: self.gl.http_request(
                verb,
                path,
                query_data=dict(query or {}),
                post_data=dict(body) if body is not None else None,
                extra_headers=dict(headers) if headers else None,
                obey_rate_limit=False,
                retry_transient_errors=False,
                max_retries=0,
            )
        )

    def send_basic(self, url: str) -> requests.Response | Outcome:
        """``GET url`` with HTTP Basic (any user, the token as password), as the registries want."""

        def get() -> requests.Response | Outcome:
            response = self.session.get(
                url,
                auth=("runnerctl", self.settings.token),
                verify=self.verify,
                timeout=self.settings.timeout,
            )
            if response.ok:
                return response
            text = redact(response.text[:200])
            return Outcome(response.status_code, text, self._wait(response.headers))

        return self._guarded(get)

    def _guarded(
        self, exchange: Callable[[], requests.Response | Outcome]
    ) -> requests.Response | Outcome:
        """Run one exchange; python-gitlab's and requests' errors become an :class:`Outcome`."""
        import gitlab.exceptions
        import requests

        self._last_headers = {}
        self._throttle()
        try:
            return exchange()
        except gitlab.exceptions.GitlabHttpError as exc:
            return Outcome(exc.response_code, _message(exc), self._wait(self._last_headers))
        except gitlab.exceptions.GitlabAuthenticationError as exc:
            return Outcome(exc.response_code or 401, _message(exc))
        except requests.exceptions.SSLError as exc:
            return Outcome(None, f"TLS error: {_short(exc)}", tls=True)
        except requests.exceptions.RequestException as exc:
            return Outcome(None, _short(exc))
        except gitlab.exceptions.RedirectError as exc:
            return Outcome(None, f"unexpected redirect: {exc}")

    def _wait(self, headers: Mapping[str, str]) -> float | None:
        """The wait GitLab asked for: ``Retry-After`` (seconds or date), or ``RateLimit-Reset``."""
        lower = {k.lower(): v for k, v in headers.items()}
        value = lower.get("retry-after")
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
            try:
                moment = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                moment = None
            if moment is not None and moment.tzinfo is not None:
                return max(0.0, moment.timestamp() - self._wall_clock())
        reset = lower.get("ratelimit-reset")
        if reset is not None:
            try:
                return max(0.0, float(reset) - self._wall_clock())
            except ValueError:
                return None
        return None

    # -- the retry loop --------------------------------------------------------------------------

    def request(
        self,
        verb: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        hints: Mapping[int, str] | None = None,
        missing: Collection[int] = (),
        idempotent: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response | None:
        """Send with the retry policy; ``None`` for a status in ``missing``.

        ``headers`` are added to this request only (``If-Unmodified-Since``...).

        Raises:
            GitLabError: when the last attempt failed, with a hint.
        """
        result = self._run(
            lambda: self.send(verb, path, query=query, body=body, headers=headers),
            label=f"{verb.upper()} {path}",
            what=what,
            hints=hints,
            missing=missing,
            idempotent=idempotent,
        )
        assert not isinstance(result, _Recovered)
        return result

    def require(self, verb: str, path: str, *, what: str, **options: Any) -> requests.Response:
        """:meth:`request` (same options) for a call whose every failure is an error."""
        response = self.request(verb, path, what=what, **options)
        assert response is not None
        return response

    def create(
        self,
        verb: str,
        path: str,
        *,
        what: str,
        body: Mapping[str, Any],
        parse: Callable[[requests.Response], T],
        recover: Callable[[], T | None],
        hints: Mapping[int, str] | None = None,
    ) -> T:
        """A non-idempotent call retried like a read, with ``recover`` run before each re-send.

        After an answer that may have been lost after GitLab acted (5xx, dropped connection),
        ``recover`` looks for what the lost attempt created: a value it returns ends the call;
        ``None`` means nothing was created, so the request is sent again. A 429 is re-sent
        without looking: GitLab throttles before it acts.
        """
        result = self._run(
            lambda: self.send(verb, path, body=body),
            label=f"{verb.upper()} {path}",
            what=what,
            hints=hints,
            missing=(),
            idempotent=True,
            recover=recover,
        )
        if isinstance(result, _Recovered):
            value: T = result.value
            return value
        assert result is not None
        return parse(result)

    def basic_get(self, url: str, *, what: str) -> requests.Response | None:
        """``GET`` an absolute registry URL with Basic auth; ``None`` on 404."""
        result = self._run(
            lambda: self.send_basic(url),
            label=f"GET {urlsplit(url).path}",
            what=what,
            hints=None,
            missing=(404,),
            idempotent=True,
        )
        assert not isinstance(result, _Recovered)
        return result

    def _run(
        self,
        send: Callable[[], requests.Response | Outcome],
        *,
        label: str,
        what: str,
        hints: Mapping[int, str] | None,
        missing: Collection[int],
        idempotent: bool,
        recover: Callable[[], Any] | None = None,
    ) -> requests.Response | _Recovered | None:
        start = self._clock()
        retry = 0
        while True:
            result = send()
            if not isinstance(result, Outcome):
                return result
            if result.status is not None and result.status in missing:
                return None
            if retry >= self.policy.max_retries or not self.policy.retryable(
                result, idempotent=idempotent
            ):
                raise self.error(result, what=what, hints=hints, attempts=retry + 1)
            delay = self.policy.backoff(result, retry, self._jitter())
            if self._clock() - start + delay > self.policy.deadline:
                log.info(
                    "%s: no retry, %.1f s would pass the %.0f s deadline",
                    label,
                    delay,
                    self.policy.deadline,
                )
                raise self.error(result, what=what, hints=hints, attempts=retry + 1)
            retry += 1
            log.info(
                "%s: %s; retry %d/%d in %.1f s",
                label,
                redact(result.message if result.status is None else str(result.status)),
                retry,
                self.policy.max_retries,
                delay,
            )
            self._sleep(delay)
            if recover is not None and result.status != 429:
                found = recover()
                if found is not None:
                    return _Recovered(found)

    # -- answers ---------------------------------------------------------------------------------

    def error(
        self,
        outcome: Outcome,
        *,
        what: str,
        hints: Mapping[int, str] | None,
        attempts: int,
    ) -> GitLabError:
        """The :class:`GitLabError` for a failed exchange, with the most useful hint."""
        status = outcome.status
        detail = redact(outcome.message)
        if status is None:
            hint: str = (
                "Check --gitlab-url / GITLAB_URL, DNS, the proxy settings (HTTPS_PROXY, "
                "NO_PROXY) and that GitLab is up."
            )
            if outcome.tls:
                hint = (
                    "GitLab's certificate is not trusted: pass its CA chain with --ca-bundle "
                    "PEM (or --insecure for a throwaway test instance)."
                )
            return GitLabError(
                f"Cannot reach GitLab at {self.settings.url} while {what} ({detail}).",
                hint=hint,
            )
        specific = (hints or {}).get(status)
        if specific is not None:
            hint = specific
        elif status == 401 and not self.settings.token:
            hint = f"This call needs an access token and none was given. {ACCESS_HINT}"
        else:
            hint = default_hint(status, self.settings.auth_source)
        suffix = f" after {attempts} attempts" if attempts > 1 else ""
        return GitLabError(f"GitLab answered {status} while {what}{suffix}: {detail}", hint=hint)

    def json(self, response: requests.Response) -> Any:
        """The decoded JSON body (``None`` for an empty one)."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise GitLabError(
                f"GitLab sent a non-JSON answer to {response.request.method} "
                f"{urlsplit(response.request.url or '').path}.",
                hint="Check that --gitlab-url points at GitLab itself, not a proxy login page.",
            ) from exc

    def paginate(
        self,
        path: str,
        query: Mapping[str, Any],
        *,
        what: str,
        hints: Mapping[int, str] | None = None,
        missing: Collection[int] = (),
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following ``Link: rel="next"``.

        A status in ``missing`` on the first page is an empty list.
        """
        params: dict[str, Any] = {"per_page": 100, **query}
        url: str | None = path
        first = True
        while url is not None:
            response = self.request(
                "get", url, what=what, query=params, hints=hints, missing=missing if first else ()
            )
            if response is None:
                return
            first = False
            page = self.json(response)
            if not isinstance(page, list):
                raise GitLabError(f"GitLab sent no list while {what}.")
            yield from (item for item in page if isinstance(item, dict))
            nxt = response.links.get("next", {}).get("url")
            # The next URL carries every query parameter already.
            url, params = (nxt, {}) if nxt else (None, {})


# ---------------------------------------------------------------------------------------------
# Helpers


def _message(exc: Exception) -> str:
    message = getattr(exc, "error_message", "") or str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return redact(str(message))[:300]


def _short(exc: Exception) -> str:
    text = str(exc)
    # urllib3 messages are long and repeat the pool; the reason is what helps.
    if "Caused by" in text:
        text = text.split("Caused by", 1)[1].strip(" ()'\"")
    return redact(text)[:200]


def default_hint(status: int, auth_source: str) -> str:
    """What to do about a GitLab status when the call has no more specific hint."""
    if status == 401:
        return (
            f"The token from {auth_source} is invalid, expired or revoked. Create a new "
            f"access token with the create_runner (or api) scope. {ACCESS_HINT}"
        )
    if status == 403:
        return (
            "The token lacks the create_runner (or api) scope, or its user is not an Owner of "
            "the group / a Maintainer of the project (instance runners need an administrator)."
        )
    if status == 404:
        return "Check the group or project path and that the token's user can see it."
    if status == 410:
        return NEW_WORKFLOW_HINT
    if status == 429:
        return "GitLab is rate limiting this token; wait a minute and retry."
    if status >= 500:
        return "GitLab had a server error; retry later or check its health (/-/readiness)."
    return "Check the options against GitLab's runner API documentation."
