"""The job log: masked, buffered, and streamed to GitLab with ``PATCH /jobs/:id/trace``.

Masking happens on whole lines before anything leaves the runner, so a masked value is never
split across two patches (GitLab's masking rule forbids newlines in masked values). Tokens
with one of the job's ``token_mask_prefixes`` are masked too, keeping the prefix, as
gitlab-runner does.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from provisioner.errors import GitLabError
from provisioner.sandbox_runner.protocol import JobClient

log = logging.getLogger(__name__)

MASK = "[MASKED]"
MAX_PATCH = 256 * 1024
DEFAULT_INTERVAL = 3.0
KEEPALIVE = 30.0  # gitlab-runner's MinTraceForceSendInterval
PARTIAL_FLUSH = 16 * 1024  # a line longer than this is sent unterminated

# ANSI styles gitlab-runner uses in job logs.
BOLD_GREEN = "\x1b[32;1m"
BOLD_CYAN = "\x1b[36;1m"
BOLD_RED = "\x1b[31;1m"
BOLD_YELLOW = "\x1b[0;33m"
RESET = "\x1b[0;m"
CLEAR = "\x1b[0K"


class Masker:
    """Replace masked values and prefixed tokens by ``[MASKED]``."""

    def __init__(self, values: Sequence[str], prefixes: Sequence[str]) -> None:
        self._values = sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)
        self._prefix_re = (
            re.compile("(" + "|".join(re.escape(p) for p in prefixes if p) + r")[0-9A-Za-z_\-.]+")
            if any(prefixes)
            else None
        )

    def add(self, value: str) -> None:
        """Mask one more literal from now on."""
        if len(value) >= 4 and value not in self._values:
            self._values = sorted([*self._values, value], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        if self._prefix_re is not None:
            text = self._prefix_re.sub(lambda m: m.group(1) + MASK, text)
        return text


class JobTrace:
    """A job's log buffer with a background sender.

    ``write`` never blocks on the network. ``aborted`` is set when GitLab says the job is no
    longer running (canceled from the UI/API, or its token is gone); the executor then kills the
    job.
    """

    def __init__(
        self,
        client: JobClient,
        job_id: int,
        job_token: str,
        masker: Masker,
        *,
        interval: float = DEFAULT_INTERVAL,
        limit: int | None = None,
    ) -> None:
        self._client = client
        self._job_id = job_id
        self._token = job_token
        self._mask = masker
        self._lock = threading.Lock()
        self._pending = ""
        self._data = bytearray()
        self._sent = 0
        self._interval = interval
        self._limit = limit
        self._truncated = False
        self._last_contact = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.aborted = threading.Event()
        self.abort_status = ""
        self._thread = threading.Thread(target=self._loop, name=f"trace-{job_id}", daemon=True)
        self._thread.start()

    @property
    def masker(self) -> Masker:
        """The masker this trace applies (add literals discovered during the job)."""
        return self._mask

    # -- writing ----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        """Append raw output (any chunking); complete lines are masked and queued."""
        if not text:
            return
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                head, _, self._pending = self._pending.rpartition("\n")
                self._append(self._mask(head + "\n").encode("utf-8", "replace"))
            if len(self._pending) > PARTIAL_FLUSH:
                self._append(self._mask(self._pending).encode("utf-8", "replace"))
                self._pending = ""

    def _append(self, chunk: bytes) -> None:
        """Add masked bytes, up to the runner's ``output_limit`` (caller holds the lock)."""
        if self._truncated:
            return
        if self._limit is not None and len(self._data) + len(chunk) > self._limit:
            self._data += chunk[: self._limit - len(self._data)]
            self._data += (
                f"\n{BOLD_RED}Job's log exceeded limit of {self._limit} bytes.\n"
                f"Job execution will continue but no more output will be collected.{RESET}\n"
            ).encode()
            self._truncated = True
            return
        self._data += chunk

    def line(self, text: str = "") -> None:
        """Append one line."""
        self.write(text + "\n")

    def notice(self, text: str) -> None:
        """A bold green runner line (``$ command`` echoes, ``Job succeeded``)."""
        self.line(f"{BOLD_GREEN}{text}{RESET}")

    def warning(self, text: str) -> None:
        """A ``WARNING:`` line."""
        self.line(f"{BOLD_YELLOW}WARNING: {text}{RESET}")

    def error(self, text: str) -> None:
        """An ``ERROR:`` line."""
        self.line(f"{BOLD_RED}ERROR: {text}{RESET}")

    def section_start(self, name: str, title: str) -> None:
        """``section_start:<unix>:<name>`` followed by the header GitLab folds the log on."""
        stamp = int(datetime.now(UTC).timestamp())
        self.write(f"section_start:{stamp}:{name}\r{CLEAR}{CLEAR}{BOLD_CYAN}{title}{RESET}\n")

    def section_end(self, name: str) -> None:
        """Close a section."""
        stamp = int(datetime.now(UTC).timestamp())
        self.write(f"section_end:{stamp}:{name}\r{CLEAR}")

    # -- sending ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self._send_pending(keepalive=True)

    def _send_pending(self, *, keepalive: bool) -> None:
        with self._lock:
            chunk = bytes(self._data[self._sent : self._sent + MAX_PATCH])
            start = self._sent
        if not chunk:
            if keepalive and time.monotonic() - self._last_contact >= KEEPALIVE:
                self._keepalive()
            return
        try:
            result = self._client.patch_trace(self._job_id, self._token, chunk, start)
        except GitLabError as exc:
            log.warning("job %s: trace patch failed: %s", self._job_id, exc.message)
            return
        self._last_contact = time.monotonic()
        if result.interval:
            self._interval = max(0.2, min(result.interval, 900.0))
        if result.aborted:
            self.abort_status = result.job_status or str(result.status)
            self.aborted.set()
            return
        with self._lock:
            if result.status == 202:
                self._sent = start + len(chunk)
            elif result.status == 416 and result.next_offset is not None:
                # GitLab holds a different length: resume from where it says it is.
                self._sent = min(result.next_offset, len(self._data))

    def _keepalive(self) -> None:
        try:
            result = self._client.update_job(self._job_id, self._token, "running", self.data())
        except GitLabError:
            return
        self._last_contact = time.monotonic()
        if result.status in (403, 404) or result.job_status in ("canceled", "canceling"):
            self.abort_status = result.job_status or str(result.status)
            self.aborted.set()

    def data(self) -> bytes:
        """Everything written so far (masked), including an unterminated last line."""
        with self._lock:
            if self._truncated:
                return bytes(self._data)
            return bytes(self._data) + self._mask(self._pending).encode("utf-8", "replace")

    def finish(self, timeout: float = 30.0) -> bytes:
        """Flush everything, stop the sender, and return the complete (masked) trace."""
        with self._lock:
            if self._pending:
                self._append(self._mask(self._pending).encode("utf-8", "replace"))
                self._pending = ""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)
        deadline = time.monotonic() + timeout
        while self._sent < len(self._data) and time.monotonic() < deadline:
            before = self._sent
            self._send_pending(keepalive=False)
            if self.aborted.is_set():
                break
            if self._sent == before:
                time.sleep(0.2)
        return bytes(self._data)
