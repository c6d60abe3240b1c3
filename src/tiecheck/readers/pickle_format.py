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
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from tiecheck.errors import FormatError, UnsafePickleError
from tiecheck.model import DTYPE_BITS, ByteSpan, FileFormat, StorageRef, element_extent
from tiecheck.units import count

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

MAX_NESTING = 1000
"""Deepest nesting of containers a pickle may build. State dicts nest a few levels (a training
checkpoint with optimizer state and hyperparameters, under 20). Hashing a tuple recurses in C
without a depth check, so a tuple nested ~150,000 deep used as a dict key or set element
overflows the C stack (measured: SIGSEGV at 150,000 levels on an 8 MiB stack, fine at 120,000);
Python code that recurses (``repr``, ``==``, ``copy.deepcopy``) stops at its recursion limit,
1,000 by default. 1,000 is far above any checkpoint and far below the crash."""

TORCH_INDEX_LIMIT = 1 << 63
"""torch keeps sizes, strides, storage offsets and element counts in int64 (and addresses bytes
in int64 too): a value past it is no tensor torch can hold, only a way to make numbers that
overflow numpy (a view's byte strides) or Python's int-to-text limit (4,300 digits) in a
message."""

MAX_WALK_DEPTH = 16
"""How deep inside the unpickled object tensors are looked for (``{"models": [{"enc": ...}]}``);
deeper values are not state dicts anyone loads."""


def pickle_budget(pickle_bytes: int) -> int:
    """What one pickle of ``pickle_bytes`` may make its reader do beyond its opcodes: 16 x its
    size + 1 MiB, counted three ways, each against this bound: bytes of values built by the
    allowed constructors (``set``, ``frozenset``, ``OrderedDict``, ``torch.Size``,
    ``bytearray``, ``_codecs.encode``, the tensor rebuild functions), tuple elements hashed
    (a dict key, a set member), and container entries (and characters of names) visited while
    looking for tensors.

    Why: each opcode builds at most one small object, except these; through the memo one
    object can be passed to them any number of times (``bytearray`` of a memoised 1 MB string
    a thousand times is 1 GB), and a tuple made of one inner tuple twice, 60 levels deep, is
    60 opcodes whose hash visits 2**60 elements. Real pickles stay far below: every copy they
    make is of something they also contain, about once."""
    return 16 * pickle_bytes + (1 << 20)


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
    "ema",
    "model_ema",
    "state_dict_ema",
    "ema_state_dict",
)
"""Where trainers keep the model's state dict (Lightning, nanoGPT and torchtitan, DeepSpeed,
common training scripts, EMA copies), in order of preference when several hold tensors."""
CONTAINER_DEPTH = 3
"""Levels of nested mappings searched for the state dict."""
TRAINING_STATE_KEYS = frozenset(
    {
        "optimizer",
        "optimizers",
        "optimizer_states",
        "optimizer_state_dict",
        "optim",
        "opt",
        "opt_state",
        "lr_scheduler",
        "lr_schedulers",
        "scheduler",
        "scaler",
        "grad_scaler",
        "rng_state",
        "rng_states",
        "loops",
        "callbacks",
    }
)
"""Keys whose contents are training state, never the model's weights."""
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")


def _shown(value: object, limit: int = 80) -> str:
    """A short description of a pickled value for a message.

    Never the plain ``repr`` of what a file holds: it recurses into nesting, prints megabytes
    for a long string, and refuses integers past 4,300 digits (ValueError).
    """
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() <= 128:
            return repr(value)
        return f"an integer of {value.bit_length():,} bits"
    if isinstance(value, (str, bytes, bytearray)):
        if len(value) <= limit:
            return repr(value)
        return f"{repr(value[:limit])[:-1]}... ({len(value):,} long)"
    if isinstance(value, (tuple, list)) and len(value) <= 8:
        scalars = (type(None), bool, int, float, str, bytes)
        if all(isinstance(v, scalars) for v in value):
            inner = ", ".join(_shown(v, 20) for v in value)
            return (
                f"({inner}{',' if len(value) == 1 else ''})"
                if isinstance(value, tuple)
                else f"[{inner}]"
            )
    if isinstance(value, (tuple, list, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value):,} items"
    return f"a {type(value).__name__.lstrip('_')}"


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
    """the size its record claims (validated against the bytes really stored)."""
    untyped: bool = False
    """pickled as ``UntypedStorage``: its size (and a legacy file's count) is in bytes."""

    __setstate__ = _refuse_state


