"""Durations as GitLab parses ``timeout`` and ``expire_in`` (ChronicDuration)."""

from __future__ import annotations

import re

_DURATION_UNITS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 7 * 86400),
    (("mo", "mos", "month", "months"), 30 * 86400),
    (("y", "yr", "yrs", "year", "years"), 31_557_600),
):
    for _name in _names:
        _DURATION_UNITS[_name] = _seconds

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d{1,2})$")


def parse_duration(value: str | int) -> int | None:
    """Parse a GitLab human duration (``"1h 30m"``, ``"10 minutes"``, ``3600``) into seconds.

    Returns None when the text is not a duration.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    text = value.strip().lower().replace(",", " ").replace(" and ", " ")
    if not text:
        return None
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if text[position : match.start()].strip():
            return None
        number, unit = match.groups()
        if unit and unit not in _DURATION_UNITS:
            return None
        total += float(number) * _DURATION_UNITS.get(unit or "s", 1)
        position = match.end()
    if position == 0 or text[position:].strip():
        return None
    return int(total)
