"""Reading a TOML configuration file, and the line of each key for error messages.

``tomllib`` parses (it is the standard library's, and it keeps no positions); ``KeyLines``
finds where keys are written with a single linear scan of plain string operations. It
follows ``[table]`` and ``[[array]]`` headers and records the first line of each ``key =``
(dotted and quoted keys included); a key it cannot place falls back to its table's header,
and messages always name the key path too, so an unknowable line costs precision, not
correctness. Nothing here uses a regular expression: a hostile line cannot make it backtrack.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MAX_CONFIG_BYTES = 1 << 20
"""A configuration is a few hundred bytes; a pyproject.toml rarely 50 KB."""
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class TomlError(Exception):
    """The file cannot be read as TOML; ``line`` when the parser says where."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a configuration file (bounded in size, nesting and time); returns data and text."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise TomlError(f"cannot read the configuration: {e.strerror or e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise TomlError(f"larger than {MAX_CONFIG_BYTES:,} bytes; not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TomlError(f"not valid UTF-8 at byte {e.start}") from e
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        message, line = _parser_position(str(e))
        raise TomlError(f"invalid TOML: {message}", line) from e
    except RecursionError as e:  # tomllib recurses into nested arrays and inline tables
        raise TomlError("invalid TOML: values are nested too deeply") from e


def _parser_position(text: str) -> tuple[str, int | None]:
    """Split tomllib's "... (at line N, column M)" into the message and N."""
    head, sep, tail = text.rpartition(" (at line ")
    if not sep:
        return text, None
    number = tail.partition(",")[0]
    return head, int(number) if number.isdigit() else None


def _skip_space(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t":
        i += 1
    return i


def parse_key(line: str, i: int = 0) -> tuple[tuple[str, ...], int] | None:
    """The dotted key starting at ``line[i]`` (bare or quoted parts) and where it ends; None
    when there is none. One pass over the characters."""
    parts: list[str] = []
    while True:
        i = _skip_space(line, i)
        if i >= len(line):
            return None
        quote = line[i]
        if quote in "\"'":
            end = line.find(quote, i + 1)
            if end < 0:
                return None
            parts.append(line[i + 1 : end])
            i = end + 1
        else:
            start = i
            while i < len(line) and line[i] in _BARE:
                i += 1
            if i == start:
                return None
            parts.append(line[start:i])
        i = _skip_space(line, i)
        if i < len(line) and line[i] == ".":
            i += 1
            continue
        return tuple(parts), i


class KeyLines:
    """Line numbers of keys in a TOML text (see the module docstring)."""

    LOOKAHEAD = 200
    """lines searched after a key for one of its array's values."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.keys: dict[tuple[tuple[str, ...], int | None, tuple[str, ...]], int] = {}
        self.headers: dict[tuple[tuple[str, ...], int | None], int] = {}
        self.key_lines: set[int] = set()
        table: tuple[str, ...] = ()
        index: int | None = None
        counts: dict[tuple[str, ...], int] = {}
        in_multiline: str | None = None
        for number, line in enumerate(self.lines, start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            start = _skip_space(line, 0)
            if line.startswith("[", start):
                array = line.startswith("[[", start)
                parsed = parse_key(line, start + (2 if array else 1))
                if parsed is None:
                    continue
                table = parsed[0]
                if array:
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = None
                self.headers.setdefault((table, index), number)
                continue
            parsed = parse_key(line, start)
            if parsed is None or not line.startswith("=", parsed[1]):
                continue
            self.keys.setdefault((table, index, parsed[0]), number)
            self.key_lines.add(number)
            rest = line[parsed[1] + 1 :]
            for fence in ('"""', "'''"):
                if rest.count(fence) % 2 == 1:
                    in_multiline = fence

    def line(
        self,
        table: tuple[str, ...],
        key: str | None = None,
        index: int | None = None,
        value: str | None = None,
    ) -> int | None:
        """Line of ``key`` in ``table`` (element ``index`` of an array of tables), or of
        ``value`` quoted after it; falls back to the table header."""
        found = None
        if key is not None:
            found = self.keys.get((table, index, (key,)))
            if found is None and index is None:
                # dotted keys written from a parent table: [tool] tiecheck.fail-on = ...
                for n in range(len(table)):
                    found = self.keys.get((table[:n], None, (*table[n:], key)))
                    if found is not None:
                        break
        if found is not None and value is not None:
            quoted = (f'"{value}"', f"'{value}'")
            last = min(found + self.LOOKAHEAD, len(self.lines))
            for number in range(found, last + 1):
                if number > found and number in self.key_lines:
                    break
                text = self.lines[number - 1]
                if quoted[0] in text or quoted[1] in text:
                    return number
        if found is not None:
            return found
        if key is not None and index is None:
            # a key written as a table of its own: [tool] in tiecheck.toml, [key.sub]
            headers = [
                n for (t, _), n in self.headers.items() if t[: len(table) + 1] == (*table, key)
            ]
            if headers:
                return min(headers)
        return self.headers.get((table, index))
