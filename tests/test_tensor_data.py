"""Tensor data access stays bounded whatever a checkpoint claims: descriptors, holes, memory.

Every input is a real file: shards and pickles written by safetensors and ``torch.save``,
sparse safetensors files written byte by byte and extended with ``truncate`` (a header that
claims gigabytes the file does not store). Each test asserts the outcome and a generous bound:
descriptors open, bytes read, time, peak allocation.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import codes, findings_with, save_numpy, write_config, write_index
from hostile_helpers import open_descriptors, run_bounded
from tiecheck.analysis.compare import identical_sets
from tiecheck.readers.bytes import MAX_OPEN_FILES, LocalFiles
from tiecheck.readers.tensor_data import TensorData

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts descriptors in /proc/self/fd"
)

GIB = 1 << 30
MIB = 1 << 20


# -- descriptors ------------------------------------------------------------------------------


def shards(folder: Path, n: int, *, same: bool = False) -> dict[str, np.ndarray]:
    """``n`` one-tensor shards behind an index; ``same``: every tensor holds equal values."""
    arrays = {}
    weight_map = {}
    for i in range(n):
        name, shard = f"w.{i}.weight", f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        arrays[name] = np.full((16, 8), 0.5 if same else i, dtype=np.float32)
        save_numpy(folder / shard, {name: arrays[name]})
        weight_map[name] = shard
    write_index(folder, weight_map, n * 16 * 8 * 4)
    return arrays


def test_open_descriptors_stay_under_the_cap_however_many_files(tmp_path: Path) -> None:
    arrays = shards(tmp_path, 300)
    checkpoint = tiecheck.inspect(tmp_path, no_data=True).checkpoint
    before = open_descriptors()
    with TensorData.reading(checkpoint) as data:
        for t in checkpoint.tensors:
            assert b"".join(data.chunks(t)) == arrays[t.name].tobytes()
            assert data.source.open_files <= MAX_OPEN_FILES
            assert open_descriptors() - before <= MAX_OPEN_FILES
        for t in reversed(checkpoint.tensors):  # every one evicted once: read again, reopened
            assert b"".join(data.blocks(t, bytearray(100))) == arrays[t.name].tobytes()
    assert open_descriptors() == before


def test_a_pinned_descriptor_outlives_any_number_of_evictions(tmp_path: Path) -> None:
    arrays = shards(tmp_path, 40)
    checkpoint = tiecheck.inspect(tmp_path, no_data=True).checkpoint
    first, *others = checkpoint.tensors
    assert first.span is not None
    with TensorData.reading(checkpoint, max_open=4) as data:
        with data.source.opened(first.file) as fd:
            for t in others:
                assert b"".join(data.chunks(t)) == arrays[t.name].tobytes()
                assert data.source.open_files <= 4
            # still the first shard's descriptor, not closed (EBADF) nor reused by another
            assert os.pread(fd, first.span.length, first.span.start) == arrays[first.name].tobytes()
        # two region streams read in step while other files come and go
        a, b = (data.regions(t, bytearray(128)) for t in others[:2])
        got: dict[str, bytes] = {others[0].name: b"", others[1].name: b""}
        for (_, x), (_, y) in zip(a, b):
            for t in others[2:]:
                list(data.chunks(t))
            got[others[0].name] += bytes(x or b"")
            got[others[1].name] += bytes(y or b"")
        assert got == {t.name: arrays[t.name].tobytes() for t in others[:2]}


class Truncating:
    """A progress display that truncates every shard to its header once reading has begun:
    a checkpoint changing under the inspection, a read that fails half-way (TC001)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def start(self, total_bytes: int, description: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        for shard in self.folder.glob("*.safetensors"):
            with shard.open("r+b") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                f.truncate(8 + length)

    def stop(self) -> None:
        pass


def test_failing_inspections_leak_no_descriptor(tmp_path: Path) -> None:
    before = open_descriptors()
    for round_ in range(12):
        folder = tmp_path / str(round_)
        shards(folder, 80, same=True)
        report = tiecheck.inspect(folder, progress=Truncating(folder))
        (failure,) = findings_with(report, "TC001")
        assert "short read" in failure.message  # not zeros read past the end of the file
        assert open_descriptors() == before
    # a reader its caller forgot to close releases its descriptors when collected
    files = LocalFiles.of(report.checkpoint)
    for t in report.checkpoint.tensors:
        files.fileno(t.file)
    assert open_descriptors() == before + min(80, MAX_OPEN_FILES)
    files.close()
    assert open_descriptors() == before
    files.fileno(report.checkpoint.tensors[0].file)  # used again after close: reopened...
    del files
    gc.collect()
    assert open_descriptors() == before  # ...and still closed when collected


# -- sparse files -----------------------------------------------------------------------------


def sparse_safetensors(
    path: Path,
    tensors: dict[str, tuple[str, list[int]]],
    writes: dict[str, list[tuple[int, bytes]]] | None = None,
) -> Path:
    """A safetensors file whose data is a hole (``truncate``) except ``writes``: per tensor,
    ``(offset inside the tensor, bytes)`` written at that place."""
    header: dict[str, object] = {}
    offsets = {}
    end = 0
    for name, (dtype, shape) in tensors.items():
        size = int(np.prod(shape)) * {"U8": 1, "F32": 4}[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [end, end + size]}
        offsets[name] = end
        end += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + end)
        for name, places in (writes or {}).items():
            for offset, data in places:
                f.seek(8 + len(raw) + offsets[name] + offset)
                f.write(data)
    return path