@dataclass(frozen=True)
class _View:
    """A legacy storage view: ``nbytes`` bytes of storage ``root`` from byte ``offset``."""

    root: str
    offset: int
    nbytes: int


@dataclass
class PickledTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str

    __setstate__ = _refuse_state


def _index(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(f"{what} {_shown(value)} is not a non-negative integer")
    if value >= TORCH_INDEX_LIMIT:
        raise FormatError(f"{what} {_shown(value)} is not below 2**63, torch's limit")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise FormatError(f"tensor {what} {_shown(value)} is not a tuple of non-negative integers")
    return tuple(value)


def check_view(
    name: str,
    itemsize: int,
    offset: int,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
    storage_nbytes: int,
) -> None:
    """Raise FormatError unless the strided view (in elements of ``itemsize`` bytes) lies
    inside a storage of ``storage_nbytes`` bytes, with every number within torch's limits.

    Whatever reads the elements (numpy's ``as_strided`` over a map of the storage) trusts the
    geometry: one element past the map is a read of unmapped memory, a SIGSEGV, not an
    exception; a byte stride past 2**63 overflows numpy. Every pickled tensor is checked here
    against the size of its storage before any byte is read; readers of tensor data may call
    it again as a guard.
    """
    shown = _shown(name, 200)
    if offset >= TORCH_INDEX_LIMIT or any(v >= TORCH_INDEX_LIMIT for v in (*shape, *stride)):
        raise FormatError(
            f"tensor {shown}: its offset, shape or stride holds a number not below 2**63, "
            "torch's limit"
        )
    numel = 1
    for size in shape:
        numel *= size
        if numel >= TORCH_INDEX_LIMIT:
            raise FormatError(
                f"tensor {shown}: its shape holds 2**63 elements or more, past torch's limit"
            )
    if any(step * itemsize >= TORCH_INDEX_LIMIT for step in stride) or (
        offset * itemsize >= TORCH_INDEX_LIMIT
    ):
        raise FormatError(
            f"tensor {shown}: its offset or strides address bytes past 2**63, torch's limit"
        )
    end = offset + element_extent(shape, stride)
    if end * itemsize > storage_nbytes:
        raise FormatError(
            f"tensor {shown} reaches element {end} of a storage of {storage_nbytes} bytes"
        )


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None) -> PickledTensor:
    if not isinstance(storage, _Storage):
        raise FormatError("tensor rebuilt from something that is not a storage record")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise FormatError(f"tensor storage offset {_shown(offset)} is not a non-negative integer")
    shape, strides = _ints(size, "shape"), _ints(stride, "stride")
    if len(shape) != len(strides):
        raise FormatError(
            f"tensor shape and stride differ in length ({len(shape)} and {len(strides)})"
        )
    dtype = dtype or storage.dtype
    if dtype is None:
        raise FormatError("tensor on an untyped storage without a dtype")
    if storage.dtype is None:
        storage.dtype = dtype
    elif storage.dtype != dtype:
        # torch.save refuses to write two dtypes over one storage; reading such a file would
        # view bytes as elements of a size the storage is not a whole number of
        raise FormatError(
            f"a {dtype} tensor on storage {_shown(storage.key)}, which holds {storage.dtype}"
        )
    return PickledTensor(storage, offset, shape, strides, dtype)


class _Marker:
    """Stand-in for an allowed class that is only ever referenced, never instantiated."""

    __setstate__ = _refuse_state

    def __init__(self, name: str) -> None:
        self.name = name


def _device(*_args):  # type: ignore[no-untyped-def]
    return "device"


_BOUND = object()
"""Marks an allow-list entry each unpickler binds to itself (it counts what the call builds)."""

_CALLS: dict[tuple[str, str], str] = {
    ("collections", "OrderedDict"): "call_ordered_dict",
    ("builtins", "set"): "call_set",
    ("builtins", "frozenset"): "call_frozenset",
    ("builtins", "bytearray"): "call_bytearray",
    # protocol 2 (torch.save's) spells builtins the Python 2 way
    ("__builtin__", "set"): "call_set",
    ("__builtin__", "frozenset"): "call_frozenset",
    ("__builtin__", "bytearray"): "call_bytearray",
    ("_codecs", "encode"): "call_codecs_encode",
    ("torch", "Size"): "call_size",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "rebuild_tensor_v3",
    ("torch._utils", "_rebuild_tensor"): "rebuild_tensor",
    ("torch._utils", "_rebuild_parameter"): "rebuild_parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_parameter",
    ("torch._tensor", "_rebuild_from_type_v2"): "rebuild_from_type_v2",
}
"""Allowed callables, by the name of the unpickler method that stands in for each."""

