"""Which tensors hold identical bytes, and how far apart the ones that differ are.

Candidates must share dtype and shape; a 12 KiB sample (start, middle, end) then separates
almost every trained tensor for the price of three small reads, and only tensors whose samples
collide are streamed in full, chunk by chunk, so memory stays at a few chunks however big the
tensors are.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tiecheck.model import DTYPE_BITS, TensorInfo
from tiecheck.readers.tensor_data import TensorData


def physical_key(t: TensorInfo) -> tuple[object, ...]:
    """Tensors with equal keys are the same bytes on disk (exact aliases in one pickle)."""
    if t.storage is not None:
        return (t.file, t.storage.key, t.storage.offset, t.shape, t.storage.stride, t.dtype)
    return (t.file, t.span)


def _partition(items: list[TensorInfo], key) -> list[list[TensorInfo]]:  # type: ignore[no-untyped-def]
    buckets: dict[object, list[TensorInfo]] = defaultdict(list)
    for item in items:
        buckets[key(item)].append(item)
    return [b for b in buckets.values() if len(b) > 1]


BLOCK = 1 << 20


def _equal(a: TensorInfo, b: TensorInfo, data: TensorData) -> bool:
    blocks_a = data.blocks(a, bytearray(BLOCK))
    blocks_b = data.blocks(b, bytearray(BLOCK))
    return all(x == y for x, y in zip(blocks_a, blocks_b))


def _digest(t: TensorInfo, data: TensorData) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for block in data.blocks(t, bytearray(BLOCK)):
        h.update(block)
    return h.digest()


def comparison_plan(tensors: Iterable[TensorInfo]) -> list[list[TensorInfo]]:
    """Candidate sets: distinct physical tensors of one dtype and shape, more than one each."""
    unique = {physical_key(t): t for t in tensors if t.nbytes > 0}
    return _partition(list(unique.values()), lambda t: (t.dtype, t.shape))


def identical_sets(tensors: Iterable[TensorInfo], data: TensorData) -> list[list[TensorInfo]]:
    """Sets of two or more separately stored tensors whose bytes are identical."""
    result = []
    for candidates in comparison_plan(tensors):
        for collided in _partition(candidates, data.sample):
            if len(collided) == 2:
                if _equal(collided[0], collided[1], data):
                    result.append(collided)
            else:
                result.extend(_partition(collided, lambda t: _digest(t, data)))
    return result


@dataclass(frozen=True)
class Difference:
    differing: int
    """elements whose bits differ."""
    numel: int
    max_abs_diff: float | None
    """None for dtypes tiecheck does not decode numerically (fp8, fp4, complex)."""

    @property
    def fraction(self) -> float:
        return self.differing / self.numel if self.numel else 0.0


_NUMPY_DTYPES = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "u1",
    "I16": "<i2",
    "U16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "I64": "<i8",
    "U64": "<u8",
}


def _decode(raw: bytes, dtype: str):  # type: ignore[no-untyped-def]
    import numpy as np

    if dtype == "BF16":  # bfloat16 is the top half of a float32
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    code = _NUMPY_DTYPES.get(dtype)
    if code is None:
        return None
    values = np.frombuffer(raw, code)
    return values.astype(np.float64) if values.dtype.kind in "iub" else values


def difference(a: TensorInfo, b: TensorInfo, data: TensorData) -> Difference | None:
    """Element-wise difference of two tensors of one dtype and shape, streamed; else None."""
    import numpy as np

    if a.dtype != b.dtype or a.shape != b.shape:
        return None
    bits = DTYPE_BITS[a.dtype]
    differing = 0
    max_abs: float | None = 0.0
    for x, y in zip(data.chunks(a), data.chunks(b)):
        width = bits // 8 if bits % 8 == 0 else 1  # sub-byte dtypes: count differing bytes
        unequal = np.frombuffer(x, "u1") != np.frombuffer(y, "u1")
        differing += int(np.count_nonzero(unequal.reshape(-1, width).any(axis=1)))
        xs, ys = _decode(x, a.dtype), _decode(y, a.dtype)
        if xs is None or max_abs is None:
            max_abs = None
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.abs(xs.astype(np.float64) - ys.astype(np.float64))
        finite = delta[np.isfinite(delta)]
        if finite.size:
            max_abs = max(max_abs, float(finite.max()))
        if finite.size != delta.size:
            max_abs = float("inf") if np.isinf(delta).any() else max_abs
    return Difference(differing, a.numel, max_abs)
