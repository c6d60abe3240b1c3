"""Policies: which findings a run reports and what makes it fail, from config and flags.

A policy is resolved per source from up to three layers, later ones winning: the
``[tool.tiecheck]`` table of ``pyproject.toml`` (or a ``tiecheck.toml``), the
``[[tool.tiecheck.overrides]]`` entries whose ``path`` glob matches the source, and the command
line. ``expect`` and ``fail-on`` take the last value given; ``select`` replaces the selection
made so far and ``ignore`` removes codes from it, layer by layer (as in ruff).

``Policy.apply`` is the one place findings are filtered: renderers and the exit code only ever
see filtered reports, so a format cannot disagree with another about what was reported.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from tiecheck.analysis.ties import Verdict
from tiecheck.errors import TiecheckError
from tiecheck.report import Report
from tiecheck.rules import RULES, Severity, find_rule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CONFIG_FILES = ("tiecheck.toml", "pyproject.toml")
"""Looked for in this order in each folder, from the current one upward."""
EXPECT_VALUES = ("tied", "untied")
FAIL_ON_VALUES = ("error", "warning", "info", "never")
SETTING_KEYS = ("expect", "fail-on", "ignore", "select")
TOP_KEYS = (*SETTING_KEYS, "overrides")
OVERRIDE_KEYS = ("path", *SETTING_KEYS)
DEFAULT_FAIL_ON = "error"


def _shown(path: Path) -> str:
    """A path as an error message shows it: relative to the current folder when inside it."""
    try:
        return str(_absolute(path).relative_to(_absolute(Path.cwd())))
    except ValueError:
        return str(path)


class ConfigError(TiecheckError):
    """The configuration is wrong; the message names the file and line (exit code 2)."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None) -> None:
        shown = None if path is None else _shown(path)
        where = "" if shown is None else f"{shown}:{line}: " if line else f"{shown}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


# ---------------------------------------------------------------------------------------------
# layers and the resolved policy


@dataclass(frozen=True)
class Layer:
    """One level of settings: the config table, one override, or the command line."""

    expect: str | None = None
    """``tied`` or ``untied``; None leaves the previous layer's value."""
    fail_on: str | None = None
    """``error``, ``warning``, ``info`` or ``never``; None leaves the previous layer's value."""
    select: frozenset[str] | None = None
    """rule codes to report; replaces the selection so far. None: no change."""
    ignore: frozenset[str] = frozenset()
    """rule codes removed from the selection so far."""


@dataclass(frozen=True)
class Policy:
    """What one source is checked against; ``Policy()`` is the default (all rules, fail on
    errors)."""

    expect: Verdict | None = None
    fail_on: Severity | None = Severity.ERROR
    """lowest severity that fails the source; None never fails (``fail-on = "never"``)."""
    enabled: frozenset[str] = frozenset(RULES)

    @classmethod
    def from_layers(cls, layers: Iterable[Layer]) -> Policy:
        expect, fail_on = None, DEFAULT_FAIL_ON
        enabled = set(RULES)
        for layer in layers:
            expect = layer.expect or expect
            fail_on = layer.fail_on or fail_on
            if layer.select is not None:
                enabled = set(layer.select)
            enabled -= layer.ignore
        return cls(
            expect=Verdict(expect) if expect else None,
            fail_on=None if fail_on == "never" else Severity(fail_on),
            enabled=frozenset(enabled),
        )

    def apply(self, report: Report) -> Report:
        """The report without the findings this policy does not report (a note says how many)."""
        kept = [f for f in report.findings if f.code in self.enabled]
        hidden = sorted({f.code for f in report.findings if f.code not in self.enabled})
        if not hidden:
            return report
        count = len(report.findings) - len(kept)
        note = (
            f"policy: {count} finding(s) not reported ({', '.join(hidden)} ignored or not selected)"
        )
        return replace(report, findings=kept, notes=[*report.notes, note])

    def fails(self, report: Report) -> bool:
        return report.fails(self.fail_on)


@dataclass(frozen=True)
class Outcome:
    """One source's result: a filtered report, or why the source could not be opened."""

    source: str
    policy: Policy
    report: Report | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.report is not None and self.policy.fails(self.report)

    @property
    def error_message(self) -> str:
        """Why the source could not be inspected, naming the source."""
        error = self.error or "could not be inspected"
        return error if error.startswith(self.source) else f"{self.source}: {error}"


