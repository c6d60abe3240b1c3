"""Which tensors hold identical bytes, and how far apart the ones that differ are.

Candidates must share dtype and shape; a 12 KiB sample (start, middle, end) then separates
almost every trained tensor for the price of three small reads, and only tensors whose samples
collide are streamed in full, block by block, so memory stays at a few blocks however big the
tensors are.

Work is bounded by the bytes a checkpoint stores, not the bytes it claims: tensors are read as
``TensorData.regions``, where a hole of a sparse file is a zero run that is never read. Two holes
compare equal without a read, a hole against stored bytes costs the stored bytes, and the digest
hashes zeros canonically (a hole and written zeros give one digest). So comparing two tensors
costs their stored bytes plus a few system calls per data extent, whatever size they claim.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tiecheck.model import DTYPE_BITS, TensorInfo
from tiecheck.readers.tensor_data import ALIGN, Block, Region, TensorData


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
_ZEROS = bytes(BLOCK)
ROW = ALIGN
"""Granularity of the canonical digest: all-zero rows of this many bytes are left out of it."""

Piece = tuple[int, Block | None, Block | None]


def _zeros(n: int) -> bytes:
    return _ZEROS[:n] if n <= BLOCK else bytes(n)


def _cut(block: Block | None, offset: int, n: int) -> Block | None:
    if block is None or (offset == 0 and n == len(block)):
        return block
    return block[offset : offset + n]


def _in_step(a: Iterator[Region], b: Iterator[Region]) -> Iterator[Piece]:
    """Two region streams of equal length, cut wherever either changes: ``(n, x, y)`` with
    each side ``n`` bytes or None (``n`` unread zeros). Two dense tensors read with buffers
    of one size give whole blocks, never copies."""
    left_a = left_b = at_a = at_b = 0
    block_a: Block | None = None
    block_b: Block | None = None
    while True:
        while left_a == 0:
            region = next(a, None)
            if region is None:
                return
            (left_a, block_a), at_a = region, 0
        while left_b == 0:
            region = next(b, None)
            if region is None:
                return
            (left_b, block_b), at_b = region, 0
        n = min(left_a, left_b)
        yield n, _cut(block_a, at_a, n), _cut(block_b, at_b, n)
        left_a, left_b, at_a, at_b = left_a - n, left_b - n, at_a + n, at_b + n


def _buffer(t: TensorInfo) -> bytearray:
    """A read buffer for one tensor: ``BLOCK`` bytes, or less for a small tensor (zeroing
    a fresh MiB per tensor dominated comparing tens of thousands of small ones)."""
    return bytearray(min(BLOCK, -(-t.nbytes // ALIGN) * ALIGN) or ALIGN)


def _both(data: TensorData, a: TensorInfo, b: TensorInfo) -> Iterator[Piece]:
    return _in_step(data.regions(a, _buffer(a)), data.regions(b, _buffer(b)))


def _equal(a: TensorInfo, b: TensorInfo, data: TensorData) -> bool:
    # ``==`` on bytes/bytearray is memcmp (a bytes left side defers to the bytearray right).
    for n, x, y in _both(data, a, b):
        if (x is not None or y is not None) and (x or _zeros(n)) != (y or _zeros(n)):
            return False
    return True


def is_constant(t: TensorInfo, data: TensorData) -> bool:
    """Whether every element of ``t`` holds the same bits (a norm of ones, a bias of zeros).

    Streamed, stopping at the first block that breaks the pattern (at once, for a trained
    tensor); holes count as zeros without being read. Budgeted like every comparison: past the
    budget the answer is "not constant", which keeps the finding.
    """
    itemsize = DTYPE_BITS[t.dtype] // 8
    if t.nbytes == 0 or not itemsize or not data.claim(t):
        return False
    first: bytes | None = None
    pattern = b""
    for _n, block in data.regions(t, _buffer(t)):
        if block is None:  # a hole: zeros, not read and not built
            if first is None:
                first = bytes(itemsize)
            if first.count(0) != itemsize:
                return False
            continue
        chunk = bytes(block)
        if first is None:
            first = chunk[:itemsize]
        if not pattern:
            pattern = first * (BLOCK // itemsize)
        repeated = (pattern * (len(chunk) // len(pattern) + 1))[: len(chunk)]
        if len(chunk) % itemsize or chunk != repeated:
            return False
    return True


def _digest(t: TensorInfo, data: TensorData) -> bytes:
    """A digest of the tensor's bytes that does not depend on how zeros are stored.

    Two streams, hashed separately: the ``ROW``-byte rows (counted from the tensor's start)
    that are not all zero, in order, and their row numbers. Together they determine the bytes,
    and a row of zeros is left out whether it was read or is a hole, so holes need no reading
    and a sparse tensor digests like its dense copy. Regions start on multiples of ``ROW``.
    """
    import numpy as np

    rows_hash = hashlib.blake2b(digest_size=16)
    where_hash = hashlib.blake2b(digest_size=16)
    pos = 0
    for n, block in data.regions(t, _buffer(t)):
        if block is not None:
            assert pos % ROW == 0, "regions start on the ALIGN grid"
            first = pos // ROW
            whole = n - n % ROW  # only the tensor's last region can end inside a row
            rows = np.frombuffer(block, np.uint8, count=whole).reshape(-1, ROW)
            stored = rows.any(axis=1)
            if stored.all():
                rows_hash.update(memoryview(block)[:whole])
                where_hash.update(np.arange(first, first + len(rows), dtype="<u8").tobytes())
            elif stored.any():
                rows_hash.update(rows[stored].tobytes())
                where_hash.update((np.flatnonzero(stored) + first).astype("<u8").tobytes())
            tail = bytes(memoryview(block)[whole:n])
            if tail and tail != _zeros(len(tail)):
                rows_hash.update(tail)
                where_hash.update((first + len(rows)).to_bytes(8, "little"))
        pos += n
    return rows_hash.digest() + where_hash.digest()


def _sample_key(t: TensorInfo, data: TensorData) -> bytes:
    """The sample's digest: tens of thousands of candidates keep 16 bytes each, not 12 KiB."""
    return hashlib.blake2b(data.sample(t), digest_size=16).digest()


def comparison_plan(tensors: Iterable[TensorInfo]) -> list[list[TensorInfo]]:
    """Candidate sets: distinct physical tensors of one dtype and shape, more than one each."""
    unique = {physical_key(t): t for t in tensors if t.nbytes > 0}
    return _partition(list(unique.values()), lambda t: (t.dtype, t.shape))


def identical_sets(tensors: Iterable[TensorInfo], data: TensorData) -> list[list[TensorInfo]]:
    """Sets of two or more separately stored tensors whose bytes are identical."""
    result = []
    for candidates in comparison_plan(tensors):
        for collided in _partition(candidates, lambda t: _sample_key(t, data)):
            if not data.claim(*collided):
                raise OSError(
                    f"comparing {collided[0].name} and {len(collided) - 1} more would read more "
                    "than several times the size of the files: these views overlap (one storage "
                    "read as many tensors), values not compared"
                )
            if len(collided) == 2:
                if _equal(collided[0], collided[1], data):
                    result.append(collided)
            else:
                result.extend(_partition(collided, lambda t: _digest(t, data)))
    return result


@dataclass(frozen=True)
class Tolerance:
    """When two differing tensors still count as numerically identical: every element within
    ``atol + rtol * |reference|`` (``numpy.allclose``'s rule and defaults). Such copies are
    the same model to every loader; a trained head differs far more."""

    rtol: float = 1e-5
    atol: float = 1e-8

    def describe(self) -> str:
        return f"--rtol {self.rtol:g} --atol {self.atol:g}"


DEFAULT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Difference:
    differing: int
    """elements whose bits differ."""
    numel: int
    max_abs_diff: float | None
    """None for dtypes tiecheck does not decode numerically (fp8, fp4, complex)."""
    outside: int | None = None
    """differing elements outside the tolerance; None when the values cannot be decoded (then
    every differing element counts as outside)."""
    tolerance: Tolerance = DEFAULT_TOLERANCE

    @property
    def fraction(self) -> float:
        return self.differing / self.numel if self.numel else 0.0

    @property
    def within_tolerance(self) -> bool:
        """Numerically identical: some bits differ, no value differs beyond the tolerance."""
        return self.outside == 0

    def describe(self) -> str:
        """Exact counts: "3 of 1,024 elements differ (max |diff| 1e-06)"."""
        text = f"{self.differing:,} of {self.numel:,} elements differ"
        if self.max_abs_diff is not None:
            text += f", max |diff| {self.max_abs_diff:.4g}"
        if self.outside is not None and self.outside != self.differing:
            text += f", {self.outside:,} beyond {self.tolerance.describe()}"
        return text


FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
"""Dtypes whose values a tolerance applies to."""

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


def difference(
    a: TensorInfo,
    b: TensorInfo,
    data: TensorData,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> Difference | None:
    """Element-wise difference of ``a`` from the reference ``b`` (one dtype and shape),
    streamed; else None (also when reading them would pass the checkpoint's budget, see
    ``TensorData.claim``). Counts exactly the elements that differ and those beyond
    ``tolerance``.

    Regions are compared in step: hole against hole is skipped unread, a hole against data is
    compared with zeros, so the work is the bytes stored, not the bytes claimed."""
    import numpy as np

    if a.dtype != b.dtype or a.shape != b.shape or not data.claim(a, b):
        return None
    bits = DTYPE_BITS[a.dtype]
    width = bits // 8 if bits % 8 == 0 else 1  # sub-byte dtypes: count differing bytes
    differing = 0
    outside: int | None = 0
    max_abs: float | None = None if _decode(b"", a.dtype) is None else 0.0
    for n, x_or_hole, y_or_hole in _both(data, a, b):
        if x_or_hole is None and y_or_hole is None:
            continue  # two holes: zeros on both sides, nothing read
        x, y = x_or_hole or _zeros(n), y_or_hole or _zeros(n)
        if x == y:  # memcmp; equal bytes add nothing to either count
            continue
        unequal = np.frombuffer(x, "u1") != np.frombuffer(y, "u1")
        differing += int(np.count_nonzero(unequal.reshape(-1, width).any(axis=1)))
        xs, ys = _decode(x, a.dtype), _decode(y, a.dtype)
        if xs is None or max_abs is None:
            max_abs = outside = None
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            ref = ys.astype(np.float64)
            delta = np.abs(xs.astype(np.float64) - ref)
            if a.dtype in FLOAT_DTYPES:
                allowed = tolerance.atol + tolerance.rtol * np.abs(ref)
            else:  # integers (packed quantised weights, indices): any change is a change
                allowed = np.zeros_like(ref)
            # NaN or inf against a number (or the other sign's inf) is beyond any tolerance;
            # bitwise-equal elements (NaN against the same NaN) were not counted as differing
            beyond = ~(delta <= allowed) & (unequal.reshape(-1, width).any(axis=1))
        if outside is not None:
            outside += int(np.count_nonzero(beyond))
        finite = delta[np.isfinite(delta)]
        if finite.size:
            max_abs = max(max_abs, float(finite.max()))
        if finite.size != delta.size:
            max_abs = float("inf") if np.isinf(delta).any() else max_abs
    return Difference(
        differing, a.numel, max_abs, outside if max_abs is not None else None, tolerance
    )