_ALLOWED: dict[tuple[str, str], Any] = {
    **dict.fromkeys(_CALLS, _BOUND),
    ("torch.nn.parameter", "Parameter"): _Marker("Parameter"),
    ("torch", "Tensor"): _Marker("Tensor"),
    ("torch", "device"): _device,
    ("torch.storage", "UntypedStorage"): _StorageType(None),
    ("torch", "UntypedStorage"): _StorageType(None),
}
_ALLOWED.update({("torch", k): _StorageType(v) for k, v in _STORAGE_DTYPES.items()})
_ALLOWED.update({("torch", k): _DType(v) for k, v in _TORCH_DTYPES.items()})

_CONTAINERS = (tuple, list, dict, set, frozenset)
_SEQUENCES = (list, tuple, set, frozenset, dict)


class _Budget:
    """A count that may not pass ``pickle_budget`` of the pickle's size."""

    def __init__(self, pickle_bytes: int, what: str) -> None:
        self.limit = pickle_budget(pickle_bytes)
        self.left = self.limit
        self.pickle_bytes = pickle_bytes
        self.what = what
        """what is counted: "build more than {:,} bytes of values" (``{}`` is the limit)."""

    def spend(self, amount: int) -> None:
        self.left -= amount
        if self.left < 0:
            raise FormatError(
                f"a {self.pickle_bytes:,}-byte pickle would make its reader "
                f"{self.what.format(self.limit)} (the limit is 16 x its size + 1 MiB; one value "
                "reused through the memo again and again?); no checkpoint comes near that"
            )


