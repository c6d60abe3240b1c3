"""The neutral model of a checkpoint that every reader produces and every analysis consumes.

Readers know formats; analyses know ties. This module is the only thing they share, so a new
format (GGUF, a remote Hub repo) only has to produce these records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

# Bits per element of each dtype, keyed by safetensors' dtype codes. Pickled tensors are mapped
# onto the same codes so one comparison path serves both formats. C128 exists in torch but not in
# safetensors; it is kept so such pickles can still be inspected.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "C128": 128,
}


def nbytes_of(dtype: str, shape: tuple[int, ...]) -> int | None:
    """Byte size of a dense tensor, or None when the bit count is not a whole number of bytes."""
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    return bits // 8 if bits % 8 == 0 else None


def element_extent(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """Elements a strided view spans from its offset to one past its last element (0 when
    empty): the part of a storage it can touch, from geometry alone."""
    if any(s == 0 for s in shape):
        return 0
    return 1 + sum((s - 1) * st for s, st in zip(shape, stride))


class FileFormat(str, Enum):
    SAFETENSORS = "safetensors"
    PYTORCH_ZIP = "pytorch-zip"
    PYTORCH_LEGACY = "pytorch-legacy"


class SourceKind(str, Enum):
    """What the user pointed at; decides how files and config were found."""

    SAFETENSORS_FILE = "safetensors"
    SAFETENSORS_SHARDED = "safetensors-sharded"
    PICKLE_FILE = "pytorch"
    PICKLE_SHARDED = "pytorch-sharded"
    SAFETENSORS_SET = "safetensors-unindexed"
    PEFT_ADAPTER = "peft-adapter"


@dataclass(frozen=True)
class ByteSpan:
    """Absolute byte offsets ``[start, end)`` of data inside one file."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class StorageRef:
    """Where a pickled tensor's bytes live: one storage record, viewed with offset and stride."""

    key: str
    """storage key inside the file (``data/<key>`` in a zip); shared keys mean shared memory."""
    dtype: str
    nbytes: int
    span: ByteSpan | None
    """absolute location of the whole storage's bytes; None when not directly addressable."""
    offset: int
    """storage offset of the view, in elements."""
    stride: tuple[int, ...]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    """normalised name used for matching (container path and wrapper prefixes removed)."""
    file: str
    """the weight file holding it, as named in ``Checkpoint.files``."""
    dtype: str
    shape: tuple[int, ...]
    span: ByteSpan | None
    """absolute bytes of the tensor when stored contiguously (always for safetensors)."""
    stored_name: str
    """the name exactly as written in the file."""
    storage: StorageRef | None = None
    """pickles only."""

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.dtype, self.shape) or 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightFile:
    name: str
    """path relative to the checkpoint root, as shown in reports and written in indexes."""
    path: Path
    format: FileFormat
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    """safetensors ``__metadata__``; pickles have none."""
    container: str | None = None
    """pickles: the path of the state dict inside the object (``state_dict``, ``model``)."""
    prefix: str = ""
    """wrapper prefix removed from every key (``module.``, ``_orig_mod.``)."""


@dataclass(frozen=True)
class IndexInfo:
    name: str
    path: Path
    weight_map: dict[str, str]
    metadata: dict[str, Any]
    total_size: int | float | None


class ConfigKind(str, Enum):
    """Which framework's configuration file declares the model (and so the tie)."""

    TRANSFORMERS = "transformers"
    """config.json: ``tie_word_embeddings`` (and nested levels)."""
    META = "meta-params"
    """Meta's original params.json (``dim``, ``n_layers``...): the reference code never ties."""
    LINGUA = "lingua-params"
    """Lingua's params.json: ``model.weight_tying``."""
    TORCHTITAN = "torchtitan"
    """a JSON with torchtitan's model args: ``enable_weight_tying``."""
    MEGATRON = "megatron"
    """Megatron-LM / NeMo YAML: ``untie_embeddings_and_output_weights``,
    ``share_embeddings_and_output_weights``."""


@dataclass(frozen=True)
class ConfigInfo:
    name: str
    path: Path
    data: dict[str, Any]
    kind: ConfigKind = ConfigKind.TRANSFORMERS

    @property
    def model_type(self) -> str | None:
        value = self.data.get("model_type")
        return value if isinstance(value, str) else None

    @property
    def architectures(self) -> tuple[str, ...]:
        value = self.data.get("architectures")
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str))
        return ()


@dataclass(frozen=True)
class AdapterInfo:
    """A PEFT adapter's own settings, read from ``adapter_config.json``."""

    path: Path
    base_model: str | None
    modules_to_save: tuple[str, ...]
    ensure_weight_tying: bool


class ProblemKind(str, Enum):
    """What a reader can find wrong with a file, before any analysis (``analysis.integrity``
    turns each into its finding)."""

    INVALID_FILE = "invalid-file"
    """not valid in its format, unreadable, or not to be read (a link out of the folder)."""
    UNSAFE_PICKLE = "unsafe-pickle"
    """a pickle that would need code execution to load."""
    MISSING_SHARD = "missing-shard"
    """an index names a shard that does not exist."""
    REPEATED_KEY = "repeated-key"
    """one JSON object (a header, an index) names a key twice: the last one wins."""
    BASE_NOT_FOUND = "base-not-found"
    """a PEFT adapter's base model config cannot be found."""


@dataclass(frozen=True)
class Problem:
    """A reader's report of a file it could not read as it should: a value, not an exception,
    so one bad shard never hides the rest of a checkpoint."""

    kind: ProblemKind
    message: str
    """what is wrong, naming the file."""
    file: str | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    """Everything read from a source: plain data, no I/O. Built by ``readers``; the bytes of
    its tensors are read through a ``ByteSource`` opened beside it."""

    source: str
    root: Path
    kind: SourceKind
    files: Mapping[str, WeightFile]
    tensors: tuple[TensorInfo, ...]
    index: IndexInfo | None = None
    config: ConfigInfo | None = None
    adapter: AdapterInfo | None = None
    notes: tuple[str, ...] = ()
    """plain facts for the reader of the report (which files a loader would use, and why)."""
    problems: tuple[Problem, ...] = ()
    """what the readers found wrong with the files (each becomes a finding)."""
    unreadable: frozenset[str] = frozenset()
    """weight files that could not be read; analyses must not judge keys they would hold."""
    config_unreadable: bool = False
    """a config was found but could not be read (invalid, too large, a link out of the folder)."""
    origin: str = "local"
    """where the files came from: 'local', 'hub' (range requests) or 'hub-cache'."""
    transferred: int | None = None
    """Hub sources: bytes moved before reading (downloads into the cache; 0 for a cached
    snapshot); range reads are counted by the byte source. None for local paths."""
    commit: str | None = None
    """Hub sources: the commit read (a branch or tag resolved by the Hub, or offline by the
    cache); None for local paths."""

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)
