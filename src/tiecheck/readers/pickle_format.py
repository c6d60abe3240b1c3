"""PyTorch pickles (``.bin``, ``.pt``, ``.pth``, ``.ckpt``), read without torch and without
executing anything.

How and why: ``torch.load(weights_only=True)`` would be safe, but it imports torch (seconds, and
an optional dependency here), and it materialises tensors where tiecheck only needs each
tensor's storage key, offset, shape and stride. So the pickle is run through a restricted
``pickle.Unpickler`` whose ``find_class`` hands out inert stand-ins for the handful of globals a
state dict uses (tensor rebuild functions, storage types, dtypes, OrderedDict) and refuses every
other global, and whose ``persistent_load`` records storage references instead of loading them.
Nothing the file names is ever imported or called. Storage bytes are then located in the file
(zip record offsets, or the sequential layout of legacy files) so analyses can stream them.
"""

from __future__ import annotations

import codecs
import io
import itertools
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from tiecheck.errors import FormatError, UnsafePickleError
from tiecheck.model import DTYPE_BITS, ByteSpan, FileFormat, StorageRef, element_extent

MAX_PICKLE_BYTES = 1 << 30
"""Upper bound on the pickled object graph (not tensor data); 1M tensors pickle to ~250 MB."""

MAX_PICKLE_READ = 64 << 20
"""Largest single read the unpickler may ask for; state dicts never hold big byte strings."""

MAX_COMPRESSED_PICKLE = 8 << 20
"""Limit for a *deflated* data.pkl (torch.save stores it uncompressed; torch.load reads either):
about 30,000 tensors. Unpickling can take ~80x its input in memory (each one-byte EMPTY_LIST
opcode is a list object), so 8 MB inflated from a few KB is the most a zip bomb gets."""

MAX_EXPANDED_BYTES = 1 << 30
"""Budget, per file, for the values of views that overlap themselves (stride 0: an ``expand``).
Their values are read one by one, so a 4-byte storage viewed as (2**20, 2**20) would cost
4 TiB of reading for a 1 KB file. Real checkpoints hold such views rarely, and small."""

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
ZIP_MAGIC = b"PK\x03\x04"

_STORAGE_DTYPES = {
    "DoubleStorage": "F64",
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "ComplexFloatStorage": "C64",
    "ComplexDoubleStorage": "C128",
}
_TORCH_DTYPES = {
    "float64": "F64",
    "double": "F64",
    "float32": "F32",
    "float": "F32",
    "float16": "F16",
    "half": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "long": "I64",
    "int32": "I32",
    "int": "I32",
    "int16": "I16",
    "short": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "complex64": "C64",
    "complex128": "C128",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
}
CONTAINER_KEYS = (
    "state_dict",
    "model",
    "module",
    "model_state_dict",
    "model_state",
    "network",
    "net",
    "params",
    "weights",
)
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")


def _refuse_state(self: object, _state: object) -> None:
    """``__setstate__`` of every stand-in: the pickle BUILD opcode may not change them.

    BUILD writes straight into an object's ``__dict__`` (frozen dataclasses included) unless it
    has a ``__setstate__``. Without this, a pickle could rewrite a storage record's dtype or
    size after it was checked, or the shared ``torch.float32`` stand-in for every later file.
    torch.save never emits BUILD for tensors, storages, dtypes or rebuild functions.
    """
    raise FormatError(
        f"pickle tries to set the state of {type(self).__name__.lstrip('_')!r}, which no "
        "torch checkpoint does"
    )


@dataclass(frozen=True)
class _StorageType:
    dtype: str | None
    """None for ``UntypedStorage``, whose tensors carry their dtype separately."""

    __setstate__ = _refuse_state


@dataclass(frozen=True)
class _DType:
    code: str

    __setstate__ = _refuse_state


@dataclass
class _Storage:
    key: str
    dtype: str | None
    nbytes: int
    untyped: bool = False
    """pickled as ``UntypedStorage``: its size (and a legacy file's count) is in bytes."""

    __setstate__ = _refuse_state


@dataclass
class PickledTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str

    __setstate__ = _refuse_state


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise FormatError(f"tensor {what} {value!r} is not a tuple of non-negative integers")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None) -> PickledTensor:
    if not isinstance(storage, _Storage):
        raise FormatError("tensor rebuilt from something that is not a storage record")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise FormatError(f"tensor storage offset {offset!r} is not a non-negative integer")
    shape, strides = _ints(size, "shape"), _ints(stride, "stride")
    if len(shape) != len(strides):
        raise FormatError(f"tensor shape {shape} and stride {strides} differ in length")
    dtype = dtype or storage.dtype
    if dtype is None:
        raise FormatError("tensor on an untyped storage without a dtype")
    if storage.dtype is None:
        storage.dtype = dtype
    return PickledTensor(storage, offset, shape, strides, dtype)


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):  # type: ignore[no-untyped-def]
    return _tensor(storage, offset, size, stride, None)