def _hooked(opcode: bytes, before: str | None = None, after: str | None = None) -> Any:
    """A dispatch entry running the unpickler's method ``before`` (with the items the opcode
    is about to use) and ``after`` (with its result) around pickle's own handler."""
    original = pickle._Unpickler.dispatch[opcode[0]]  # type: ignore[attr-defined]

    def load(self: _RestrictedUnpickler) -> None:
        if before is not None:
            getattr(self, before)()
        original(self)
        if after is not None:
            getattr(self, after)()

    return load


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, on purpose: the C one sizes its memo table from the index a
    LONG_BINPUT opcode names (5 bytes of pickle made it allocate and zero 18 GB) and allocates
    the size a BINBYTES8 claims before reading. This one keeps its memo in a dict and reads
    through ``_BoundedReader``; it is as fast here, since every global and persistent id
    already calls back into Python.

    It also measures what it builds: the nesting depth of every container (refused past
    ``MAX_NESTING``), the elements each tuple's hash visits, and the values the allowed
    constructors create (each within ``pickle_budget`` of the pickle's size)."""

    def __init__(self, stream: BinaryIO, *, legacy: bool, size: int) -> None:
        super().__init__(stream)
        self.legacy = legacy
        self.size = size
        self.storages: dict[str, _Storage] = {}
        self.views: dict[str, _View] = {}
        """legacy view storages, by their own key."""
        self._view_storages: dict[str, _Storage] = {}
        self.memory = _Budget(size, "build more than {:,} bytes of values")
        self.hashing = _Budget(size, "hash more than {:,} nested tuple elements")
        self._depth: dict[int, int] = {}
        """id -> nesting depth, for containers that hold containers (others are 1 deep)."""
        self._weight: dict[int, int] = {}
        """id -> elements hashing it visits, for tuples that hold tuples."""
        self._kept: list[object] = []
        """what the two maps describe, kept alive so their ids are never reused."""

    # -- nesting and hashing, measured as values are built

    def _depth_of(self, value: object) -> int:
        depth = self._depth.get(id(value))
        if depth is not None:
            return depth
        return 1 if isinstance(value, _CONTAINERS) else 0

    def _weight_of(self, value: object) -> int:
        if not isinstance(value, tuple):
            return 1
        weight = self._weight.get(id(value))
        return 1 + len(value) if weight is None else weight

    def _record(self, container: object, children: Iterable[object]) -> None:
        """Note a container's depth from its children (an existing container's only grows)."""
        depth = self._depth.get(id(container), 1)
        weight = 1
        is_tuple = isinstance(container, tuple)
        for child in children:
            child_depth = self._depth_of(child) + 1
            if child_depth > depth:
                depth = child_depth
            if is_tuple:
                weight += self._weight_of(child)
        if depth > MAX_NESTING:
            raise FormatError(
                f"pickle is nested too deeply: more than {MAX_NESTING} levels of containers"
            )
        if depth > 1:
            if id(container) not in self._depth:
                self._kept.append(container)
            self._depth[id(container)] = depth
            if is_tuple:
                self._weight[id(container)] = min(weight, self.hashing.limit + 1)

    def _hashes(self, keys: Iterable[object]) -> None:
        """Charge the hashing (and, on equal hashes, comparing) of ``keys``, before it runs."""
        self.hashing.spend(sum(2 * self._weight_of(k) for k in keys))

    def _marked(self) -> list[Any]:
        return self.stack  # the items since the last MARK (pickle keeps them as the stack)

    def _record_top(self) -> None:
        top = self.stack[-1]
        if isinstance(top, dict):
            self._record(top, itertools.chain(top.keys(), top.values()))
        else:
            self._record(top, top)

    def _before_dict(self) -> None:
        self._hashes(self._marked()[0::2])

    def _before_frozenset(self) -> None:
        self._hashes(self._marked())

    def _before_setitem(self) -> None:
        self._hashes(self.stack[-2:-1])
        self._pending = (self.stack[-3], self.stack[-2:])

    def _before_setitems(self) -> None:
        items = self._marked()
        self._hashes(items[0::2])
        self._pending = (self.metastack[-1][-1], items)

    def _before_additems(self) -> None:
        items = self._marked()
        self._hashes(items)
        self._pending = (self.metastack[-1][-1], items)

    def _before_append(self) -> None:
        self._pending = (self.stack[-2], self.stack[-1:])

    def _before_appends(self) -> None:
        self._pending = (self.metastack[-1][-1], self._marked())

    def _after_growing(self) -> None:
        container, items = self._pending
        self._pending = (None, [])
        if isinstance(container, (list, dict, set)):
            self._record(container, items)

    def _load_build(self) -> None:
        # torch's state dicts are OrderedDicts carrying ``_metadata`` this way; every other
        # allowed value refuses (stand-ins through __setstate__) or has no state to set
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, OrderedDict) and not hasattr(inst, "__setstate__"):
            if isinstance(state, tuple) and len(state) == 2:
                keys = [k for part in state if isinstance(part, dict) for k in part]
            else:
                keys = list(state) if isinstance(state, dict) else []
            self._hashes(keys)
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]
            self._record(inst, [state])
            return
        setstate = getattr(inst, "__setstate__", None)
        if getattr(setstate, "__func__", None) is _refuse_state:
            setstate(state)  # a stand-in: refuses, naming itself
        raise FormatError(
            f"pickle tries to set the state of {_shown(inst)}, which no torch checkpoint does"
        )

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
        pickle.BUILD[0]: _load_build,
        **{
            op[0]: _hooked(op, after="_record_top")
            for op in (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST)
        },
        pickle.DICT[0]: _hooked(pickle.DICT, "_before_dict", "_record_top"),
        pickle.FROZENSET[0]: _hooked(pickle.FROZENSET, "_before_frozenset", "_record_top"),
        pickle.SETITEM[0]: _hooked(pickle.SETITEM, "_before_setitem", "_after_growing"),
        pickle.SETITEMS[0]: _hooked(pickle.SETITEMS, "_before_setitems", "_after_growing"),
        pickle.ADDITEMS[0]: _hooked(pickle.ADDITEMS, "_before_additems", "_after_growing"),
        pickle.APPEND[0]: _hooked(pickle.APPEND, "_before_append", "_after_growing"),
        pickle.APPENDS[0]: _hooked(pickle.APPENDS, "_before_appends", "_after_growing"),
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None
        return getattr(self, _CALLS[(module, name)]) if found is _BOUND else found

    # -- the allowed callables: each checks its arguments and counts what it builds

    def _built(self, value: Any, children: Iterable[object] = ()) -> Any:
        self.memory.spend(
            len(value) if isinstance(value, (bytes, bytearray)) else sys.getsizeof(value)
        )
        if isinstance(value, _CONTAINERS):
            self._record(value, children)
        return value

    def _items(self, args: tuple[Any, ...], name: str) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], _SEQUENCES)):
            raise FormatError(f"unexpected arguments to {name}")
        return args[0] if args else ()

    def call_set(self, *args: Any) -> set[Any]:
        items = self._items(args, "set")
        self._hashes(items)
        value = set(items)
        return self._built(value, value)

    def call_frozenset(self, *args: Any) -> frozenset[Any]:
        items = self._items(args, "frozenset")
        self._hashes(items)
        value = frozenset(items)
        return self._built(value, value)

    def call_size(self, *args: Any) -> tuple[Any, ...]:
        value = tuple(self._items(args, "torch.Size"))
        return self._built(value, value)

    def call_ordered_dict(self, *args: Any) -> OrderedDict[Any, Any]:
        items = self._items(args, "OrderedDict")
        if not isinstance(items, dict):
            if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in items):
                raise FormatError("OrderedDict rebuilt from something other than key-value pairs")
            self._hashes(p[0] for p in items)
        value: OrderedDict[Any, Any] = OrderedDict(items)
        return self._built(value, itertools.chain(value.keys(), value.values()))

    def call_codecs_encode(self, text: Any = None, encoding: Any = "utf-8") -> bytes:
        # Protocol-2 pickles spell ``bytes`` as _codecs.encode(str, "latin1").
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
            raise FormatError("unexpected arguments to _codecs.encode")
        return self._built(codecs.encode(text, encoding))

    def call_bytearray(self, *args: Any) -> bytearray:
        # bytearray pickles as bytearray(bytes) or, in protocol 2, bytearray(str, "latin-1"); an
        # integer argument would allocate that many zero bytes for a few bytes of pickle.
        if args and not isinstance(args[0], (bytes, str)):
            raise FormatError("bytearray rebuilt from something other than its bytes")
        try:
            value = bytearray(*args)
        except (TypeError, LookupError) as e:
            raise FormatError(f"unexpected arguments to bytearray: {e}") from e
        return self._built(value)

    def _rebuilt(
        self, storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None
    ) -> PickledTensor:
        for value in (size, stride):  # copied into the record: a memoised shape reused
            if isinstance(value, (tuple, list)):
                self.memory.spend(8 * len(value))
        return _tensor(storage, offset, size, stride, dtype)

    def rebuild_tensor_v2(self, storage, offset, size, stride, *_rest):  # type: ignore[no-untyped-def]
        return self._rebuilt(storage, offset, size, stride, None)

    def rebuild_tensor_v3(self, storage, offset, size, stride, _grad, _hooks, dtype, *_rest):  # type: ignore[no-untyped-def]
        if not isinstance(dtype, _DType):
            raise FormatError(f"tensor dtype {_shown(dtype)} is not a torch dtype")
        return self._rebuilt(storage, offset, size, stride, dtype.code)

    def rebuild_tensor(self, storage, offset, size, stride):  # type: ignore[no-untyped-def]
        return self._rebuilt(storage, offset, size, stride, None)

    def rebuild_parameter(self, data, *_rest):  # type: ignore[no-untyped-def]
        return data

    def rebuild_from_type_v2(self, func, _new_type, args, _state):  # type: ignore[no-untyped-def]
        rebuilders = (
            self.rebuild_tensor_v2,
            self.rebuild_tensor_v3,
            self.rebuild_tensor,
            self.rebuild_parameter,
        )
        if func not in rebuilders:
            raise FormatError("subclassed tensor with an unknown rebuild function")
        if not isinstance(args, tuple):
            raise FormatError("subclassed tensor with malformed arguments")
        return func(*args)

    # -- storages

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise FormatError(
                f"unsupported persistent record {_shown(kind)} (only storages allowed)"
            )
        fields = 6 if self.legacy else 5
        if len(pid) != fields:
            raise FormatError(f"storage record has {len(pid)} fields, expected {fields}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise FormatError(f"storage type {_shown(storage_type)} is not a torch storage class")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise FormatError("storage record has a malformed key or size")
        numel = _index(numel, f"storage {_shown(key)} size")
        dtype = storage_type.dtype
        nbytes = numel * DTYPE_BITS[dtype] // 8 if dtype else numel
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, dtype, nbytes, untyped=dtype is None)
        if self.legacy and pid[5] is not None:
            return self._legacy_view(storage, pid[5])
        return storage

    def _legacy_view(self, root: _Storage, view: Any) -> _Storage:
        # Pre-1.0 files could pickle a storage *view*: (view_key, element offset, size), the
        # elements [offset, offset + size) of the root storage, which must hold them.
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)):
            raise FormatError("malformed legacy storage view")
        key = view[0]
        offset = _index(view[1], f"storage view {_shown(key)} offset")
        size = _index(view[2], f"storage view {_shown(key)} size")
        if root.dtype is None:
            raise FormatError(f"storage view {_shown(key)} of an untyped storage")
        itemsize = DTYPE_BITS[root.dtype] // 8
        if (offset + size) * itemsize > root.nbytes:
            raise FormatError(
                f"storage view {_shown(key)} (elements {offset} to {offset + size}) reaches "
                f"past its storage {_shown(root.key)} of {root.nbytes // itemsize} elements"
            )
        found = _View(root.key, offset * itemsize, size * itemsize)
        known = self.views.setdefault(key, found)
        if known != found:
            raise FormatError(f"storage view {_shown(key)} is defined twice, differently")
        if key not in self._view_storages:
            self._view_storages[key] = _Storage(key, root.dtype, found.nbytes)
        return self._view_storages[key]


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
    unpickler = _RestrictedUnpickler(_BoundedReader(stream, limit), legacy=legacy, size=limit)  # type: ignore[arg-type]
    try:
        return unpickler.load(), unpickler
    except FormatError:
        raise
    except RecursionError as e:
        raise FormatError("pickle is nested too deeply") from e
    except MemoryError as e:
        raise FormatError("pickle needs more memory than any state dict would") from e
    except Exception as e:  # malformed opcodes: UnpicklingError, EOFError, TypeError, ...
        raise FormatError(f"malformed pickle: {type(e).__name__}: {_message(e)}") from e