@dataclass(frozen=True)
class Run:
    """Every outcome of one ``tiecheck inspect`` call, in the order the sources were given."""

    outcomes: Sequence[Outcome] = ()

    @classmethod
    def of(cls, reports: Sequence[Report]) -> Run:
        """A run with the default policy, for renderers called with bare reports."""
        return cls([Outcome(r.checkpoint.source, Policy(), r) for r in reports])

    @property
    def reports(self) -> list[Report]:
        return [o.report for o in self.outcomes if o.report is not None]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.report is None]

    @property
    def failing(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    def outcome_of(self, report: Report) -> Outcome:
        for outcome in self.outcomes:
            if outcome.report is report:
                return outcome
        return Outcome(report.checkpoint.source, Policy(), report)

    def counts(self) -> dict[Severity, int]:
        return {s: sum(f.severity is s for r in self.reports for f in r.findings) for s in Severity}

    def summary(self) -> str:
        """One line for stderr: sources, failing, unreadable, and findings by severity."""
        counts = self.counts()
        total = len(self.outcomes)
        passed = total - len(self.failing) - len(self.errors)
        return (
            f"{total} source(s): {passed} passed, {len(self.failing)} failed, "
            f"{len(self.errors)} unreadable; {counts[Severity.ERROR]} error(s), "
            f"{counts[Severity.WARNING]} warning(s), {counts[Severity.INFO]} info"
        )


# ---------------------------------------------------------------------------------------------
# rule selectors (codes or names, repeatable and comma-separated)


def parse_codes(values: Iterable[str]) -> frozenset[str]:
    """``["TC101,TC102", "tied-duplicate-copy"]`` -> codes; ValueError names an unknown one."""
    codes = set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            rule = find_rule(part)
            if rule is None:
                raise ValueError(
                    _unknown("rule", part, [*RULES, *(r.name for r in RULES.values())])
                )
            codes.add(rule.code)
    return frozenset(codes)


def _unknown(what: str, value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}"


# ---------------------------------------------------------------------------------------------
# globs


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob as a regex: ``*`` and ``?`` stay within one folder, ``**`` crosses folders,
    ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _absolute(path: Path) -> Path:
    """Absolute and normalised, without resolving symbolic links (Hub cache snapshots are
    symlinks into a shared store; a glob is about the path the user sees)."""
    return Path(os.path.normpath(path.absolute()))


def _clean(path: str) -> str:
    text = path.replace(os.sep, "/") if os.sep != "/" else path
    text = str(PurePosixPath(text)) if text else text
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/") or text


def glob_matches(pattern: str, source: str, root: Path) -> bool:
    """Whether an override's ``path`` glob covers a source.

    The glob is relative to ``root`` (the config file's folder); a match on a folder covers
    everything inside it, and a glob without ``/`` matches a file or folder name at any depth.
    Sources that are not local paths (Hub repo ids) are matched as written.
    """
    pattern = _clean(pattern.lstrip("/"))
    regex = glob_regex(pattern)
    candidates = [_clean(source)]
    try:
        absolute = _absolute(Path(source).expanduser())
        relative = absolute.relative_to(_absolute(root))
        candidates.append(relative.as_posix())
    except ValueError:
        pass
    for candidate in candidates:
        parts = PurePosixPath(candidate).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(regex.match(p) for p in prefixes):
            return True
        if "/" not in pattern and any(regex.match(part) for part in parts):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# configuration files


@dataclass(frozen=True)
class Override:
    paths: tuple[str, ...]
    layer: Layer

    def matches(self, source: str, root: Path) -> bool:
        return any(glob_matches(p, source, root) for p in self.paths)


@dataclass(frozen=True)
class Config:
    """A parsed configuration; ``Config()`` (no file) means the defaults."""

    path: Path | None = None
    base: Layer = field(default_factory=Layer)
    overrides: tuple[Override, ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def policy_for(self, source: str, cli: Layer | None = None) -> Policy:
        layers = [self.base]
        layers += [o.layer for o in self.overrides if o.matches(source, self.root)]
        if cli is not None:
            layers.append(cli)
        return Policy.from_layers(layers)


def _has_tiecheck_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "tiecheck" not in text:
        return False
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        # A broken pyproject.toml that mentions tiecheck: say so rather than skip it silently.
        return True
    tool = data.get("tool")
    return isinstance(tool, dict) and "tiecheck" in tool


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``tiecheck.toml``, or ``pyproject.toml`` with ``[tool.tiecheck]``, from
    ``start`` (default: the current folder) upward; None when there is none."""
    folder = _absolute(start or Path.cwd())
    for candidate in (folder, *folder.parents):
        for name in CONFIG_FILES:
            path = candidate / name
            if not path.is_file():
                continue
            if name == "tiecheck.toml" or _has_tiecheck_table(path):
                return path
    return None


class _Lines:
    """Line numbers of keys in a TOML text, for error messages (tomllib keeps none).

    A line-based scan: it follows ``[table]`` and ``[[array]]`` headers and records the first
    line of each ``key =`` (dotted keys included). Good enough to point at a mistake; an
    unlocated key falls back to its table's header line.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
    _KEY = re.compile(
        r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*="""
    )

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.keys: dict[tuple[tuple[str, ...], int | None, tuple[str, ...]], int] = {}
        self.headers: dict[tuple[tuple[str, ...], int | None], int] = {}
        table: tuple[str, ...] = ()
        index: int | None = None
        counts: dict[tuple[str, ...], int] = {}
        in_multiline = False
        for number, line in enumerate(self.lines, start=1):
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            header = self._HEADER.match(line)
            if header:
                table = self._split(header[2])
                if header[1] == "[[":
                    index = counts.get(table, 0)
                    counts[table] = index + 1
                else:
                    index = None
                self.headers.setdefault((table, index), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault((table, index, self._split(key[1])), number)
                rest = line[key.end() :]
                if rest.count('"""') % 2 == 1 or rest.count("'''") % 2 == 1:
                    in_multiline = True

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.\s]+)\s*(?:\.|$)""", dotted)
        return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)

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
                    parent, rest = table[:n], table[n:]
                    found = self.keys.get((parent, None, (*rest, key)))
                    if found is not None:
                        break
        if found is not None and value is not None:
            for number in range(found, min(found + 200, len(self.lines)) + 1):
                text = self.lines[number - 1]
                if number > found and self._KEY.match(text):
                    break
                if f'"{value}"' in text or f"'{value}'" in text:
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


class _Reader:
    """Validates one configuration file into a ``Config``; every error names file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the configuration: {e}", path) from e
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            match = re.search(r"line (\d+)", str(e))
            message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
            line = int(match[1]) if match else None
            raise ConfigError(f"invalid TOML: {message}", path, line) from e
        self.lines = _Lines(self.text)
        self.table: tuple[str, ...] = ("tool", "tiecheck") if path.name == "pyproject.toml" else ()

    def error(
        self,
        message: str,
        key: str | None = None,
        index: int | None = None,
        value: str | None = None,
        table: tuple[str, ...] | None = None,
    ) -> ConfigError:
        where = self.table if table is None else table
        return ConfigError(message, self.path, self.lines.line(where, key, index, value))

    def name(self, key: str | None = None, index: int | None = None) -> str:
        table = ".".join(self.table)
        if index is not None:
            where = f"[[{table + '.' if table else ''}overrides]] #{index + 1}"
        else:
            where = f"[{table}]" if table else "the top level"
        return f"{key!r} in {where}" if key else where

    def read(self) -> Config:
        data: Any = self.data
        for part in self.table:
            data = data.get(part, {}) if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            raise self.error(f"{'.'.join(self.table)} must be a table")
        base = self.layer(data, TOP_KEYS, None)
        overrides = []
        raw = data.get("overrides", [])
        if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
            raise self.error(
                f"{self.name('overrides')} must be an array of tables "
                f"([[{'.'.join((*self.table, 'overrides'))}]])",
                "overrides",
            )
        overrides_table = (*self.table, "overrides")
        for i, entry in enumerate(raw):
            layer = self.layer(entry, OVERRIDE_KEYS, i)
            paths = entry.get("path")
            if paths is None:
                raise self.error(
                    f"{self.name(None, i)} has no 'path' (a glob naming the sources it applies to)",
                    index=i,
                    table=overrides_table,
                )
            if isinstance(paths, str):
                paths = [paths]
            if not (
                isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths)
            ):
                raise self.error(
                    f"{self.name('path', i)} must be a glob or a list of globs",
                    "path",
                    i,
                    table=overrides_table,
                )
            overrides.append(Override(tuple(paths), layer))
        return Config(self.path, base, tuple(overrides))

    def layer(self, data: dict[str, Any], allowed: Sequence[str], index: int | None) -> Layer:
        table = self.table if index is None else (*self.table, "overrides")
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key.replace("_", "-"), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                if key == "tool" and not self.table:
                    hint = (
                        "; tiecheck.toml holds the settings at its top level, "
                        "without [tool.tiecheck]"
                    )
                raise self.error(
                    f"unknown key {self.name(key, index)}{hint} (allowed: {', '.join(allowed)})",
                    key,
                    index,
                    table=table,
                )

        def choice(key: str, values: Sequence[str]) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or value not in values:
                raise self.error(
                    f"{self.name(key, index)} must be one of {', '.join(map(repr, values))}, "
                    f"not {value!r}",
                    key,
                    index,
                    table=table,
                )
            return value

        def codes(key: str) -> frozenset[str] | None:
            value = data.get(key)
            if value is None:
                return None
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.error(
                    f'{self.name(key, index)} must be a list of rule codes (e.g. ["TC106"])',
                    key,
                    index,
                    table=table,
                )
            for item in value:
                try:
                    parse_codes([item])
                except ValueError as e:
                    raise self.error(
                        f"{self.name(key, index)}: {e}", key, index, item, table=table
                    ) from None
            return parse_codes(value)

        return Layer(
            expect=choice("expect", EXPECT_VALUES),
            fail_on=choice("fail-on", FAIL_ON_VALUES),
            select=codes("select"),
            ignore=codes("ignore") or frozenset(),
        )


def load_config(path: Path) -> Config:
    """Parse and validate a configuration file (``tiecheck.toml`` or ``pyproject.toml``)."""
    return _Reader(path).read()


def discover_config(start: Path | None = None) -> Config:
    """The configuration in force for a run started in ``start``; defaults when none."""
    path = find_config(start)
    return load_config(path) if path is not None else Config()
