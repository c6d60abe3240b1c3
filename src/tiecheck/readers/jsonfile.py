"""Strict JSON for headers, indexes and configs.

Python's ``json`` (like the safetensors loader) silently keeps the last of duplicate keys; a
checkpoint whose header or index says two things about one name is exactly what tiecheck must
report, so duplicates are collected instead of dropped.

Every value is also held to a nesting depth and every file to a size, because what a parser
accepts is not what the rest of the program can afford: ``copy.deepcopy`` of a config (in
``fix``), ``json.dumps`` and ``repr`` recurse, and parsing costs about 20 times the text in
memory.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiecheck.errors import FormatError

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in any JSON tiecheck reads. Configs nest a
few levels (``text_config.rope_scaling``...), indexes and safetensors headers three; later
code recurses over configs (``copy.deepcopy`` when ``fix`` rewrites one, ``json.dumps``), so
a bound well under Python's recursion limit of 1,000 keeps that safe."""

MAX_INDEX_BYTES = 128 << 20
"""Largest index file read. The largest real ones are a few MB (DeepSeek-V3's lists ~92,000
tensors in 9 MB); this is ten times more than any, yet parses in about 1.3 GB at worst."""

MAX_CONFIG_BYTES = 16 << 20
"""Largest config file read (config.json, adapter_config.json). Real configs are kilobytes; the
largest are id2label tables of ~20,000 classes, about 1 MB. Parsing can take ~22 times the text
in memory (measured: 357 MB for 16 MiB of ``[[],[],...]``), so 16 MiB stays within a small CI
runner while leaving room for any real config."""

MAX_JSON_FILE = MAX_INDEX_BYTES
"""Default limit of ``read_json_file``."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes | str) -> tuple[Any, list[str]]:
    """Parse JSON text, returning the value and every key that appeared twice in one object."""
    value, duplicates = parse_json_objects(raw)
    return value, [key for keys in duplicates.values() for key in keys]


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise FormatError when arrays and objects in ``value`` nest deeper than ``limit``.

    Iterative: the value is as deep as the parser allowed, and this must not recurse where
    the code it protects would.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise FormatError(f"JSON is nested too deeply (more than {limit} levels)")
        stack.extend((child, depth + 1) for child in children)


def parse_json_objects(
    raw: bytes | str, *, parse_int: Callable[[str], Any] | None = None
) -> tuple[Any, dict[int, list[str]]]:
    """Parse JSON text; duplicates are reported per object, keyed by ``id()`` of the parsed dict.

    Callers that hold objects to different rules (safetensors: a repeated tensor name is
    accepted by the loader, a repeated field inside one tensor's entry is not) look up the
    objects they care about. The ids stay valid while ``value`` is alive. Values nested
    deeper than ``MAX_JSON_DEPTH`` are refused.
    """
    duplicates: dict[int, list[str]] = {}

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        repeated = []
        for key, value in pairs:
            if key in obj:
                repeated.append(key)
            obj[key] = value
        if repeated:
            duplicates[id(obj)] = repeated
        return obj

    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise FormatError(f"not valid UTF-8 at byte {e.start}") from e
    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs_hook,
            parse_constant=_reject_constant,
            parse_int=parse_int,
        )
    except RecursionError as e:
        raise FormatError("JSON is nested too deeply to parse") from e
    except MemoryError as e:
        raise FormatError("JSON needs more memory to parse than is available") from e
    except ValueError as e:
        raise FormatError(f"invalid JSON: {e}") from e
    check_depth(value)
    return value, duplicates


def read_json_file(path: Path, *, max_bytes: int = MAX_JSON_FILE) -> tuple[Any, list[str]]:
    """Read and parse a JSON file of at most ``max_bytes`` bytes.

    The size is that of the opened file (``fstat``), not of a listing made earlier, and no
    more than the limit is ever read even if the file grows meanwhile. The file is opened
    without blocking, so a FIFO put in its place cannot hang the run.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError as e:
        raise FormatError("is a folder, not a file") from e
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FormatError("is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise FormatError("is not a regular file (a FIFO, socket or device); not read")
        if st.st_size > max_bytes:
            raise FormatError(
                f"{st.st_size:,} bytes is too large for this JSON file (limit {max_bytes:,})"
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise FormatError(f"grew past {max_bytes:,} bytes while being read")
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    finally:
        os.close(fd)
    return parse_json(raw)