def _message(error: BaseException) -> str:
    """An exception's text, short: messages about hostile values may quote them at length (or
    fail to, past Python's 4,300-digit limit for integers)."""
    try:
        text = str(error)
    except Exception:  # the message itself could not be formed
        return "(no message)"
    return text if len(text) <= 200 else text[:200] + "..."


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
    others: tuple[str, ...] = ()
    """other mappings in the file that also hold tensors (not read as the model's)."""


def _is_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for size, step in zip(reversed(shape), reversed(stride)):
        if size != 1 and step != expected:
            return False
        expected *= size
    return True


@dataclass(frozen=True)
class _Candidate:
    path: str
    """the keys leading to the mapping, dotted ("" for the top level)."""
    tensors: dict[str, PickledTensor]
    nbytes: int


def _tensor_bytes(tensors: dict[str, PickledTensor]) -> int:
    return sum(math.prod(t.shape) * DTYPE_BITS[t.dtype] // 8 for t in tensors.values())


def _direct_tensors(mapping: dict[Any, Any]) -> dict[str, PickledTensor]:
    return {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, PickledTensor)}


def _candidates(obj: Any, pickle_bytes: int) -> list[_Candidate]:
    """Every mapping with tensors at its top, to ``CONTAINER_DEPTH`` levels below the pickled
    object, never under training state (optimizer, scheduler, scaler): each container entered
    once by identity, and the entries looked at counted against the pickle's budget."""
    budget = _Budget(pickle_bytes, "look at more than {:,} container entries")
    found: list[_Candidate] = []
    entered: set[int] = set()
    queue: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while queue:
        mapping, path, depth = queue.pop(0)
        if not isinstance(mapping, dict) or id(mapping) in entered:
            continue
        entered.add(id(mapping))
        budget.spend(len(mapping))
        tensors = _direct_tensors(mapping)
        if tensors:
            found.append(_Candidate(path, tensors, _tensor_bytes(tensors)))
        if depth >= CONTAINER_DEPTH:
            continue
        for key, value in mapping.items():
            if isinstance(key, str) and isinstance(value, dict) and key not in TRAINING_STATE_KEYS:
                queue.append((value, f"{path}.{key}" if path else key, depth + 1))
    return found


