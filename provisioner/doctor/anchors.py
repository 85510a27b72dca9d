"""Literal text that every match of a catalogue pattern must contain.

The matcher looks for these literals with ``str.find`` (a fast substring search in C) and runs a
signature's regular expression only on the lines that contain one: a multi-pattern prefilter in
the manner of ripgrep's literal optimisation, instead of one regex per line per signature.

:func:`required_literals` understands the subset of regular expressions the catalogue uses
(literals, escapes, classes, groups, alternation, quantifiers, ``^``/``$``); for anything it
cannot prove required it simply breaks the literal run, so its answer is always safe.
"""

from __future__ import annotations

_ESCAPED_LITERALS = frozenset(".()[]{}|?*+^$\\/-'\" :")
_QUANTIFIERS = frozenset("?*+{")
MIN_ANCHOR = 3


def _group_end(pattern: str, start: int) -> int:
    """Index of the ``)`` closing the group opened at ``start``."""
    depth, i = 0, start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = _class_end(pattern, i) + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced group in {pattern!r}")


def _class_end(pattern: str, start: int) -> int:
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i


def _branches(pattern: str) -> list[str]:
    """``pattern`` split on its top-level ``|``."""
    parts, depth, current, i = [], 0, [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            current.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[":
            end = _class_end(pattern, i)
            current.append(pattern[i : end + 1])
            i = end + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _best(options: list[list[str]]) -> list[str]:
    """The alternative set whose shortest literal is longest (the most selective)."""
    usable = [o for o in options if o and min(map(len, o)) >= MIN_ANCHOR]
    if not usable:
        return []
    return max(usable, key=lambda o: (min(map(len, o)), -len(o)))


def _sequence(pattern: str) -> list[str]:
    """Required literals of a pattern without top-level alternation."""
    candidates: list[list[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            candidates.append(["".join(run)])
            run.clear()

    i = 0
    while i < len(pattern):
        ch = pattern[i]
        nxt = i + 1
        piece: str | None = None
        group: list[str] | None = None
        if ch == "\\" and i + 1 < len(pattern):
            nxt = i + 2
            if pattern[i + 1] in _ESCAPED_LITERALS:
                piece = pattern[i + 1]
        elif ch == "[":
            nxt = _class_end(pattern, i) + 1
        elif ch == "(":
            end = _group_end(pattern, i)
            inner = pattern[i + 1 : end]
            if inner.startswith("?:"):
                inner = inner[2:]
            group = [] if inner.startswith("?") else required_literals(inner)
            nxt = end + 1
        elif ch in "^$.":
            pass
        else:
            piece = ch
        optional = nxt < len(pattern) and pattern[nxt] in _QUANTIFIERS
        if optional:
            quant = pattern[nxt]
            required_once = quant == "+"
            nxt = pattern.index("}", nxt) + 1 if quant == "{" else nxt + 1
            if nxt < len(pattern) and pattern[nxt] in "?+":
                nxt += 1  # lazy or possessive suffix
            if piece is not None and required_once:
                run.append(piece)
            flush()
        elif piece is not None:
            run.append(piece)
        else:
            flush()
            if group:
                candidates.append(group)
        i = nxt
    flush()
    return _best(candidates)


def required_literals(pattern: str) -> list[str]:
    """Literals one of which every match of ``pattern`` contains (empty when none is known)."""
    branches = _branches(pattern)
    if len(branches) == 1:
        return _sequence(pattern)
    found: list[str] = []
    for branch in branches:
        literals = _sequence(branch)
        if not literals:
            return []
        found.extend(literals)
    return found
