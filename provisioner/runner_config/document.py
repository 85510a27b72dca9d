"""config.toml as a tomlkit document: the source of truth for round-tripping and edits.

An unchanged load and save is byte-identical. Editing one runner touches only the keys it sets:
comments, key order, formatting and unknown keys everywhere else stay as they were. New keys
and new runners are written in gitlab-runner's own layout (two spaces per nesting level, a
blank line before every ``[[runners]]``), so a file that gitlab-runner wrote keeps looking that
way.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import tomlkit
import tomlkit.exceptions
from tomlkit.items import AoT, Item, Table

from provisioner.errors import ConfigError

# The keys gitlab-runner itself writes after talking to GitLab; see ConfigStore for the rule
# that keeps them from being overwritten with stale values.
RUNNER_OWNED_KEYS = ("token", "token_obtained_at", "token_expires_at")

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in the file."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


class ConfigSyntaxError(ConfigError):
    """The file is not valid TOML; ``location`` says where the parser stopped."""

    def __init__(self, message: str, *, source: str, location: Location | None) -> None:
        where = f"{source}:{location}" if location else source
        super().__init__(
            f"{where}: TOML syntax error: {message}",
            hint=(
                "Fix the file at that position (gitlab-runner refuses to load it as well); "
                "nothing was changed on disk."
            ),
        )
        self.location = location
        self.detail = message


class RunnerNotFoundError(ConfigError):
    """No ``[[runners]]`` entry matches the given id, token or name."""


@dataclass(frozen=True)
class RunnerRef:
    """How a caller names one ``[[runners]]`` entry: by id, by token, or by name.

    The first one given wins, in that order. Name lookups must be unambiguous. ``url``, when
    given, narrows the match to that GitLab instance: a runner's identity is (URL, id), since
    two instances hand out the same ids.
    """

    id: int | None = None
    token: str | None = None
    name: str | None = None
    url: str | None = None

    def describe(self) -> str:
        """A log-safe description (a token is never shown)."""
        if self.id is not None:
            return f"id {self.id}"
        if self.token is not None:
            return "the given token"
        return f"name {self.name!r}"


_TOMLLIB_POS = re.compile(r"^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


# How deep arrays, inline tables and tables may nest. gitlab-runner's deepest section is about
# six levels down; the bound keeps the recursive parsers (tomllib, tomlkit) and everything that
# walks the values well inside Python's recursion limit.
MAX_NESTING = 32

_NESTING_HINT = (
    "gitlab-runner's config.toml nests at most a few levels; this file is not one (or was "
    "generated wrongly). Nothing was changed on disk."
)


def _too_deep(source: str, location: Location | None) -> ConfigSyntaxError:
    error = ConfigSyntaxError(
        f"values nested more than {MAX_NESTING} levels deep",
        source=source,
        location=location,
    )
    error.hint = _NESTING_HINT
    return error


_PLAIN_RUN = re.compile(r"[^#\"'\[\]{}]+")


def _check_bracket_nesting(text: str, source: str) -> None:
    """Refuse arrays and inline tables nested deeper than :data:`MAX_NESTING`, before parsing.

    A scan without recursion that skips strings and comments. It runs before the recursive
    parsers, which would otherwise exhaust the stack on ``x = [[[[...]]]]``.
    """
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return
    depth = 0
    i, n = 0, len(text)
    while i < n:
        plain = _PLAIN_RUN.match(text, i)
        if plain:
            i = plain.end()
            continue
        ch = text[i]
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in "\"'":
            i = _string_end(text, i)
            continue
        if ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, i) + 1
                column = i - (text.rfind("\n", 0, i) + 1) + 1
                raise _too_deep(source, Location(line, column))
        else:
            depth = max(0, depth - 1)
        i += 1


def _string_end(text: str, start: int) -> int:
    """The index after the TOML string opening at ``start`` (or where it breaks off)."""
    ch = text[start]
    triple = text.startswith(ch * 3, start)
    quote = ch * 3 if triple else ch
    j, n = start + len(quote), len(text)
    while j < n:
        if ch == '"' and text[j] == "\\":
            j += 2
            continue
        if text.startswith(quote, j):
            j += len(quote)
            # A closing triple quote may be followed by up to two quotes of the string.
            while triple and j < n and text[j] == ch:
                j += 1
            return j
        if text[j] == "\n" and not triple:
            return j  # an unterminated string: the parser reports it
        j += 1
    return n


def _check_value_nesting(data: dict[str, Any], source: str) -> None:
    """Refuse tables and arrays nested deeper than :data:`MAX_NESTING` (dotted keys included)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _too_deep(source, None)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def parse_text(text: str, *, source: str = "config.toml") -> tomlkit.TOMLDocument:
    """Parse config.toml text, raising :class:`ConfigSyntaxError` with a line and column.

    The stricter standard-library parser gives the verdict and the message; tomlkit builds the
    document that keeps comments and layout. Values nested deeper than :data:`MAX_NESTING`
    levels are refused before either parser sees them.
    """
    _check_bracket_nesting(text, source)
    try:
        plain = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raw = str(exc)
        match = _TOMLLIB_POS.match(raw)
        if match:
            loc = Location(int(match.group("line")), int(match.group("col")))
            raise ConfigSyntaxError(match.group("msg"), source=source, location=loc) from None
        raise ConfigSyntaxError(raw, source=source, location=None) from None
    _check_value_nesting(plain, source)
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        loc = Location(exc.line, exc.col)
        message = str(exc).split(" at line ")[0]
        raise ConfigSyntaxError(message, source=source, location=loc) from None