def _find_state_dict(obj: Any, pickle_bytes: int) -> _Found:
    """Locate the model's tensors in a checkpoint object, the way a user would.

    A known container key (``state_dict``, ``model``, ``module``, ``ema``...) holding tensors
    wins; otherwise the mapping with the most tensor bytes. Training state (optimizer,
    scheduler, scaler) is never weights, and a handful of scalars beside the real state dict
    (nanoGPT's ``best_val_loss``, a 0-d tensor at the top level) never makes the whole
    checkpoint count as the state dict. Returns the tensors, the container used, and the
    other mappings that also hold tensors (so the report can say what was not read).
    """
    candidates = _candidates(obj, pickle_bytes)
    if not candidates:
        flat = _flatten(obj, pickle_bytes)
        return _Found(flat, "(nested)" if flat else None, ())
    known = [c for c in candidates if c.path in CONTAINER_KEYS]
    largest = max(candidates, key=lambda c: c.nbytes)
    chosen = largest
    if known:
        best = min(known, key=lambda c: CONTAINER_KEYS.index(c.path))
        # a known container holding at least half of what the largest mapping holds
        if 2 * best.nbytes >= largest.nbytes:
            chosen = best
    others = tuple(
        f"{c.path or '(top level)'} ({count(len(c.tensors), 'tensor')})"
        for c in candidates
        if c is not chosen
    )
    return _Found(chosen.tensors, chosen.path or None, others)


