"""Sharded-checkpoint indexes (model.safetensors.index.json, pytorch_model.bin.index.json)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from tiecheck.errors import FormatError
from tiecheck.model import IndexInfo
from tiecheck.readers.jsonfile import MAX_INDEX_BYTES, read_json_file


def read_index(path: Path) -> tuple[IndexInfo, list[str]]:
    """Parse an index; returns it with the keys that appear twice in one JSON object."""
    data, duplicates = read_json_file(path, max_bytes=MAX_INDEX_BYTES)
    if not isinstance(data, dict):
        raise FormatError(f"index is a JSON {type(data).__name__}, not an object")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise FormatError("index has no 'weight_map' object")
    bad = next((k for k, v in weight_map.items() if not isinstance(v, str) or not v), None)
    if bad is not None:
        raise FormatError(f"weight_map[{_clipped(bad)}] is not a file name")
    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise FormatError("index 'metadata' is not an object")
    total = metadata.get("total_size")
    if total is not None and (isinstance(total, bool) or not isinstance(total, (int, float))):
        raise FormatError(f"metadata.total_size {_clipped(total)} is not a number")
    return IndexInfo(path.name, path, weight_map, metadata, total), duplicates


def _clipped(value: object, limit: int = 200) -> str:
    """``repr`` of a value from the index, cut short: an index may be 128 MiB of one key."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    if isinstance(value, (dict, list)):
        return f"(a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)} items)"
    return repr(value)  # a number (JSON's are under 4,300 digits), true, false or null


def unsafe_shard_name(name: str) -> str | None:
    """Why a shard name must not be opened (absolute or escaping the folder), else None.

    huggingface_hub refuses such names too; a hostile index must not make tiecheck read
    ``/etc/passwd`` or a file beside the model folder.
    """
    for flavour in (PurePosixPath(name), PureWindowsPath(name)):
        if flavour.is_absolute() or flavour.drive or name.startswith(("/", "\\")):
            return "is an absolute path"
        if ".." in flavour.parts:
            return "contains '..'"
    return None
