"""Configuration files: finding the one in force, reading it, and validating it with the file
and line of every mistake.

Settings live in ``[tool.tiecheck]`` of ``pyproject.toml`` or at the top level of
``tiecheck.toml`` (which wins when both are in one folder). The nearest one from the current
folder upward applies; ``--config FILE`` names one and ``--isolated`` ignores them all. Which
file applied is part of every run's result, so a file in a folder above the project cannot
change an exit code unseen.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiecheck.config.globs import glob_matches, glob_problem
from tiecheck.config.policy import Layer, Policy, parse_codes
from tiecheck.config.toml import KeyLines, TomlError, read_toml
from tiecheck.errors import TiecheckError
from tiecheck.options import Expect, FailOn
from tiecheck.rules import Code

CONFIG_FILES = ("tiecheck.toml", "pyproject.toml")
"""Looked for in this order in each folder, from the current one upward."""
SETTING_KEYS = ("expect", "fail-on", "ignore", "select")
TOP_KEYS = (*SETTING_KEYS, "overrides")
OVERRIDE_KEYS = ("path", *SETTING_KEYS)


def shown(path: Path) -> str:
    """A path as messages show it: relative to the current folder when inside it."""
    try:
        here = Path(os.path.normpath(Path.cwd().absolute()))
        return str(Path(os.path.normpath(path.absolute())).relative_to(here))
    except (ValueError, OSError):
        return str(path)


class ConfigError(TiecheckError):
    """The configuration is wrong; the message names the file and line (exit code 2)."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None) -> None:
        where = "" if path is None else f"{shown(path)}:{line}: " if line else f"{shown(path)}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


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
    isolated: bool = False
    """configuration files were ignored on purpose (``--isolated``)."""

    @property
    def root(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def table(self) -> str | None:
        """Where in the file the settings are: ``tool.tiecheck`` or the top level."""
        if self.path is None:
            return None
        return "tool.tiecheck" if self.path.name == "pyproject.toml" else "(top level)"

    def describe(self) -> str:
        """For summaries: which configuration applied."""
        if self.path is None:
            return (
                "no configuration file (--isolated)" if self.isolated else "no configuration file"
            )
        suffix = " [tool.tiecheck]" if self.path.name == "pyproject.toml" else ""
        return f"{shown(self.path)}{suffix}"

    def policy_for(self, source: str, cli: Layer | None = None) -> Policy:
        layers = [self.base]
        layers += [o.layer for o in self.overrides if o.matches(source, self.root)]
        if cli is not None:
            layers.append(cli)
        return Policy.from_layers(layers)


def _has_tiecheck_table(path: Path) -> bool:
    try:
        data, _ = read_toml(path)
    except TomlError:
        # A broken pyproject.toml that mentions tiecheck: say so (by loading it) rather than
        # skip it silently.
        try:
            with path.open("rb") as f:
                return b"tiecheck" in f.read(1 << 20)
        except OSError:
            return False
    tool = data.get("tool")
    return isinstance(tool, dict) and "tiecheck" in tool


def find_config(start: Path | None = None) -> Path | None:
    """The nearest ``tiecheck.toml``, or ``pyproject.toml`` with ``[tool.tiecheck]``, from
    ``start`` (default: the current folder) upward; None when there is none."""
    folder = Path(os.path.normpath((start or Path.cwd()).absolute()))
    for candidate in (folder, *folder.parents):
        for name in CONFIG_FILES:
            path = candidate / name
            if not path.is_file():
                continue
            if name == "tiecheck.toml" or _has_tiecheck_table(path):
                return path
    return None


class _Reader:
    """Validates one configuration file into a ``Config``; every error names file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data, text = read_toml(path)
        except TomlError as e:
            raise ConfigError(str(e), path, e.line) from e
        self.lines = KeyLines(text)
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
        table = (*self.table, "overrides")
        for i, entry in enumerate(raw):
            layer = self.layer(entry, OVERRIDE_KEYS, i)
            paths = entry.get("path")
            if paths is None:
                raise self.error(
                    f"{self.name(None, i)} has no 'path' (a glob naming the sources it applies to)",
                    index=i,
                    table=table,
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
                    table=table,
                )
            for pattern in paths:
                problem = glob_problem(pattern)
                if problem:
                    raise self.error(
                        f"{self.name('path', i)}: the glob {pattern!r} {problem}",
                        "path",
                        i,
                        table=table,
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

        def codes(key: str) -> frozenset[Code] | None:
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

        expect = choice("expect", [e.value for e in Expect])
        fail_on = choice("fail-on", [f.value for f in FailOn])
        return Layer(
            expect=Expect(expect) if expect else None,
            fail_on=FailOn(fail_on) if fail_on else None,
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


def resolve_config(explicit: Path | None, isolated: bool) -> Config:
    """The configuration a run uses: ``explicit`` if given, none with ``isolated``, else the
    nearest one found upward from the current folder."""
    if isolated:
        return Config(isolated=True)
    if explicit is not None:
        return load_config(explicit)
    return discover_config()