@dataclass(frozen=True)
class _Found:
    tensors: dict[str, PickledTensor]
    container: str | None
    others: tuple[str, ...]


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool) and key.bit_length() <= 64:
        return str(key)  # list indices, optimizer state's parameter numbers
    return _shown(key, 40)


def _children(obj: object) -> Iterator[tuple[object, object]] | None:
    if isinstance(obj, dict):
        return iter(obj.items())
    if isinstance(obj, (list, tuple)):
        return enumerate(obj)
    return None


def _flatten(obj: Any, pickle_bytes: int) -> dict[str, PickledTensor]:
    """Tensors anywhere in ``obj`` (to ``MAX_WALK_DEPTH``), named by their path of keys.

    Iterative, and each container is entered once (by identity): through the memo a pickle
    can hold one list twice in another, 50 levels deep, a few hundred bytes with 2**50 paths.
    The entries visited and the characters of the names built are counted against
    ``pickle_budget``, so the walk is linear in the file whatever its shape.
    """
    out: dict[str, PickledTensor] = {}
    budget = _Budget(pickle_bytes, "walk more than {:,} container entries and name characters")
    root = _children(obj)
    if root is None:
        return out
    entered = {id(obj)}
    stack: list[tuple[Iterator[tuple[object, object]], str]] = [(root, "")]
    while stack:
        items, prefix = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        key, value = step
        name = prefix + _key_text(key)
        budget.spend(1 + len(name))
        if isinstance(value, PickledTensor):
            out[name] = value
        elif len(stack) < MAX_WALK_DEPTH + 1 and id(value) not in entered:
            inner = _children(value)
            if inner is not None:
                entered.add(id(value))
                stack.append((inner, name + "."))
    return out


def strip_wrapper_prefix(names: list[str]) -> str:
    """The wrapper prefix (DDP ``module.``, torch.compile ``_orig_mod.``) every name carries.

    Taken from the names' common prefix, so the cost is linear in their length even for a
    name that repeats ``module.`` a hundred thousand times.
    """
    if not names:
        return ""
    low, high = min(names), max(names)  # the common prefix of all is theirs
    common = low[: next((i for i, (a, b) in enumerate(zip(low, high)) if a != b), len(low))]
    stripped = 0
    while True:
        for prefix in WRAPPER_PREFIXES:
            if common.startswith(prefix, stripped):
                stripped += len(prefix)
                break
        else:
            return common[:stripped]


def _entries(
    tensors: dict[str, PickledTensor], starts: dict[str, int | None], container: str | None
) -> tuple[list[PickleEntry], str]:
    """Check every tensor against its storage and locate its bytes.

    ``starts`` gives where each storage's bytes begin in the file (None when compressed);
    each storage's ``nbytes`` is already checked against what the file really holds, so a
    view that fits its storage fits the file. The storage span handed on is cut to the
    storage's size in whole elements of the tensor, so a reader viewing it as an array of
    elements never meets a partial one.
    """
    prefix = strip_wrapper_prefix(list(tensors))
    entries = []
    expanded = 0
    for stored_name, t in tensors.items():
        itemsize_bits = DTYPE_BITS[t.dtype]
        itemsize = itemsize_bits // 8
        check_view(stored_name, itemsize, t.offset, t.shape, t.stride, t.storage.nbytes)
        logical = math.prod(t.shape) * itemsize_bits // 8
        if logical > t.storage.nbytes:  # only a view that overlaps itself (a stride of 0)
            expanded += logical
            if expanded > MAX_EXPANDED_BYTES:
                raise FormatError(
                    f"tensor {_shown(stored_name, 200)} (shape {list(t.shape)}, stride "
                    f"{list(t.stride)}) repeats a {t.storage.nbytes}-byte storage into "
                    f"{logical:,} bytes of values; refusing to expand self-overlapping views "
                    f"past {MAX_EXPANDED_BYTES:,} bytes per file"
                )
        start = starts[t.storage.key]
        whole = t.storage.nbytes // itemsize * itemsize
        storage_span = None if start is None else ByteSpan(start, start + whole)
        ref = StorageRef(
            key=t.storage.key,
            dtype=t.storage.dtype or t.dtype,
            nbytes=t.storage.nbytes,
            span=storage_span,
            offset=t.offset,
            stride=t.stride,
        )
        span = None
        if storage_span is not None and itemsize_bits % 8 == 0:
            first = storage_span.start + t.offset * itemsize
            if logical == 0:  # nothing to read, whatever the strides say
                span = ByteSpan(first, first)
            elif _is_contiguous(t.shape, t.stride):
                span = ByteSpan(first, first + element_extent(t.shape, t.stride) * itemsize)
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
    except RecursionError as e:  # nothing here recurses on what a file holds; a last guard
        raise FormatError("pickle is nested too deeply") from e
    except _CORRUPT_ZIP as e:
        # a damaged archive (bit rot, a partial download) is an invalid file, not a crash
        raise FormatError(f"corrupt zip archive: {type(e).__name__}: {_message(e)}") from e


