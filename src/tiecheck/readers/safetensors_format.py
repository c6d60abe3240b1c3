"""safetensors headers, parsed and validated without touching tensor data or importing torch.

The safetensors Python API hides ``data_offsets``, which tiecheck needs to compare and stream
byte ranges, and it silently accepts duplicate header keys. So the header is parsed here with
``struct`` + ``json`` and held to every rule the Rust loader enforces, with messages that say
exactly what is wrong. ``check_with_library`` then asks the library itself, so a file tiecheck
passes is one ``safe_open`` opens.

Parsing is split from I/O (``parse_header`` takes bytes) so remote readers can feed it the
bytes of a range request.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from tiecheck.errors import FormatError
from tiecheck.model import DTYPE_BITS, ByteSpan
from tiecheck.readers.jsonfile import parse_json_objects

MAX_HEADER_BYTES = 100_000_000
"""The Rust loader's limit; a larger claim is refused before anything is allocated."""

SAFETENSORS_DTYPES = frozenset(DTYPE_BITS) - {"C128"}


@dataclass(frozen=True)
class HeaderEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    span: ByteSpan
    """absolute offsets in the file (the header's data_offsets plus the data start)."""


@dataclass(frozen=True)
class SafetensorsHeader:
    entries: list[HeaderEntry]
    metadata: dict[str, str]
    data_start: int
    duplicate_keys: list[str]


def header_length(prefix: bytes, file_size: int) -> int:
    """Validate the 8-byte length prefix against the file size; return the header length."""
    if file_size < 8 or len(prefix) < 8:
        raise FormatError(f"file is {file_size} bytes, too short for the 8-byte header length")
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES:
        raise FormatError(
            f"header length {length} exceeds the loader's limit of {MAX_HEADER_BYTES} bytes"
        )
    if 8 + length > file_size:
        raise FormatError(
            f"header length {length} runs past the end of the file ({file_size} bytes): "
            "truncated or not a safetensors file"
        )
    if length < 2:
        raise FormatError(f"header length {length} is too short to hold a JSON object")
    return length


USIZE_MAX = 2**64 - 1


def _as_index(value: object) -> int | None:
    # bool is an int subclass in Python, but not a usize in the Rust loader.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= USIZE_MAX:
        return value
    return None


def _parse_int(text: str) -> int:
    # JSON's "-0" is 0 to Python but a float (so not a usize) to the Rust loader.
    return -1 if text == "-0" else int(text)