def _rebuild_tensor_v3(storage, offset, size, stride, _grad, _hooks, dtype, *_rest):  # type: ignore[no-untyped-def]
    if not isinstance(dtype, _DType):
        raise FormatError(f"tensor dtype {dtype!r} is not a torch dtype")
    return _tensor(storage, offset, size, stride, dtype.code)


def _rebuild_tensor(storage, offset, size, stride):  # type: ignore[no-untyped-def]
    return _tensor(storage, offset, size, stride, None)


def _rebuild_parameter(data, *_rest):  # type: ignore[no-untyped-def]
    return data


def _rebuild_from_type_v2(func, _new_type, args, _state):  # type: ignore[no-untyped-def]
    if func not in (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_tensor, _rebuild_parameter):
        raise FormatError("subclassed tensor with an unknown rebuild function")
    return func(*args)


class _Marker:
    """Stand-in for an allowed class that is only ever referenced, never instantiated."""

    __setstate__ = _refuse_state

    def __init__(self, name: str) -> None:
        self.name = name


def _device(*_args):  # type: ignore[no-untyped-def]
    return "device"


def _codecs_encode(text, encoding="utf-8"):  # type: ignore[no-untyped-def]
    # Protocol-2 pickles spell ``bytes`` as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise FormatError("unexpected arguments to _codecs.encode")
    return codecs.encode(text, encoding)