def stored_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


def require_sparse(path: Path, most: int) -> None:
    if stored_bytes(path) > most:
        pytest.skip(f"{path.parent} does not keep files sparse ({stored_bytes(path):,} bytes)")


def test_two_sparse_8_gib_zero_tensors_are_compared_in_seconds(tmp_path: Path) -> None:
    # The bug: every claimed byte was read (16 GiB of zeros from a 4 KiB file), for minutes.
    path = sparse_safetensors(
        tmp_path / "model.safetensors", {"a": ("U8", [8 * GIB]), "b": ("U8", [8 * GIB])}
    )
    require_sparse(path, MIB)
    run = run_bounded("inspect", path, "--json", "-q", workdir=tmp_path / "run", timeout=120)
    assert run.code == 0, run.stderr
    doc = run.report()
    assert doc["data_compared"] is True
    assert [d["keys"] for d in doc["duplicates"]] == [["a", "b"]]
    # equal, and constant (zeros): equal by construction, not reported as stored twice (TC114)
    assert "TC114" not in {f["code"] for f in doc["findings"]}
    assert doc["bytes_read"] < MIB
    assert run.seconds < 10
    if run.peak_rss_mb is not None:
        assert run.peak_rss_mb < 200


@pytest.mark.parametrize("count", [2, 4])
def test_a_hole_compares_equal_to_written_zeros(tmp_path: Path, count: int) -> None:
    """Two candidates are compared pairwise; more are digested, and a hole must digest like
    zeros that were written (and a single stored byte must still tell one apart)."""
    size = 4 * MIB
    names = ["hole", "written", "half", "one-byte"][:count]
    writes = {
        "written": [(0, bytes(size))],
        "half": [(size // 4, bytes(size // 2))],
        # outside the sampled start, middle and end, so only a full read can tell
        "one-byte": [(size // 4 + 12345, b"\x01")],
    }
    path = sparse_safetensors(
        tmp_path / "model.safetensors",
        {n: ("U8", [size]) for n in names},
        {n: w for n, w in writes.items() if n in names},
    )
    assert stored_bytes(path) >= size  # the written zeros are really stored
    report = tiecheck.inspect(path)
    assert report.duplicates is not None
    assert [d.keys for d in report.duplicates] == [tuple(n for n in names if n != "one-byte")]
    assert report.bytes_read <= 2 * size  # the stored zeros at most twice, no hole read


def test_one_byte_of_difference_inside_a_huge_sparse_tensor(tmp_path: Path) -> None:
    numel = 2 * GIB  # F32: 8 GiB each
    index = 3 * numel // 4  # away from the sampled start, middle and end
    tensors = {
        name: ("F32", [numel]) for name in ("model.embed_tokens.weight", "lm_head.weight", "x")
    }
    path = sparse_safetensors(
        tmp_path / "model.safetensors",
        tensors,
        {"lm_head.weight": [(4 * index, np.float32(1.5).tobytes())]},
    )
    require_sparse(path, MIB)
    write_config(tmp_path, model_type="llama", tie_word_embeddings=True)
    started = time.monotonic()
    report = tiecheck.inspect(tmp_path)
    elapsed = time.monotonic() - started
    (group,) = report.tie_groups
    head = group.members[-1]
    assert head.relation.value == "distinct"
    assert head.difference is not None
    assert head.difference.differing == 1
    assert head.difference.max_abs_diff == 1.5
    assert "TC102" in codes(report)
    # three candidates of one shape: digested, the hole-only two found identical
    assert report.duplicates is not None
    assert [d.keys for d in report.duplicates] == [("model.embed_tokens.weight", "x")]
    assert report.bytes_read < MIB
    assert elapsed < 10


def test_alternating_data_and_holes_cost_the_stored_bytes(tmp_path: Path) -> None:
    """4 KiB of data every 256 KiB: reading follows the extents, not the claimed size."""
    size, step, extent = 64 * MIB, 256 * 1024, 4096
    rng = np.random.default_rng(0)
    pattern = [(off, rng.bytes(extent)) for off in range(0, size, step)]
    changed = [*pattern[:-7], (pattern[-7][0], b"\xff" + pattern[-7][1][1:]), *pattern[-6:]]
    path = sparse_safetensors(
        tmp_path / "model.safetensors",
        {n: ("U8", [size]) for n in ("a", "b", "c")},
        {"a": pattern, "b": pattern, "c": changed},
    )
    stored = stored_bytes(path)
    require_sparse(path, 3 * (size // step) * 4 * extent)
    report = tiecheck.inspect(path)
    assert report.duplicates is not None
    assert [d.keys for d in report.duplicates] == [("a", "b")]
    # each extent read once per tensor, plus at most two ALIGN blocks rounding each hole
    assert report.bytes_read <= 3 * stored + 3 * (size // step) * 2 * 4096
    assert report.bytes_read < 3 * size // 8


def test_a_file_truncated_under_a_hole_is_a_short_read_not_zeros(tmp_path: Path) -> None:
    path = sparse_safetensors(
        tmp_path / "model.safetensors", {"a": ("U8", [64 * MIB]), "b": ("U8", [64 * MIB])}
    )
    checkpoint = tiecheck.inspect(path, no_data=True).checkpoint
    os.truncate(path, path.stat().st_size - 32 * MIB)  # b now ends past the end of the file
    with TensorData.reading(checkpoint) as data:
        with pytest.raises(OSError, match="short read"):
            list(data.regions(checkpoint.tensors[1], bytearray(MIB)))
        with pytest.raises(OSError, match="short read"):
            identical_sets(checkpoint.tensors, data)


# -- pickled views ----------------------------------------------------------------------------


def test_a_transposed_view_with_huge_rows_is_gathered_in_bounded_memory(tmp_path: Path) -> None:
    """A (2, 2**23) view with stride (1, 2): each row is 32 MiB, gathered in bounded pieces."""
    torch = pytest.importorskip("torch")
    numel = 1 << 23
    state = {"a": torch.zeros(numel, 2).t(), "b": torch.zeros(numel, 2).t()}
    # one element differs, a quarter into the second row: away from the sampled start, middle
    # and end, so the first row (32 MiB) of each is streamed in full before it is found
    state["a"][1, numel // 4] = 1.0
    path = tmp_path / "model.bin"
    torch.save(state, path)
    checkpoint = tiecheck.inspect(path, no_data=True).checkpoint
    assert all(t.span is None for t in checkpoint.tensors)  # really the strided path
    tracemalloc.start()
    try:
        with TensorData.reading(checkpoint) as data:
            assert identical_sets(checkpoint.tensors, data) == []
            assert data.bytes_read >= 2 * numel * 4
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB  # a row is 32 MiB


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _p_str(s: str) -> bytes:
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def _p_int(i: int) -> bytes:
    raw = i.to_bytes(8, "little", signed=True)
    return b"\x8a\x08" + raw  # LONG1, as pickle writes an int past 32 bits


def _p_call(module: str, name: str, *args: bytes) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode() + b"(" + b"".join(args) + b"tR"


def sparse_legacy_views(
    path: Path,
    numel: int,
    shape: tuple[int, ...],
    stride: tuple[int, ...],
    stored: dict[int, float] | None = None,
) -> Path:
    """A pre-1.6 ``torch.save`` file, assembled from pickle opcodes: views ``a`` and ``b`` of
    two float storages of ``numel`` elements each, whose bytes are a hole of the file except
    ``stored``: elements of ``b``'s storage, by index."""
    items = b""
    for name, key in (("a", "0"), ("b", "1")):
        storage = b"(" + _p_str("storage") + b"ctorch\nFloatStorage\n" + _p_str(key)
        storage += _p_str("cpu") + _p_int(numel) + b"NtQ"
        view = _p_call(
            "torch._utils",
            "_rebuild_tensor_v2",
            storage,
            _p_int(0),
            b"(" + b"".join(map(_p_int, shape)) + b"t",
            b"(" + b"".join(map(_p_int, stride)) + b"t",
            b"\x89",
            b"ccollections\nOrderedDict\n)R",
        )
        items += _p_str(name) + view
    main = b"\x80\x02ccollections\nOrderedDict\n)R(" + items + b"u."
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    with path.open("wb") as f:
        for value in (LEGACY_MAGIC, 1001, sys_info):
            f.write(pickle.dumps(value, protocol=2))
        f.write(main + pickle.dumps(["0", "1"], protocol=2))
        for _ in range(2):
            f.write(struct.pack("<q", numel))
            f.seek(4 * numel, os.SEEK_CUR)
        f.truncate()
        for index, value in (stored or {}).items():
            f.seek(-4 * (numel - index), os.SEEK_END)
            f.write(struct.pack("<f", value))
    return path


def test_transposed_views_of_unstored_storages_are_zeros_without_reading(tmp_path: Path) -> None:
    """Two (2, 2**30) transposed views of 8 GiB storages that are holes: gathering them
    through a map paged in 16 GiB of zeros, for minutes."""
    numel = 1 << 31
    path = sparse_legacy_views(tmp_path / "model.bin", numel, (2, numel // 2), (1, 2))
    require_sparse(path, MIB)
    started = time.monotonic()
    report = tiecheck.inspect(path)
    elapsed = time.monotonic() - started
    assert all(t.span is None for t in report.checkpoint.tensors)  # the strided path
    assert report.duplicates is not None
    assert [d.keys for d in report.duplicates] == [("a", "b")]
    assert report.bytes_read < MIB  # the samples
    assert elapsed < 10


def test_a_strided_view_with_one_stored_value_in_a_hole_is_not_taken_for_zeros(
    tmp_path: Path,
) -> None:
    numel = 1 << 24  # 64 MiB storages
    index = numel // 2 + numel // 8 + 1  # odd: row 1 of the view, far from the samples
    path = sparse_legacy_views(tmp_path / "model.bin", numel, (2, numel // 2), (1, 2), {index: 2.5})
    require_sparse(path, MIB)
    report = tiecheck.inspect(path)
    assert report.duplicates == []
    # b is gathered (its first row at least) up to the stored value; a, all hole, is not read
    assert 4 * numel // 2 <= report.bytes_read < 4 * numel


@pytest.mark.slow
def test_overlapping_views_cannot_make_a_comparison_read_terabytes(tmp_path: Path) -> None:
    """20,000 views of one 4 MiB storage, each claiming ~4 MiB (80 GB in all): a budget of a
    few times the file's size stops the comparison with a finding instead of reading it all."""
    torch = pytest.importorskip("torch")
    base = torch.zeros(1 << 20)
    length = (1 << 20) - 20_000
    torch.save({f"v{i}": base[i : i + length] for i in range(20_000)}, tmp_path / "model.bin")
    run = run_bounded(
        "inspect", tmp_path / "model.bin", "--json", "-q", workdir=tmp_path / "run", timeout=120
    )
    assert run.code in (1, 2), run.stderr
    assert "internal error" not in run.stderr
    doc = run.report()
    (failure,) = [f for f in doc["findings"] if f["code"] == "TC001"]
    assert "overlap" in failure["message"]
    assert doc["bytes_read"] < 2 * GIB
    assert run.seconds < 30
