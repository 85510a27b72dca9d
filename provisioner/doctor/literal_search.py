"""Find many literals in one pass: the only importer of ``ahocorasick_rs``.

ahocorasick-rs wraps the Rust ``aho-corasick`` crate (the engine behind ripgrep's literal
search): every literal is compiled into one DFA, and one scan of the text reports every
occurrence of every literal. doctor's matcher uses it as its prefilter, in place of one
``str.find`` scan per literal. (pyahocorasick, the C library, scans a ``str`` one code point
at a time and was no faster than the ``str.find`` loop on a 4 MiB log; see docs/doctor.md.)
"""

from __future__ import annotations

from collections.abc import Sequence

import ahocorasick_rs


class LiteralSearch:
    """A fixed set of literals, searched for all at once in UTF-8 bytes."""

    def __init__(self, literals: Sequence[str]) -> None:
        self.literals = tuple(literals)
        self._automaton = ahocorasick_rs.BytesAhoCorasick(
            [literal.encode("utf-8") for literal in self.literals],
            implementation=ahocorasick_rs.Implementation.DFA,
        )

    def occurrences(self, data: bytes) -> list[tuple[int, int]]:
        """Every ``(literal index, byte offset)`` in ``data``, overlapping ones included."""
        return [
            (index, start)
            for index, start, _end in self._automaton.find_matches_as_indexes(
                data, overlapping=True
            )
        ]