def _bytearray(*args):  # type: ignore[no-untyped-def]
    # bytearray pickles as bytearray(bytes) or, in protocol 2, bytearray(str, "latin-1"); an
    # integer argument would allocate that many zero bytes for a few bytes of pickle.
    if args and not isinstance(args[0], (bytes, str)):
        raise FormatError("bytearray rebuilt from something other than its bytes")
    try:
        return bytearray(*args)
    except (TypeError, LookupError) as e:
        raise FormatError(f"unexpected arguments to bytearray: {e}") from e


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): _Marker("Parameter"),
    ("torch", "Tensor"): _Marker("Tensor"),
    ("torch", "Size"): tuple,
    ("torch", "device"): _device,
    ("torch.storage", "UntypedStorage"): _StorageType(None),
    ("torch", "UntypedStorage"): _StorageType(None),
}
_ALLOWED.update({("torch", k): _StorageType(v) for k, v in _STORAGE_DTYPES.items()})
_ALLOWED.update({("torch", k): _DType(v) for k, v in _TORCH_DTYPES.items()})
for _callable in _ALLOWED.values():
    if callable(_callable) and not isinstance(_callable, type):
        # plain functions take BUILD into their __dict__ too; the refusal must be found there
        _callable.__setstate__ = _refuse_state.__get__(_callable)  # type: ignore[attr-defined]


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, on purpose: the C one sizes its memo table from the index a
    LONG_BINPUT opcode names (5 bytes of pickle made it allocate and zero 18 GB) and allocates
    the size a BINBYTES8 claims before reading. This one keeps its memo in a dict and reads
    through ``_BoundedReader``; it is as fast here, since every global and persistent id
    already calls back into Python."""

    def __init__(self, stream: BinaryIO, *, legacy: bool) -> None:
        super().__init__(stream)
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}
        self.views: dict[str, tuple[str, int]] = {}
        """legacy view storages: view key -> (root key, byte offset)."""

    def _load_bytearray8(self) -> None:
        # pickle's own BYTEARRAY8 allocates (and zeroes) the size it reads before reading the
        # bytes: 3 GB resident for a 300-byte file. Read first, within the usual limit.
        (size,) = struct.unpack("<Q", self.read(8))
        if size > MAX_PICKLE_READ:
            raise FormatError(f"pickle record claims {size} bytes; refusing to read it")
        data = self.read(size)
        if len(data) != size:
            raise FormatError("pickle data was truncated")
        self.append(bytearray(data))

    dispatch: ClassVar[dict[int, Any]] = {
        **pickle._Unpickler.dispatch,  # type: ignore[attr-defined]
        pickle.BYTEARRAY8[0]: _load_bytearray8,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise FormatError(f"unsupported persistent record {kind!r} (only storages allowed)")
        fields = 6 if self.legacy else 5
        if len(pid) != fields:
            raise FormatError(f"storage record has {len(pid)} fields, expected {fields}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise FormatError(f"storage type {storage_type!r} is not a torch storage class")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise FormatError("storage record has a malformed key or size")
        dtype = storage_type.dtype
        nbytes = numel * DTYPE_BITS[dtype] // 8 if dtype else numel
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, dtype, nbytes, untyped=dtype is None)
        if self.legacy and pid[5] is not None:
            return self._legacy_view(storage, pid[5])
        return storage

    def _legacy_view(self, root: _Storage, view: Any) -> _Storage:
        # Pre-1.0 files could pickle a storage *view*: (view_key, element offset, size).
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)):
            raise FormatError("malformed legacy storage view")
        key, offset, size = view
        if not isinstance(offset, int) or not isinstance(size, int) or root.dtype is None:
            raise FormatError("malformed legacy storage view")
        itemsize = DTYPE_BITS[root.dtype] // 8
        self.views[key] = (root.key, offset * itemsize)
        return _Storage(key, root.dtype, size * itemsize)


class _BoundedReader:
    """File wrapper for the unpickler: no single read may allocate more than a sane limit.

    CPython's file ``read(n)`` allocates ``n`` bytes up front, so a hostile length field would
    otherwise make the unpickler ask for terabytes.
    """

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._remaining = limit

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > MAX_PICKLE_READ:
            raise FormatError(f"pickle record claims {n} bytes; refusing to read it")
        n = min(n, self._remaining)
        data = self._f.read(n)
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = self._f.readline(min(MAX_PICKLE_READ, self._remaining))
        self._remaining -= len(line)
        return line


def _unpickle(stream: BinaryIO, *, legacy: bool, limit: int) -> tuple[Any, _RestrictedUnpickler]:
    unpickler = _RestrictedUnpickler(_BoundedReader(stream, limit), legacy=legacy)  # type: ignore[arg-type]
    try:
        return unpickler.load(), unpickler
    except FormatError:
        raise
    except RecursionError as e:
        raise FormatError("pickle is nested too deeply") from e
    except MemoryError as e:
        raise FormatError("pickle needs more memory than any state dict would") from e
    except Exception as e:  # malformed opcodes: UnpicklingError, EOFError, TypeError, ...
        raise FormatError(f"malformed pickle: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class PickleEntry:
    stored_name: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    storage: StorageRef
    span: ByteSpan | None


@dataclass(frozen=True)
class PickleCheckpoint:
    format: FileFormat
    entries: list[PickleEntry]
    container: str | None
    prefix: str


def _is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


def _find_state_dict(obj: Any) -> tuple[dict[str, PickledTensor], str | None]:
    """Locate the tensors in a checkpoint object; returns them with the container path used."""
    if isinstance(obj, dict):
        direct = {
            k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, PickledTensor)
        }
        if direct:
            return direct, None
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict):
                found = {
                    k: v
                    for k, v in inner.items()
                    if isinstance(k, str) and isinstance(v, PickledTensor)
                }
                if found:
                    return found, key
    flat: dict[str, PickledTensor] = {}
    _flatten(obj, "", flat, depth=0)
    return flat, "(nested)" if flat else None


def _flatten(obj: Any, prefix: str, out: dict[str, PickledTensor], depth: int) -> None:
    if depth > 16:
        return
    items: Any
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, PickledTensor):
            out[name] = value
        else:
            _flatten(value, name + ".", out, depth + 1)


def strip_wrapper_prefix(names: list[str]) -> str:
    """The wrapper prefix (DDP ``module.``, torch.compile ``_orig_mod.``) every name carries."""
    stripped = ""
    while names:
        for prefix in WRAPPER_PREFIXES:
            if all(n.startswith(stripped + prefix) for n in names):
                stripped += prefix
                break
        else:
            break
    return stripped


def _entries(
    tensors: dict[str, PickledTensor], spans: dict[str, ByteSpan | None], container: str | None
) -> tuple[list[PickleEntry], str]:
    prefix = strip_wrapper_prefix(list(tensors))
    entries = []
    expanded = 0
    for stored_name, t in tensors.items():
        itemsize_bits = DTYPE_BITS[t.dtype]
        storage_span = spans[t.storage.key]
        end_element = t.offset + element_extent(t.shape, t.stride)
        if end_element * itemsize_bits > t.storage.nbytes * 8:
            raise FormatError(
                f"tensor {stored_name!r} reaches element {end_element} of a storage of "
                f"{t.storage.nbytes} bytes"
            )
        logical = math.prod(t.shape) * itemsize_bits // 8
        if logical > t.storage.nbytes:  # only a view that overlaps itself (a stride of 0)
            expanded += logical
            if expanded > MAX_EXPANDED_BYTES:
                raise FormatError(
                    f"tensor {stored_name!r} (shape {list(t.shape)}, stride {list(t.stride)}) "
                    f"repeats a {t.storage.nbytes}-byte storage into {logical:,} bytes of "
                    "values; refusing to expand self-overlapping views past "
                    f"{MAX_EXPANDED_BYTES:,} bytes per file"
                )
        ref = StorageRef(
            key=t.storage.key,
            dtype=t.storage.dtype or t.dtype,
            nbytes=t.storage.nbytes,
            span=storage_span,
            offset=t.offset,
            stride=t.stride,
        )
        span = None
        addressable = storage_span is not None and itemsize_bits % 8 == 0
        if addressable and _is_contiguous(t.shape, t.stride):
            start = storage_span.start + t.offset * itemsize_bits // 8
            span = ByteSpan(start, start + element_extent(t.shape, t.stride) * itemsize_bits // 8)
        nested = container and container != "(nested)"
        shown = f"{container}.{stored_name}" if nested else stored_name
        entries.append(PickleEntry(shown, stored_name[len(prefix) :], t.dtype, t.shape, ref, span))
    return entries, prefix


def read_pickle(path: Path) -> PickleCheckpoint:
    """Read a torch checkpoint's tensor records (zip or legacy), never its tensor data."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
            f.seek(0)
            if magic == ZIP_MAGIC:
                return _read_zip(path, f)
            return _read_legacy(f, os.fstat(f.fileno()).st_size)
    except IsADirectoryError as e:
        raise FormatError("is a folder, not a file") from e
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}") from e
    except MemoryError as e:  # never a state dict: those are small beside their tensors
        raise FormatError("needs more memory to read than any state dict would") from e
    except _CORRUPT_ZIP as e:
        # a damaged archive (bit rot, a partial download) is an invalid file, not a crash
        raise FormatError(f"corrupt zip archive: {type(e).__name__}: {e}") from e