def _entry(name: str, info: object, data_start: int) -> HeaderEntry:
    if not isinstance(info, dict):
        raise FormatError(f"tensor {name!r}: entry is {type(info).__name__}, not an object")
    dtype = info.get("dtype")
    if not isinstance(dtype, str):
        raise FormatError(f"tensor {name!r}: missing or non-string dtype")
    if dtype not in SAFETENSORS_DTYPES:
        raise FormatError(f"tensor {name!r}: unknown dtype {dtype!r}")
    shape_raw = info.get("shape")
    if not isinstance(shape_raw, list):
        raise FormatError(f"tensor {name!r}: shape must be a list of non-negative integers")
    shape = tuple(_as_index(d) for d in shape_raw)
    if any(d is None for d in shape):
        raise FormatError(f"tensor {name!r}: shape {shape_raw} has a non-integer or negative size")
    offsets = info.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2):
        raise FormatError(f"tensor {name!r}: data_offsets must be [begin, end]")
    begin, end = _as_index(offsets[0]), _as_index(offsets[1])
    if begin is None or end is None:
        raise FormatError(f"tensor {name!r}: data_offsets {offsets} are not non-negative integers")
    if end < begin:
        raise FormatError(f"tensor {name!r}: data_offsets {offsets} end before they begin")
    bits = DTYPE_BITS[dtype]
    numel = 1
    for d in shape:
        numel *= d  # type: ignore[operator]
        if numel > USIZE_MAX:  # the loader multiplies in usize and refuses on overflow
            raise FormatError(f"tensor {name!r}: shape {shape_raw} overflows the element count")
    if numel * bits > USIZE_MAX:
        raise FormatError(f"tensor {name!r}: shape {shape_raw} overflows the byte count")
    if (numel * bits) % 8:
        raise FormatError(f"tensor {name!r}: {numel} x {bits}-bit elements is not whole bytes")
    if end - begin != numel * bits // 8:
        raise FormatError(
            f"tensor {name!r}: {dtype}{list(shape)} needs {numel * bits // 8} bytes "
            f"but data_offsets {offsets} hold {end - begin}"
        )
    return HeaderEntry(name, dtype, shape, ByteSpan(data_start + begin, data_start + end))  # type: ignore[arg-type]


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: object) -> bool:
    """Python's json accepts ``"\\ud800"`` alone; serde_json (the loader) does not."""
    stack = [value]
    while stack:  # iterative: the header may be nested as deep as json allowed
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_header(raw: bytes, file_size: int) -> SafetensorsHeader:
    """Validate header JSON ``raw`` (the bytes after the length prefix) against the file size."""
    data_start = 8 + len(raw)
    # JSON whitespace may precede the object; the loader accepts it (safetensors 0.8).
    if not raw.lstrip(b" \t\n\r").startswith(b"{"):
        raise FormatError("header does not start with '{': not a safetensors file")
    value, repeated = parse_json_objects(raw, parse_int=_parse_int)
    if not isinstance(value, dict):
        raise FormatError(f"header is a JSON {type(value).__name__}, not an object")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise FormatError(
            "header holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), "
            "which the loader refuses as invalid JSON"
        )
    # The loader keeps the last of two tensors with one name (reported as TC006), and the last
    # of two metadata keys, but refuses a repeated __metadata__ or a field repeated in an entry.
    duplicates = repeated.get(id(value), [])
    if "__metadata__" in duplicates:
        raise FormatError("__metadata__ appears more than once")
    metadata: dict[str, str] = {}
    entries: list[HeaderEntry] = []
    for name, info in value.items():
        if name == "__metadata__":
            if info is None:  # the loader reads it as an Option: null means no metadata
                continue
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise FormatError("__metadata__ must map strings to strings")
            metadata = info
            continue
        if isinstance(info, dict) and id(info) in repeated:
            raise FormatError(
                f"tensor {name!r}: field {repeated[id(info)][0]!r} appears more than once"
            )
        entries.append(_entry(name, info, data_start))
    _check_coverage(entries, file_size - data_start, data_start)
    return SafetensorsHeader(entries, metadata, data_start, duplicates)


def _check_coverage(entries: list[HeaderEntry], buffer_size: int, data_start: int) -> None:
    """Tensors must tile the data buffer exactly: no overlap, no hole, nothing past the end."""
    position = 0
    previous = None
    for entry in sorted(entries, key=lambda e: (e.span.start, e.span.end)):
        begin, end = entry.span.start - data_start, entry.span.end - data_start
        if begin < position:
            raise FormatError(
                f"tensor {entry.name!r} (bytes {begin}-{end}) overlaps {previous!r} "
                f"(ends at {position})"
            )
        if begin > position:
            raise FormatError(
                f"bytes {position}-{begin} of the data buffer belong to no tensor "
                f"(gap before {entry.name!r})"
            )
        position, previous = end, entry.name
    if position > buffer_size:
        raise FormatError(
            f"tensor {previous!r} ends at byte {position} of the data buffer but the file holds "
            f"only {buffer_size}: truncated"
        )
    if position < buffer_size:
        raise FormatError(
            f"{buffer_size - position} trailing bytes after the last tensor "
            "(the loader requires the data to end exactly at the end of the file)"
        )


def read_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of a local safetensors file (reads only the header)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            length = header_length(f.read(8), size)
            raw = f.read(length)
    except IsADirectoryError as e:
        raise FormatError("is a folder, not a file") from e
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    if len(raw) != length:
        raise FormatError("file changed while reading the header")
    return parse_header(raw, size)


def check_with_library(path: Path) -> None:
    """Open the file with safetensors' own loader, which validates the header in Rust.

    This is the library's verdict rather than ours: if the two ever disagree, the user hears
    what the loader will say.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except Exception as e:  # the Rust binding raises SafetensorError, OSError or others
        raise FormatError(f"safetensors refuses to open it: {e}") from e
