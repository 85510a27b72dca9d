"""Read GitLab job logs (traces) as a person sees them in the job page.

A raw trace carries terminal control: ANSI colour codes and ``ESC[0K`` (erase line), carriage
returns that redraw a progress line in place, and GitLab's collapsible-section markers
``section_start:<unix time>:<name>[options]`` and ``section_end:<unix time>:<name>``, each
followed by ``\\r ESC[0K`` so a terminal hides them. These functions drop all of that and keep
what a terminal would finally show; :func:`sections` also says which lines each section holds
(doctor looks for a failure in the step that failed, not in the whole log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Lines ``runnerctl smoke`` shows of a failed job's log.
DEFAULT_TAIL = 40

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MARKER_PREFIX = re.compile(r"^section_(?:start|end):\d+:\S*\s*")
_MARKER = re.compile(
    r"section_(?P<kind>start|end):(?P<at>\d+):(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]\r\n]*\])?"
)


@dataclass(frozen=True)
class Section:
    """One collapsible section of a job log (``step_script``, ``get_sources``…)."""

    name: str
    started_at: int
    ended_at: int | None
    lines: tuple[str, ...]

    @property
    def seconds(self) -> int | None:
        """How long the section ran, when it ended."""
        return None if self.ended_at is None else self.ended_at - self.started_at


def clean_line(raw: str) -> str:
    """What a terminal shows for one raw line: its last ``\\r`` redraw, no colours or markers."""
    visible = raw.rsplit("\r", 1)[-1]
    return _MARKER_PREFIX.sub("", _ANSI.sub("", visible)).rstrip()


def _raw_lines(trace: str) -> list[str]:
    return trace.replace("\r\n", "\n").split("\n")


def clean_lines(trace: str) -> tuple[str, ...]:
    """The non-empty lines of ``trace`` as a terminal finally shows them."""
    return tuple(line for line in map(clean_line, _raw_lines(trace)) if line)


def tail(trace: str, lines: int = DEFAULT_TAIL) -> str:
    """The last ``lines`` non-empty clean lines of ``trace``, joined by newlines."""
    if lines <= 0:
        return ""
    return "\n".join(clean_lines(trace)[-lines:])


def sections(trace: str) -> tuple[Section, ...]:
    """The sections of ``trace`` in the order they started, each with its clean lines.

    A line belongs to the innermost section open after the markers on its own line (a header
    line ``section_start:…\\r ESC[0K$ make test`` belongs to the section it opens). Lines
    outside every section are not returned; a section never closed has ``ended_at`` None.
    """
    order: list[str] = []
    started: dict[str, int] = {}
    ended: dict[str, int] = {}
    body: dict[str, list[str]] = {}
    open_stack: list[str] = []
    for raw in _raw_lines(trace):
        for marker in _MARKER.finditer(raw):
            name, at = marker.group("name"), int(marker.group("at"))
            if marker.group("kind") == "start":
                if name not in started:
                    order.append(name)
                    started[name] = at
                    body[name] = []
                open_stack.append(name)
            elif name in open_stack:
                ended[name] = at
                # Closing a section closes whatever was left open inside it.
                del open_stack[open_stack.index(name) :]
        text = clean_line(raw)
        if text and open_stack:
            body[open_stack[-1]].append(text)
    return tuple(Section(n, started[n], ended.get(n), tuple(body[n])) for n in order)