# What zipfile raises on damaged archives besides BadZipFile: bad names, unknown versions or
# compression methods, offsets past any integer a seek accepts.
_CORRUPT_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    UnicodeDecodeError,
    ValueError,
    OverflowError,
    EOFError,
    struct.error,
)


def _read_zip(path: Path, f: BinaryIO) -> PickleCheckpoint:
    file_size = os.fstat(f.fileno()).st_size
    try:
        archive = zipfile.ZipFile(f)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise FormatError(f"unreadable zip archive: {e}") from e
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
    if len(pickles) != 1:
        raise FormatError(
            "zip archive is not a torch checkpoint (expected one '<name>/data.pkl' record, "
            f"found {len(pickles)})"
        )
    root = pickles[0].filename[: -len("data.pkl")]
    _check_records(infos, f, file_size)
    byteorder = next((i for i in infos if i.filename == root + "byteorder"), None)
    if byteorder is not None:
        _check_compression(byteorder)
        with archive.open(byteorder) as member:  # a few bytes, however large it claims to be
            order = member.read(16)
        if order.strip() not in (b"little", b""):
            raise FormatError("big-endian checkpoints are not supported")
    _check_compression(pickles[0])
    limit = MAX_PICKLE_BYTES
    if pickles[0].compress_type != zipfile.ZIP_STORED:
        limit = MAX_COMPRESSED_PICKLE
    if pickles[0].file_size > limit:
        raise FormatError(
            f"data.pkl claims {pickles[0].file_size} bytes"
            f"{' (compressed)' if limit == MAX_COMPRESSED_PICKLE else ''}; refusing to load it"
        )
    try:
        with archive.open(pickles[0]) as member:
            raw = member.read(limit + 1)  # zipfile inflates up to what is asked, not declared
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as e:
        raise FormatError(f"cannot read data.pkl: {e}") from e
    obj, unpickler = _unpickle(io.BytesIO(raw), legacy=False, limit=len(raw))
    tensors, container = _find_state_dict(obj)
    records = {i.filename: i for i in infos}
    spans: dict[str, ByteSpan | None] = {}
    for key, storage in unpickler.storages.items():
        info = records.get(f"{root}data/{key}")
        if info is None:
            raise FormatError(f"storage record 'data/{key}' is missing from the archive")
        if info.file_size < storage.nbytes:
            raise FormatError(
                f"storage record 'data/{key}' holds {info.file_size} bytes, "
                f"tensors need {storage.nbytes}"
            )
        spans[key] = _record_span(info, f) if info.compress_type == zipfile.ZIP_STORED else None
    entries, prefix = _entries(tensors, spans, container)
    return PickleCheckpoint(FileFormat.PYTORCH_ZIP, entries, container, prefix)


