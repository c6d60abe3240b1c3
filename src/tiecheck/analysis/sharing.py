"""Storage sharing inside pickles, judged from storage keys, offsets, shapes and strides alone.

``safetensors.torch._find_shared_tensors`` cannot be used: it needs torch and crashes on
transposed views. Coverage is computed here from the view geometry instead, so no tensor byte
is read.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

from tiecheck.model import DTYPE_BITS, TensorInfo, element_extent
from tiecheck.rules import Code, Finding, finding


class SharingKind(str, Enum):
    ALIAS = "alias"
    """same storage, offset, shape and stride: one tensor under several names (a tie)."""
    OVERLAPPING = "overlapping-views"
    DISJOINT = "disjoint-views"
    """slices of one buffer (fused qkv, a flat DeepSpeed buffer): not a tie."""


@dataclass(frozen=True)
class SharedStorage:
    file: str
    storage: str
    kind: SharingKind
    keys: tuple[str, ...]


def _byte_range(t: TensorInfo) -> tuple[int, int]:
    assert t.storage is not None
    itemsize = DTYPE_BITS[t.dtype] / 8
    extent = element_extent(t.shape, t.storage.stride)
    if not extent:
        return (0, 0)
    start = t.storage.offset * itemsize
    return (int(start), int(start + extent * itemsize))


def _view(t: TensorInfo) -> tuple[object, ...]:
    assert t.storage is not None
    return (t.dtype, t.storage.offset, t.shape, t.storage.stride)


def shared_storages(tensors: list[TensorInfo]) -> list[SharedStorage]:
    by_storage: dict[tuple[str, str], list[TensorInfo]] = defaultdict(list)
    for t in tensors:
        if t.storage is not None:
            by_storage[(t.file, t.storage.key)].append(t)
    result = []
    for (file, key), members in by_storage.items():
        views: dict[tuple[object, ...], list[TensorInfo]] = defaultdict(list)
        for t in members:
            views[_view(t)].append(t)
        for same in views.values():
            if len(same) > 1:
                names = tuple(t.name for t in same)
                result.append(SharedStorage(file, key, SharingKind.ALIAS, names))
        if len(views) > 1:
            firsts = [same[0] for same in views.values()]
            ranges = sorted(_byte_range(t) for t in firsts)
            overlap = any(b[0] < a[1] for a, b in itertools.pairwise(ranges))
            kind = SharingKind.OVERLAPPING if overlap else SharingKind.DISJOINT
            result.append(SharedStorage(file, key, kind, tuple(t.name for t in firsts)))
    return result


def sharing_findings(shared: list[SharedStorage]) -> list[Finding]:
    findings = []
    for s in shared:
        listed = ", ".join(s.keys)
        if s.kind is SharingKind.ALIAS:
            findings.append(
                finding(
                    Code.PICKLE_SHARED_STORAGE,
                    f"{s.file}: {listed} are one tensor (one storage in the pickle); "
                    "safetensors stores it once, so conversion must drop all but one name",
                    keys=s.keys,
                    file=s.file,
                )
            )
        else:
            how = "overlapping" if s.kind is SharingKind.OVERLAPPING else "disjoint"
            findings.append(
                finding(
                    Code.PICKLE_STORAGE_VIEWS,
                    f"{s.file}: {listed} are {how} views of one storage; safetensors "
                    "refuses shared memory, so conversion must copy each view",
                    keys=s.keys,
                    file=s.file,
                )
            )
    return findings
