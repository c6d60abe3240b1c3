"""The analyses run on a checkpoint described in memory with its bytes in memory
(``MemoryFiles``): no file is written, so each case states exactly the bytes it is about."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiecheck.analysis.compare import difference, identical_sets
from tiecheck.api import analyse
from tiecheck.model import (
    ByteSpan,
    Checkpoint,
    ConfigInfo,
    FileFormat,
    SourceKind,
    TensorInfo,
    WeightFile,
)
from tiecheck.readers.bytes import MemoryFiles
from tiecheck.readers.tensor_data import TensorData

EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def _checkpoint(arrays: dict[str, np.ndarray], config: dict | None) -> tuple[Checkpoint, bytes]:  # type: ignore[type-arg]
    """One 'file' holding the arrays back to back, described as a reader would."""
    blob, tensors, offset = b"", [], 0
    for name, array in arrays.items():
        raw = array.tobytes()
        dtype = {"float32": "F32", "float16": "F16"}[str(array.dtype)]
        span = ByteSpan(offset, offset + len(raw))
        tensors.append(TensorInfo(name, "w", dtype, array.shape, span, name))
        blob += raw
        offset += len(raw)
    files = {"w": WeightFile("w", Path("w"), FileFormat.SAFETENSORS, len(blob))}
    checkpoint = Checkpoint(
        source="memory",
        root=Path("memory"),
        kind=SourceKind.SAFETENSORS_FILE,
        files=files,
        tensors=tuple(tensors),
        config=None if config is None else ConfigInfo("config.json", Path("config.json"), config),
    )
    return checkpoint, blob


def _emb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((64, 16)).astype(np.float32)


def test_identical_and_different_tensors_in_memory() -> None:
    emb = _emb()
    head = emb.copy()
    head[3, 5] += 1e-3
    checkpoint, blob = _checkpoint({EMB: emb, "copy": emb.copy(), HEAD: head}, None)
    data = TensorData.of(checkpoint, MemoryFiles({"w": blob}))
    (same,) = identical_sets(checkpoint.tensors, data)
    assert {t.name for t in same} == {EMB, "copy"}
    diff = difference(checkpoint.tensors[0], checkpoint.tensors[2], data)
    assert diff is not None and diff.differing == 1
    assert abs((diff.max_abs_diff or 0) - 1e-3) < 1e-6
    assert data.bytes_read > 0


def test_the_whole_analysis_of_a_diverged_head_in_memory() -> None:
    emb = _emb(1)
    checkpoint, blob = _checkpoint(
        {EMB: emb, HEAD: emb * 2}, {"model_type": "qwen2", "tie_word_embeddings": True}
    )
    report = analyse(checkpoint, MemoryFiles({"w": blob}))
    assert report.verdict.value == "inconsistent"
    assert [f.code.value for f in report.findings] == ["TC102"]
    (group,) = report.tie_groups
    assert group.state.value == "distinct"


def test_a_short_file_in_memory_is_a_finding_not_a_crash() -> None:
    emb = _emb(2)
    checkpoint, blob = _checkpoint({EMB: emb, HEAD: emb.copy()}, {"model_type": "llama"})
    report = analyse(checkpoint, MemoryFiles({"w": blob[:-4]}))  # the head's last float gone
    assert any(f.code.value == "TC001" and "short read" in f.message for f in report.findings), (
        report.findings
    )
