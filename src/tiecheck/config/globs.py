"""Path globs of ``[[overrides]]``: which sources an override applies to.

Matched one path component at a time with ``fnmatch`` (whose translation avoids the
backtracking a naive ``*`` -> ``.*`` regex has), ``**`` standing for any number of whole
components. Work is bounded by (components of the pattern) x (components of the path), so a
hostile ``*a*a*a*a*b`` against a long name costs what fnmatch costs, never exponential time.
"""

from __future__ import annotations

import fnmatch
import os
from functools import cache
from pathlib import Path, PurePosixPath


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used as a path glob, or None."""
    if not pattern.strip():
        return "is empty"
    if "\0" in pattern:
        return "holds a NUL character"
    if len(pattern) > 4096:
        return "is longer than any path"
    return None


def _absolute(path: Path) -> Path:
    """Absolute and normalised, without resolving symbolic links (Hub cache snapshots are
    symlinks into a shared store; a glob is about the path the user sees)."""
    return Path(os.path.normpath(path.absolute()))


def _parts(path: str) -> tuple[str, ...]:
    text = path.replace(os.sep, "/") if os.sep != "/" else path
    return tuple(p for p in PurePosixPath(text).parts if p not in (".", "/"))


@cache
def _segment(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def _prefixes_matched(pattern: tuple[str, ...], path: tuple[str, ...]) -> list[bool]:
    """``result[j]``: whether the component patterns match ``path[:j]`` (``**`` = any number
    of components). Dynamic programming over (pattern position, path position): each pair is
    decided once."""
    reach = [False] * (len(path) + 1)  # reach[j]: pattern[:i] matches path[:j]
    reach[0] = True
    for part in pattern:
        if part == "**":
            seen = False
            for j in range(len(path) + 1):
                seen = seen or reach[j]
                reach[j] = seen
            continue
        nxt = [False] * (len(path) + 1)
        for j in range(len(path)):
            if reach[j] and _segment(part, path[j]):
                nxt[j + 1] = True
        reach = nxt
    return reach


def glob_matches(pattern: str, source: str, root: Path) -> bool:
    """Whether an override's ``path`` glob covers a source.

    The glob is relative to ``root`` (the config file's folder); a match on a folder covers
    everything inside it, and a glob without ``/`` matches a file or folder name at any depth.
    Sources that are not local paths (Hub repo ids) are matched as written.
    """
    if glob_problem(pattern):
        return False
    parts = _parts(pattern.lstrip("/"))
    candidates = [_parts(source)]
    try:
        absolute = _absolute(Path(source).expanduser())
        candidates.append(_parts(absolute.relative_to(_absolute(root)).as_posix()))
    except (ValueError, OSError):
        pass
    for path in candidates:
        # a folder match covers what is inside it: try every prefix of the path
        if any(_prefixes_matched(parts, path)[1:]):
            return True
        if len(parts) == 1 and any(_segment(parts[0], name) for name in path):
            return True
    return False
