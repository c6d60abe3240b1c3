"""Strict JSON for headers, indexes and configs.

Python's ``json`` (like the safetensors loader) silently keeps the last of duplicate keys; a
checkpoint whose header or index says two things about one name is exactly what tiecheck must
report, so duplicates are collected instead of dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tiecheck.errors import FormatError

MAX_JSON_FILE = 512 * 1024 * 1024
"""Indexes of the largest real models are a few MB; anything this big is not an index."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes | str) -> tuple[Any, list[str]]:
    """Parse JSON text, returning the value and every key that appeared twice in one object."""
    value, duplicates = parse_json_objects(raw)
    return value, [key for keys in duplicates.values() for key in keys]


def parse_json_objects(
    raw: bytes | str, *, parse_int: Callable[[str], Any] | None = None
) -> tuple[Any, dict[int, list[str]]]:
    """Parse JSON text; duplicates are reported per object, keyed by ``id()`` of the parsed dict.

    Callers that hold objects to different rules (safetensors: a repeated tensor name is
    accepted by the loader, a repeated field inside one tensor's entry is not) look up the
    objects they care about. The ids stay valid while ``value`` is alive.
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
    return value, duplicates


def read_json_file(path: Path, *, max_bytes: int = MAX_JSON_FILE) -> tuple[Any, list[str]]:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise FormatError(f"{size} bytes is too large for a JSON file (limit {max_bytes})")
        raw = path.read_bytes()
    except IsADirectoryError as e:
        raise FormatError("is a folder, not a file") from e
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    return parse_json(raw)