# --------------------------------------------------------------------------- locations


def _split_dotted(text: str) -> list[str]:
    """Split a TOML dotted key (``a."b.c".d``) into its parts."""
    parts: list[str] = []
    buf = ""
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                buf += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(buf.strip())
            buf = ""
        else:
            buf += ch
    parts.append(buf.strip())
    return parts


_HEADER_RE = re.compile(r"^(\s*)(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY_RE = re.compile(
    r"^(\s*)((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
    r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def locate_keys(text: str) -> dict[Path_, Location]:
    """Map each key path (``("runners", 0, "docker", "privileged")``) to where it is written.

    A light line scanner, good enough for error messages: tables, arrays of tables and
    (dotted) keys at the start of a line. Lines inside multi-line strings are skipped.
    """
    where: dict[Path_, Location] = {}
    aot_index: dict[Path_, int] = {}
    current: Path_ = ()
    in_multiline: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER_RE.match(line)
        if header:
            names = _split_dotted(header.group(3))
            is_aot = header.group(2) == "[["
            resolved: list[str | int] = []
            for i, name in enumerate(names):
                resolved.append(name)
                last = i == len(names) - 1
                if last and is_aot:
                    key = tuple(resolved)
                    aot_index[key] = aot_index.get(key, -1) + 1
                    resolved.append(aot_index[key])
                elif tuple(resolved) in aot_index:
                    resolved.append(aot_index[tuple(resolved)])
                where.setdefault(tuple(resolved), Location(lineno, len(header.group(1)) + 1))
            current = tuple(resolved)
            continue
        match = _KEY_RE.match(line)
        if match:
            path = current + tuple(_split_dotted(match.group(2)))
            where.setdefault(path, Location(lineno, len(match.group(1)) + 1))
            rest = line[match.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return where


def nearest_location(where: Mapping[Path_, Location], path: Path_) -> Location | None:
    """The location of ``path``, else of its closest written ancestor."""
    probe = tuple(path)
    while probe:
        if probe in where:
            return where[probe]
        probe = probe[:-1]
    return None


# --------------------------------------------------------------------------- values


def _toml_item(value: Any) -> Item:
    """A tomlkit item for ``value``; UTC datetimes are written the way gitlab-runner does (Z)."""
    if isinstance(value, Item):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value.utcoffset() == UTC.utcoffset(None):
            v = value.astimezone(UTC) if value.year > 1 else value
            text = (
                f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            )
            if value.microsecond:
                text += f".{value.microsecond:06d}"
            # With its newline, so the item ends its line wherever it is added.
            parsed = tomlkit.parse(f"v = {text}Z\n").item("v")
            assert isinstance(parsed, Item)
            return parsed
    item: Item = tomlkit.item(value)
    return item


def _is_table_value(value: Any) -> bool:
    return isinstance(value, Mapping) and not isinstance(value, tomlkit.items.InlineTable)


def _render_table(header: list[str], values: Mapping[str, Any], depth: int, *, aot: bool) -> str:
    """Render a table in gitlab-runner's layout (two spaces per nesting level)."""
    pad = "  " * depth
    name = ".".join(_quote_key(part) for part in header)
    lines = [f"{pad}[[{name}]]" if aot else f"{pad}[{name}]"]
    for key, value in values.items():
        if value is None or _is_table_value(value) or _is_aot_value(value):
            continue
        lines.append(f"{pad}  {_quote_key(key)} = {_toml_item(value).as_string()}")
    text = "\n".join(lines) + "\n"
    for key, value in values.items():
        if _is_table_value(value):
            text += _render_table([*header, key], value, depth + 1, aot=False)
        elif _is_aot_value(value):
            for element in value:
                text += _render_table([*header, key], element, depth + 1, aot=True)
    return text


def _is_aot_value(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(_is_table_value(v) for v in value)
        and not isinstance(value, tomlkit.items.Array)
    )


def _quote_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else tomlkit.item(key).as_string()


def _take_trailing_trivia(table: Table | tomlkit.TOMLDocument) -> list[tuple[Any, Any]]:
    """Detach the blank lines and comments that end ``table`` (they precede the next section).

    A new sub-table is then added before them, so a comment written above the next
    ``[[runners]]`` stays above it.
    """
    body = table.value.body if isinstance(table, Table) else table.body
    if not body:
        return []
    last_key, last = body[-1]
    if last_key is not None and isinstance(last, Table):
        return _take_trailing_trivia(last)
    taken: list[tuple[Any, Any]] = []
    while (
        body
        and body[-1][0] is None
        and isinstance(body[-1][1], tomlkit.items.Whitespace | tomlkit.items.Comment)
    ):
        taken.insert(0, body.pop())
    return taken


def _body_of_last(table: Table | tomlkit.TOMLDocument) -> list[tuple[Any, Any]]:
    """The body list that ends ``table`` when rendered (its deepest last sub-table's)."""
    body = table.value.body if isinstance(table, Table) else table.body
    if body and body[-1][0] is not None and isinstance(body[-1][1], Table):
        return _body_of_last(body[-1][1])
    return body


def _end_last_line(body: list[tuple[Any, Any]]) -> None:
    """Make the last item of ``body`` end its line (a file may end without a newline)."""
    if not body:
        return
    _key, last = body[-1]
    if isinstance(last, tomlkit.items.Whitespace):
        if not last.s.endswith("\n"):
            body[-1] = (None, tomlkit.items.Whitespace(last.s + "\n"))
        return
    if not last.trivia.trail.endswith("\n"):
        last.trivia.trail += "\n"


def _sibling_indent(table: Table, default: str) -> str:
    for _key, item in table.value.body:
        if _key is not None and not isinstance(item, Table | AoT):
            return item.trivia.indent
    return default


def _header_indent(table: Table) -> str:
    return table.trivia.indent.rsplit("\n", 1)[-1]


def set_key(table: Table | tomlkit.TOMLDocument, key: str, value: Any, *, path: list[str]) -> None:
    """Set ``table[key]`` keeping the file's layout.

    An existing key is replaced where it stands. A new plain key goes after the last plain key,
    indented like its siblings; a mapping becomes a sub-table and a list of mappings an array of
    tables, written in gitlab-runner's layout. A mapping given for an existing (inline) table is
    merged key by key; ``None`` removes a key. ``path`` is the table's own key path
    (``["runners"]`` for a runner entry).
    """
    depth = len(path)
    existing = table.get(key)
    if value is None:
        if key in table:
            del table[key]
        return
    if _is_table_value(value) and isinstance(existing, Table):
        for sub_key, sub_value in value.items():
            set_key(existing, sub_key, sub_value, path=[*path, key])
        return
    if _is_table_value(value) and isinstance(existing, tomlkit.items.InlineTable):
        for sub_key, sub_value in value.items():
            if sub_value is None:
                existing.pop(sub_key, None)
            else:
                existing[sub_key] = sub_value
        return
    if _is_table_value(value) or _is_aot_value(value):
        _add_tables(table, key, value, path=path)
        return
    _set_plain(table, key, value, depth=depth)


def _add_tables(
    table: Table | tomlkit.TOMLDocument, key: str, value: Any, *, path: list[str]
) -> None:
    """Add (or replace) ``key`` as a sub-table or an array of tables in gitlab-runner's layout."""
    depth = len(path)
    full = [*path, key]
    if _is_table_value(value):
        text = _render_table(full, value, depth, aot=False)
    else:
        text = "".join(_render_table(full, element, depth, aot=True) for element in value)
    node: Any = tomlkit.parse(text)
    for part in full:
        node = node[part]
    if isinstance(node, Table):
        node.trivia.indent = "  " * depth
    if key in table:
        del table[key]
    trailing = _take_trailing_trivia(table)
    _end_last_line(_body_of_last(table))
    table.add(key, node)
    last = node.body[-1] if isinstance(node, AoT) else node
    last.value.body.extend(trailing)


def _set_plain(table: Table | tomlkit.TOMLDocument, key: str, value: Any, *, depth: int) -> None:
    """Set a plain (non-table) value, in place if the key exists, else after the plain keys."""
    # The raw item: ``table.get`` gives a plain bool for a boolean (it has no trivia).
    container = table.value if isinstance(table, Table) else table
    existing = container.item(key) if key in table else None
    item = _toml_item(value)
    if existing is not None:
        if isinstance(existing, Item):
            item.trivia.indent = existing.trivia.indent
            item.trivia.comment_ws = existing.trivia.comment_ws
            item.trivia.comment = existing.trivia.comment
            item.trivia.trail = existing.trivia.trail
        table[key] = item
        return
    body = table.value.body if isinstance(table, Table) else table.body
    _end_last_line(body)
    tables_before = {k: v.trivia.indent for k, v in body if k is not None and isinstance(v, Table)}
    default = "  " * depth
    indent = _sibling_indent(table, default) if isinstance(table, Table) else ""
    table.add(key, item)
    for sub_key, old_indent in tables_before.items():
        child = table.get(sub_key)
        if isinstance(child, Table):
            child.trivia.indent = old_indent
    added = table.get(key)
    if isinstance(added, Item):
        added.trivia.indent = indent


# --------------------------------------------------------------------------- the document


class ConfigDocument:
    """One config.toml, loaded with tomlkit; edits keep everything they do not touch.

    Use :meth:`add_runner`, :meth:`update_runner` and :meth:`remove_runner` for runner entries,
    :meth:`set_global` for keys of the root table, and :meth:`dumps` to get the text back.
    """

    def __init__(self, document: tomlkit.TOMLDocument, *, source: str = "config.toml") -> None:
        self.document = document
        self.source = source
        self._runners_as_tables()

    def _runners_as_tables(self) -> None:
        """Rewrite ``runners = [{...}, ...]`` as ``[[runners]]`` sections.

        gitlab-runner reads an array of inline tables exactly like an array of tables, but only
        the latter can take a new runner or a new sub-table; ``runners = []`` means no runner.
        Any other shape is left alone (validation reports it).
        """
        runners = self.document.get("runners")
        if not isinstance(runners, tomlkit.items.Array) or not all(
            isinstance(item, tomlkit.items.InlineTable) for item in runners
        ):
            return
        entries = [item.unwrap() for item in runners]
        del self.document["runners"]
        if not entries:
            return
        text = "".join(_render_table(["runners"], entry, 0, aot=True) for entry in entries)
        aot = tomlkit.parse(text)["runners"]
        tables = list(aot.body)
        for table in tables[1:]:
            table.trivia.indent = "\n"
        if not self.dumps():  # nothing else: start afresh (tomlkit would add a blank line)
            self.document = tomlkit.document()
        _end_last_line(_body_of_last(self.document))
        before = self.dumps()
        if before.strip() and not before.endswith("\n\n"):
            tables[0].trivia.indent = "\n"
        self.document.append("runners", aot)

    @classmethod
    def parse(cls, text: str, *, source: str = "config.toml") -> ConfigDocument:
        """Parse ``text``; raises :class:`ConfigSyntaxError` with the position of the problem."""
        return cls(parse_text(text, source=source), source=source)

    @classmethod
    def empty(cls) -> ConfigDocument:
        """The file ``gitlab-runner register`` starts from: global defaults and no runner."""
        return cls.parse(
            "concurrent = 1\ncheck_interval = 0\nshutdown_timeout = 0\n\n"
            "[session_server]\n  session_timeout = 1800\n"
        )

    def dumps(self) -> str:
        """The document's text (byte-identical to the input when nothing was edited)."""
        return tomlkit.dumps(self.document)

    def plain(self) -> dict[str, Any]:
        """The document as plain Python values (dicts, lists, str, int, datetime...)."""
        return self.document.unwrap()

    # ---- runners

    def _aot(self, *, create: bool) -> AoT | None:
        runners = self.document.get("runners")
        if runners is None:
            if not create:
                return None
            aot = tomlkit.aot()
            self.document.append("runners", aot)
            return aot
        if not isinstance(runners, AoT):
            raise ConfigError(
                f"{self.source}: 'runners' must be an array of tables ([[runners]])",
                hint="Write each runner as a [[runners]] section, as gitlab-runner does.",
            )
        return runners

    def runner_tables(self) -> list[Table]:
        """The raw ``[[runners]]`` tables, in file order."""
        aot = self._aot(create=False)
        return list(aot.body) if aot is not None else []

    def find_runner(self, ref: RunnerRef) -> int | None:
        """The index of the runner ``ref`` names, or ``None``."""
        tables: list[Table | None] = list(self.runner_tables())
        if ref.url is not None:
            url = ref.url.rstrip("/")
            tables = [
                t if t is not None and str(t.get("url", "")).rstrip("/") == url else None
                for t in tables
            ]
        if ref.id is not None:
            hits = [i for i, t in enumerate(tables) if t is not None and t.get("id") == ref.id]
        elif ref.token is not None:
            hits = [
                i for i, t in enumerate(tables) if t is not None and t.get("token") == ref.token
            ]
        elif ref.name is not None:
            hits = [i for i, t in enumerate(tables) if t is not None and t.get("name") == ref.name]
        else:
            raise ConfigError("a runner reference needs an id, a token or a name")
        if len(hits) > 1:
            raise ConfigError(
                f"{self.source}: {len(hits)} runners match {ref.describe()}",
                hint="Name the runner by id or token instead.",
            )
        return hits[0] if hits else None

    def _require(self, ref: RunnerRef) -> int:
        index = self.find_runner(ref)
        if index is None:
            raise RunnerNotFoundError(
                f"{self.source}: no runner with {ref.describe()}",
                hint="Run `runnerctl config show` to list the runners in this file.",
            )
        return index

    def add_runner(self, entry: Mapping[str, Any]) -> int:
        """Append a ``[[runners]]`` entry (nested mappings become sub-tables); returns its index.

        Refuses an entry whose token, or whose non-zero id for the same GitLab URL, is already
        in the file (runners of two GitLab instances may share an id).
        """
        token = entry.get("token")
        runner_id = entry.get("id")
        url = entry.get("url")
        if token and self.find_runner(RunnerRef(token=str(token))) is not None:
            raise ConfigError(
                f"{self.source}: a runner with this token is already configured",
                hint="Update that runner instead of adding it again.",
            )
        same = RunnerRef(id=int(runner_id), url=str(url)) if runner_id and url else None
        if runner_id and not url:
            same = RunnerRef(id=int(runner_id))
        if same is not None and self.find_runner(same) is not None:
            raise ConfigError(
                f"{self.source}: a runner with id {runner_id} is already configured"
                + (f" for {str(url).rstrip('/')}" if url else ""),
                hint="Update that runner instead of adding it again.",
            )
        aot = self._aot(create=True)
        assert aot is not None
        parsed = tomlkit.parse(_render_table(["runners"], entry, 0, aot=True))
        table = parsed["runners"][0]
        text = self.dumps()
        if text and not text.endswith("\n\n"):
            table.trivia.indent = "\n" if text.endswith("\n") else "\n\n"
        aot.append(table)
        return len(aot.body) - 1

    def update_runner(self, ref: RunnerRef, values: Mapping[str, Any]) -> None:
        """Set keys of one runner; nested mappings merge into sub-tables, ``None`` removes."""
        table = self.runner_tables()[self._require(ref)]
        for key, value in values.items():
            set_key(table, key, value, path=["runners"])

    def remove_runner(self, ref: RunnerRef) -> None:
        """Delete one ``[[runners]]`` entry (the rest of the file is left as it is)."""
        index = self._require(ref)
        aot = self._aot(create=False)
        assert aot is not None
        tables = list(aot.body)
        # Comments right above a [[runners]] header belong to that runner (in TOML they end the
        # section before it): drop the removed runner's, keep the ones of the runner after it.
        previous = tables[index - 1] if index > 0 else self._table_before_runners()
        if previous is not None:
            following = _take_trailing_trivia(tables[index])
            leading = _take_trailing_trivia(previous)
            kept = [(k, v) for k, v in leading if isinstance(v, tomlkit.items.Whitespace)]
            _body_of_last(previous).extend(kept + following)
        del aot[index]
        if len(aot) == 0:
            # An empty array of tables would be written as `runners = []` at the top, which is
            # no longer a valid place for [[runners]] sections added later: drop the key.
            del self.document["runners"]

    def _table_before_runners(self) -> Table | None:
        """The table written right above the first ``[[runners]]`` (if it is a table)."""
        body = self.document.body
        for position, (key, _item) in enumerate(body):
            if key is not None and key.key == "runners":
                for prev_key, prev in reversed(body[:position]):
                    if prev_key is not None:
                        return prev if isinstance(prev, Table) else None
                return None
        return None

    def set_global(self, key: str, value: Any) -> None:
        """Set a key of the root table (``concurrent``, ``log_level``...)."""
        set_key(self.document, key, value, path=[])

    def iter_runner_plain(self) -> Iterator[dict[str, Any]]:
        """Each runner as plain Python values."""
        for table in self.runner_tables():
            yield table.unwrap()


def is_datetime_value(value: Any) -> bool:
    """True for a TOML date, time or date-time value."""
    return isinstance(value, datetime | date | time)