# What zipfile raises on damaged archives besides BadZipFile: bad names, unknown versions or
# compression methods, offsets past any integer a seek accepts, encrypted records.
_CORRUPT_ZIP = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    UnicodeDecodeError,
    ValueError,
    OverflowError,
    EOFError,
    RuntimeError,
    struct.error,
)


def _read_zip(path: Path, f: BinaryIO) -> PickleCheckpoint:
    file_size = os.fstat(f.fileno()).st_size
    try:
        archive = zipfile.ZipFile(f)
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise FormatError(f"unreadable zip archive: {_message(e)}") from e
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
        raise FormatError(f"cannot read data.pkl: {_message(e)}") from e
    obj, unpickler = _unpickle(io.BytesIO(raw), legacy=False, limit=len(raw))
    found = _find_state_dict(obj, len(raw))
    records = {i.filename: i for i in infos}
    starts: dict[str, int | None] = {}
    for key, storage in unpickler.storages.items():
        info = records.get(f"{root}data/{key}")
        if info is None:
            raise FormatError(
                f"storage record 'data/{_shown(key)[1:-1]}' is missing from the archive"
            )
        if info.file_size < storage.nbytes:
            raise FormatError(
                f"storage record 'data/{_shown(key)[1:-1]}' holds {info.file_size} bytes, "
                f"tensors need {storage.nbytes}"
            )
        stored = info.compress_type == zipfile.ZIP_STORED
        starts[key] = _record_span(info, f).start if stored else None
    entries, prefix = _entries(found.tensors, starts, found.container)
    return PickleCheckpoint(FileFormat.PYTORCH_ZIP, entries, found.container, prefix, found.others)


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
    """Every record must lie inside the file and apart from the others (no overlapping
    records), and none may be encrypted (zipfile would raise asking for a password)."""
    spans = []
    for info in infos:
        if info.flag_bits & 0x1:
            raise FormatError(
                f"zip record {info.filename!r} is encrypted, which torch never writes"
            )
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
        raise FormatError(f"unsupported legacy protocol version {_shown(protocol)}")
    sys_info, _ = load()
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise FormatError("big-endian checkpoints are not supported")
    main_start = f.tell()
    obj, unpickler = load()
    pickle_bytes = f.tell() - main_start
    keys, _ = load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise FormatError("legacy storage key list is malformed")
    clash = next((k for k in unpickler.views if k in unpickler.storages), None)
    if clash is not None:
        raise FormatError(f"storage key {_shown(clash)} names both a storage and a view")
    starts: dict[str, int | None] = {}
    position = f.tell()
    for key in keys:
        if key in starts:
            raise FormatError(f"storage {_shown(key)} is stored twice")
        storage = unpickler.storages.get(key)
        f.seek(position)
        count_raw = f.read(8)
        if len(count_raw) != 8:
            raise FormatError(f"storage {_shown(key)} is missing: the file is truncated")
        (count,) = struct.unpack("<q", count_raw)
        itemsize = (
            DTYPE_BITS[storage.dtype] // 8
            if storage and storage.dtype and not storage.untyped
            else 1
        )
        nbytes = count * itemsize
        if count < 0 or position + 8 + nbytes > file_size:
            raise FormatError(f"storage {_shown(key)} runs past the end of the file: truncated")
        if storage is not None and nbytes < storage.nbytes:
            raise FormatError(
                f"storage {_shown(key)} holds {nbytes} bytes, tensors need {storage.nbytes}"
            )
        starts[key] = position + 8
        position += 8 + nbytes
    missing = [k for k in unpickler.storages if k not in starts]
    if missing:
        raise FormatError(f"storage {_shown(missing[0])} is referenced but not stored")
    for view_key, view in unpickler.views.items():  # inside their roots (checked when read)
        root_start = starts[view.root]
        starts[view_key] = None if root_start is None else root_start + view.offset
    found = _find_state_dict(obj, pickle_bytes)
    entries, prefix = _entries(found.tensors, starts, found.container)
    return PickleCheckpoint(
        FileFormat.PYTORCH_LEGACY, entries, found.container, prefix, found.others
    )
