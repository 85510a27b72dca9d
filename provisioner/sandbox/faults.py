"""Fault injection: added latency, random 5xx/429 answers and lost answers, bounded and counted.

Two kinds of fault:

* ``fault_rate``: the request fails *before* it reaches its handler (nothing happened);
* ``lost_answer_rate``: the handler runs and commits, then the answer is lost: the client gets
  a 502 (a proxy that lost its upstream) or the connection drops mid-response. GitLab acted;
  the client never heard. Only a client that looks before it retries a create converges.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from starlette.responses import Response

FAULT_STATUSES = (500, 502, 503)
LOST_502 = "502"
LOST_DROP = "dropped"


@dataclass
class Faults:
    """``fault_rate`` of API requests fail, never more than ``max_consecutive`` in a row.

    The bound is what makes fault mode usable: a client that retries (python-gitlab with
    ``retry_transient_errors=True``, gitlab-runner, twine) always gets through. It holds per
    request (method and path), not globally: a client that looks around between two tries of
    the same create (as a careful one does) would otherwise reset a global streak with each
    successful look-up and could see its create fail without bound.
    """

    latency_ms: int = 0
    fault_rate: float = 0.0
    lost_answer_rate: float = 0.0
    max_consecutive: int = 2
    retry_after: int = 1
    seed: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    _streaks: dict[str, int] = field(default_factory=dict)
    _lost_streaks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        if not 0.0 <= self.lost_answer_rate <= 1.0:
            raise ValueError("lost answer rate must be between 0 and 1")
        if self.latency_ms < 0:
            raise ValueError("latency must not be negative")

    def configure(
        self,
        *,
        latency_ms: int | None = None,
        fault_rate: float | None = None,
        seed: int | None = None,
        lost_answer_rate: float | None = None,
    ) -> None:
        """Change latency, fault and lost-answer rates; ``seed`` makes the faults reproducible."""
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            if lost_answer_rate is not None:
                if not 0.0 <= lost_answer_rate <= 1.0:
                    raise ValueError("lost answer rate must be between 0 and 1")
                self.lost_answer_rate = lost_answer_rate
                self._lost_streaks.clear()
            if latency_ms is not None:
                if latency_ms < 0:
                    raise ValueError("latency must not be negative")
                self.latency_ms = latency_ms
            if fault_rate is not None:
                if not 0.0 <= fault_rate <= 1.0:
                    raise ValueError("fault rate must be between 0 and 1")
                self.fault_rate = fault_rate
            self._streaks.clear()

    def pick(self, key: str = "") -> int | None:
        """The status to inject for the request ``key`` (method and path), or ``None``."""
        with self._lock:
            self.requests += 1
            streak = self._streaks.pop(key, 0)
            if self.fault_rate <= 0 or streak >= self.max_consecutive:
                return None
            if self._rng.random() >= self.fault_rate:
                return None
            self._streaks[key] = streak + 1
            status = 429 if self._rng.random() < 0.5 else self._rng.choice(FAULT_STATUSES)
            self.counts[str(status)] = self.counts.get(str(status), 0) + 1
            return status

    def pick_lost(self, key: str = "") -> str | None:
        """After the handler ran: lose its answer (``"502"`` or ``"dropped"``), or ``None``.

        Bounded like :meth:`pick`, per request, so a client that retries gets an answer.
        """
        with self._lock:
            streak = self._lost_streaks.pop(key, 0)
            if self.lost_answer_rate <= 0 or streak >= self.max_consecutive:
                return None
            if self._rng.random() >= self.lost_answer_rate:
                return None
            self._lost_streaks[key] = streak + 1
            # Alternate, so that any two lost answers show a client both ways of losing one.
            how = LOST_502 if sum(self.lost.values()) % 2 == 0 else LOST_DROP
            self.lost[how] = self.lost.get(how, 0) + 1
            return how

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "fault_rate": self.fault_rate,
                "lost_answer_rate": self.lost_answer_rate,
                "max_consecutive": self.max_consecutive,
                "requests": self.requests,
                "injected": dict(self.counts),
                "injected_total": sum(self.counts.values()),
                "lost_answers": dict(self.lost),
                "lost_answers_total": sum(self.lost.values()),
            }

    @staticmethod
    def lost_response() -> Response:
        """The 502 a proxy sends when the upstream's answer never reached it."""
        return Response(
            '{"message":"502 Bad Gateway"}',
            status_code=502,
            media_type="application/json",
            headers={"X-Sandbox-Fault": "lost-answer"},
        )

    def response(self, status: int) -> Response:
        headers = {"X-Sandbox-Fault": "injected"}
        if status == 429:
            now = int(time.time())
            reset = now + self.retry_after
            headers.update(
                {
                    "Retry-After": str(self.retry_after),
                    "RateLimit-Name": "throttle_authenticated_api",
                    "RateLimit-Limit": "60",
                    "RateLimit-Observed": "61",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                    "RateLimit-ResetTime": formatdate(reset, usegmt=True),
                }
            )
            return Response(
                "Retry later\n", status_code=429, media_type="text/plain", headers=headers
            )
        messages = {
            500: "500 Internal Server Error",
            502: "502 Bad Gateway",
            503: "503 Service Unavailable",
        }
        return Response(
            f'{{"message":"{messages[status]}"}}',
            status_code=status,
            media_type="application/json",
            headers=headers,
        )