def _check_compression(info: zipfile.ZipInfo) -> None:
    """Only stored (what torch writes) and deflated records are ever decompressed: zipfile
    inflates bzip2 and LZMA a whole block at a time, so 800 bytes can become 1 GB in one call
    whatever the record claims."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise FormatError(
            f"zip record {info.filename!r} uses compression method {info.compress_type}, which "
            "torch never writes; not decompressed"
        )


def _record_span(info: zipfile.ZipInfo, f: BinaryIO) -> ByteSpan:
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != ZIP_MAGIC:
        raise FormatError(f"zip record {info.filename!r} has no local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return ByteSpan(start, start + info.file_size)


def _check_records(infos: list[zipfile.ZipInfo], f: BinaryIO, file_size: int) -> None:
    """Every record must lie inside the file and apart from the others (no overlapping records)."""
    spans = []
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise FormatError(f"zip record {info.filename!r} has inconsistent sizes")
        span = _record_span(info, f)
        data_end = span.start + info.compress_size
        if data_end > file_size:
            raise FormatError(
                f"zip record {info.filename!r} ends at byte {data_end}, past the end of the "
                f"file ({file_size} bytes): truncated"
            )
        spans.append((info.header_offset, data_end, info.filename))
    spans.sort()
    for (_, end, name), (start, _, other) in itertools.pairwise(spans):
        if start < end:
            raise FormatError(f"zip records {name!r} and {other!r} overlap")


def _read_legacy(f: BinaryIO, file_size: int) -> PickleCheckpoint:
    def load() -> Any:
        return _unpickle(f, legacy=True, limit=min(MAX_PICKLE_BYTES, file_size - f.tell()))

    try:
        magic, _ = load()
    except FormatError as e:
        if isinstance(e, UnsafePickleError):
            raise
        raise FormatError(
            "not a PyTorch checkpoint: neither a zip archive nor a legacy torch pickle"
        ) from e
    if magic != LEGACY_MAGIC:
        raise FormatError("not a PyTorch checkpoint: neither a zip archive nor a legacy pickle")
    protocol, _ = load()
    if protocol != 1001:
        raise FormatError(f"unsupported legacy protocol version {protocol!r}")
    sys_info, _ = load()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise FormatError("big-endian checkpoints are not supported")
    obj, unpickler = load()
    keys, _ = load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise FormatError("legacy storage key list is malformed")
    spans: dict[str, ByteSpan | None] = {}
    position = f.tell()
    for key in keys:
        storage = unpickler.storages.get(key)
        f.seek(position)
        count_raw = f.read(8)
        if len(count_raw) != 8:
            raise FormatError(f"storage {key!r} is missing: the file is truncated")
        (count,) = struct.unpack("<q", count_raw)
        itemsize = (
            DTYPE_BITS[storage.dtype] // 8
            if storage and storage.dtype and not storage.untyped
            else 1
        )
        nbytes = count * itemsize
        if count < 0 or position + 8 + nbytes > file_size:
            raise FormatError(f"storage {key!r} runs past the end of the file: truncated")
        if storage is not None and nbytes < storage.nbytes:
            raise FormatError(
                f"storage {key!r} holds {nbytes} bytes, tensors need {storage.nbytes}"
            )
        spans[key] = ByteSpan(position + 8, position + 8 + nbytes)
        position += 8 + nbytes
    for view_key, (root_key, byte_offset) in unpickler.views.items():
        root_span = spans.get(root_key)
        spans[view_key] = (
            ByteSpan(root_span.start + byte_offset, root_span.end) if root_span else None
        )
    missing = [k for k in unpickler.storages if k not in spans]
    if missing:
        raise FormatError(f"storage {missing[0]!r} is referenced but not stored")
    tensors, container = _find_state_dict(obj)
    entries, prefix = _entries(tensors, spans, container)
    return PickleCheckpoint(FileFormat.PYTORCH_LEGACY, entries, container, prefix)
