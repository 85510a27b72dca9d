"""``rules:if`` expressions (``lib/gitlab/ci/pipeline/expression``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<re>/(?:[^/\\]|\\.)*/[a-z]*)
      | (?P<null>null\b)
      | (?P<op>==|!=|=~|!~|&&|\|\||\(|\))
    )""",
    re.VERBOSE,
)


class ExpressionError(ValueError):
    pass


@dataclass(frozen=True)
class _Pattern:
    source: str
    flags: str

    def search(self, text: str) -> bool:
        flags = 0
        if "i" in self.flags:
            flags |= re.IGNORECASE
        if "m" in self.flags:
            flags |= re.MULTILINE
        if "s" in self.flags:
            flags |= re.DOTALL
        try:
            return re.search(self.source, text, flags) is not None
        except re.error as exc:
            raise ExpressionError(str(exc)) from None


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise ExpressionError(text)
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    if not tokens:
        raise ExpressionError(text)
    return tokens


def as_pattern(value: str) -> _Pattern | None:
    match = re.fullmatch(r"/(.*)/([a-z]*)", value, re.DOTALL)
    return _Pattern(match.group(1), match.group(2)) if match else None


class _Parser:
    """Recursive descent: ``||`` binds looser than ``&&``, comparisons bind tightest."""

    def __init__(self, tokens: list[tuple[str, str]], variables: Mapping[str, str]) -> None:
        self.tokens = tokens
        self.position = 0
        self.variables = variables

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end")
        self.position += 1
        return token

    def parse(self) -> bool:
        result = self.disjunction()
        if self.peek() is not None:
            raise ExpressionError("trailing tokens")
        return result

    def disjunction(self) -> bool:
        result = self.conjunction()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.conjunction()
            result = result or right
        return result

    def conjunction(self) -> bool:
        result = self.comparison()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.comparison()
            result = result and right
        return result

    def comparison(self) -> bool:
        token = self.peek()
        if token == ("op", "("):
            self.take()
            result = self.disjunction()
            if self.take() != ("op", ")"):
                raise ExpressionError("unbalanced parentheses")
            return result
        left = self.value()
        operator = self.peek()
        if operator is None or operator[0] != "op" or operator[1] not in {"==", "!=", "=~", "!~"}:
            return _truthy(left)
        self.take()
        right = self.value()
        if operator[1] in {"==", "!="}:
            left_text = left.source if isinstance(left, _Pattern) else left
            right_text = right.source if isinstance(right, _Pattern) else right
            equal = left_text == right_text
            return equal if operator[1] == "==" else not equal
        pattern = right if isinstance(right, _Pattern) else as_pattern(right or "")
        if pattern is None:
            raise ExpressionError("right side of a pattern match must be a regexp")
        matched = isinstance(left, str) and pattern.search(left)
        return matched if operator[1] == "=~" else not matched

    def value(self) -> str | _Pattern | None:
        kind, text = self.take()
        if kind == "var":
            name = text.lstrip("$").strip("{}")
            return self.variables.get(name)
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "re":
            pattern = as_pattern(text)
            if pattern is None:
                raise ExpressionError(text)
            return pattern
        if kind == "null":
            return None
        raise ExpressionError(f"unexpected {text}")


def _truthy(value: str | _Pattern | None) -> bool:
    if isinstance(value, _Pattern):
        return True
    return bool(value)


def evaluate_expression(expression: str, variables: Mapping[str, str]) -> bool:
    """Evaluate a ``rules:if`` expression; raises ValueError on invalid syntax."""
    return _Parser(_tokenize(expression), variables).parse()
