"""Hostile input against the readers: views past their storage, nesting, numbers no message can
print, names the file system refuses, work that grows faster than the file, oversized JSON and
files without tensors.

Each test builds its hostile file itself: byte by byte with the corpus generator's opcode
helpers (``tests/corpus/generate.py``), or with ``torch.save`` where a real producer writes
it. Where the bug was the death of the process (SIGSEGV) or a hang, the real command line runs
in a child process and the test asserts its exit code, its one finding or one-line error, and a
generous time bound; elsewhere the reader runs in process.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import json
import os
import signal
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tiecheck
from core_helpers import Run, run_cli, serious
from tiecheck.errors import FormatError
from tiecheck.model import DTYPE_BITS
from tiecheck.readers.index_format import read_index
from tiecheck.readers.jsonfile import MAX_CONFIG_BYTES, MAX_INDEX_BYTES, read_json_file
from tiecheck.readers.pickle_format import MAX_NESTING, read_pickle
from tiecheck.readers.safetensors_format import read_header
from tiecheck.readers.tensor_data import TensorData


def _generator() -> ModuleType:
    path = Path(__file__).resolve().parent / "corpus" / "generate.py"
    spec = importlib.util.spec_from_file_location("corpus_generate_hostile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
HOSTILE_SECONDS = 20.0
"""Bound for a hostile case through the command line (each bug took minutes, forever, or
killed the process); the command itself starts in about half a second."""


def inspect_cli(path: Path, fmt: str = "json") -> Run:
    """``tiecheck inspect PATH`` in a child: no crash, no traceback, in time."""
    started = time.monotonic()
    run = run_cli("inspect", path, "--format", fmt, "-q")
    elapsed = time.monotonic() - started
    assert run.code in (0, 1, 2), f"killed by signal {-run.code}: {run.stderr[-500:]}"
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert elapsed < HOSTILE_SECONDS, f"took {elapsed:.1f} s"
    return run


def errors_of(run: Run) -> list[dict[str, Any]]:
    return [f for f in run.report()["findings"] if f["severity"] == "error"]


def only_error(run: Run, code: str = "TC001") -> str:
    """The message of the run's one error finding, which must have ``code``."""
    (error,) = errors_of(run)
    assert error["code"] == code, error
    return str(error["message"])


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def zip_file(tmp_path: Path, pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    return write(tmp_path / "pytorch_model.bin", GEN.zip_state(pkl, storages))


def state(*items: tuple[str, bytes]) -> bytes:
    return GEN.p_state_dict(*items)


def f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


@pytest.fixture
def traced() -> Iterator[None]:
    """Trace Python's allocations during the test, for ``traced_peak``."""
    tracemalloc.start()
    yield
    tracemalloc.stop()


def traced_peak() -> int:
    return tracemalloc.get_traced_memory()[1]


# -- 1. views past their storage ------------------------------------------------------------------
# numpy reads a strided view through ``as_strided`` over a map of the storage's bytes: one
# element past the map is a read of unmapped memory, a SIGSEGV that kills the process.

BIG = GEN.BIG


def legacy_pair(head_storage: bytes, shape: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    return GEN.legacy_head_on(head_storage, shape, stride)


def zip_pair(shape: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> bytes:
    embed = GEN.p_rebuild(GEN.p_storage("0", 1, legacy=False), (BIG, BIG), (0, 0))
    head = GEN.p_rebuild(GEN.p_storage("1", 4, legacy=False), shape, stride, offset)
    pkl = state(("model.embed_tokens.weight", embed), ("lm_head.weight", head))
    return GEN.zip_state(pkl, {"0": f32(1.0), "1": f32(1, 2, 3, 4)})


VIEWS_PAST_STORAGE = {
    # legacy storage views (key, element offset, size) over root '1' of 4 floats
    "legacy-view-size-strided": (
        lambda: legacy_pair(GEN.p_legacy_view("1", 4, "v", 0, BIG * BIG), (BIG, BIG), (1, BIG)),
        "storage view 'v' (elements 0 to 16777216) reaches past its storage '1' of 4 elements",
    ),
    "legacy-view-size-contiguous": (
        lambda: legacy_pair(GEN.p_legacy_view("1", 4, "v", 0, BIG * BIG), (BIG, BIG), (BIG, 1)),
        "storage view 'v' (elements 0 to 16777216) reaches past its storage '1' of 4 elements",
    ),
    "legacy-view-offset": (
        lambda: legacy_pair(GEN.p_legacy_view("1", 4, "v", 1 << 24, 4), (2, 2), (1, 2)),
        "storage view 'v' (elements 16777216 to 16777220) reaches past its storage '1' of 4 "
        "elements",
    ),
    "legacy-tensor-past-its-view": (
        lambda: legacy_pair(GEN.p_legacy_view("1", 4, "v", 1, 3), (2, 2), (1, 2)),
        "tensor 'lm_head.weight' reaches element 4 of a storage of 12 bytes",
    ),
    "legacy-stride": (
        lambda: legacy_pair(GEN.p_storage("1", 4, legacy=True), (BIG, BIG), (1, BIG)),
        "tensor 'lm_head.weight' reaches element 16777216 of a storage of 16 bytes",
    ),
    "zip-stride": (
        lambda: zip_pair((BIG, BIG), (1, BIG)),
        "tensor 'lm_head.weight' reaches element 16777216 of a storage of 16 bytes",
    ),
    "zip-size": (
        lambda: zip_pair((2, 4), (4, 1)),
        "tensor 'lm_head.weight' reaches element 8 of a storage of 16 bytes",
    ),
    "zip-offset": (
        lambda: zip_pair((2, 2), (1, 2), offset=1 << 30),
        "tensor 'lm_head.weight' reaches element 1073741828 of a storage of 16 bytes",
    ),
}


@pytest.mark.parametrize("case", list(VIEWS_PAST_STORAGE))
def test_view_past_its_storage_is_tc001_naming_it(tmp_path: Path, case: str) -> None:
    build, message = VIEWS_PAST_STORAGE[case]
    path = write(tmp_path / "pytorch_model.bin", build())
    run = inspect_cli(path)
    assert run.code == 1
    assert only_error(run) == f"pytorch_model.bin: {message}"


def _untyped_storage(key: str, nbytes: int) -> bytes:
    return GEN.p_storage(key, nbytes, legacy=False, kind="UntypedStorage")


def _rebuild_v3(storage: bytes, shape: tuple, stride: tuple, dtype: str) -> bytes:
    return GEN.p_call(
        "torch._utils",
        "_rebuild_tensor_v3",
        storage,
        GEN.p_int(0),
        GEN.p_tuple(*map(GEN.p_int, shape)),
        GEN.p_tuple(*map(GEN.p_int, stride)),
        b"\x89",
        GEN.EMPTY_ORDERED_DICT,
        GEN.p_global("torch", dtype),
    )


def test_storage_span_is_cut_to_whole_elements(tmp_path: Path) -> None:
    """An 11-byte untyped storage under float32 views: 2 whole elements and 3 stray bytes.
    The storage span handed to the readers of data holds the whole elements only, so the
    strided (expanded) head reads as numpy sees it, and equals the embedding."""
    embed = _rebuild_v3(_untyped_storage("0", 16), (2, 2), (2, 1), "float32")
    head = _rebuild_v3(_untyped_storage("1", 11), (2, 2), (0, 1), "float32")
    pkl = state(("model.embed_tokens.weight", embed), ("lm_head.weight", head))
    path = zip_file(tmp_path, pkl, {"0": f32(1, 2, 1, 2), "1": f32(1, 2) + b"xyz"})
    entries = {e.name: e for e in read_pickle(path).entries}
    head_ref = entries["lm_head.weight"].storage
    assert head_ref.span is not None and head_ref.span.length == 8  # not 11
    report = tiecheck.inspect(path)
    assert "TC001" not in serious(report)
    tensors = {t.name: t for t in report.checkpoint.tensors}
    with TensorData.reading(report.checkpoint) as data:
        assert b"".join(data.chunks(tensors["lm_head.weight"])) == f32(1, 2, 1, 2)
    (group,) = report.tie_groups
    assert group.state.value == "duplicate"


def test_every_storage_span_lies_inside_its_storage(tmp_path: Path) -> None:
    """Real files (torch.save: slices, a transpose, an expand, an fp8 tensor on an untyped
    storage, zip and legacy): the span of every tensor's storage is inside the record that
    holds it, a whole number of elements, and the view fits in it."""
    torch = pytest.importorskip("torch")
    from tiecheck.readers.pickle_format import check_view

    base = torch.arange(48, dtype=torch.float32).reshape(8, 6)
    sd = {
        "a": base,
        "slice": base[2:5],
        "column": base[:, 1],
        "t": base.t(),
        "expand": torch.ones(1, 6).expand(4, 6),
        "fp8": torch.ones(3, 5).to(torch.float8_e4m3fn),
        "half": torch.ones(7, dtype=torch.float16),
    }
    for legacy in (False, True):
        path = tmp_path / f"m-{legacy}.bin"
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        size = path.stat().st_size
        for e in read_pickle(path).entries:
            span, itemsize = e.storage.span, DTYPE_BITS[e.dtype] // 8
            assert span is not None and 0 < span.start <= span.end <= size, e.name
            assert span.length % itemsize == 0 and span.length <= e.storage.nbytes, e.name
            check_view(e.name, itemsize, e.storage.offset, e.shape, e.storage.stride, span.length)
            if e.span is not None:  # contiguous: inside the storage too
                assert span.start <= e.span.start <= e.span.end <= span.end, e.name


def test_legacy_view_inside_its_storage_is_read(tmp_path: Path) -> None:
    """The valid control: a legacy view of elements 1..3 of a 4-float storage."""
    view = GEN.p_legacy_view("1", 4, "v", 1, 3)
    path = write(tmp_path / "m.bin", legacy_pair(view, (3,), (1,)))
    entries = {e.name: e for e in read_pickle(path).entries}
    head = entries["lm_head.weight"]
    assert head.span is not None
    with path.open("rb") as f:
        f.seek(head.span.start)
        assert f.read(head.span.length) == f32(2, 3, 4)


@pytest.mark.parametrize(
    ("views", "message"),
    [
        ((("1", 0, 2),), "storage key '1' names both a storage and a view"),
        ((("v", 0, 2), ("v", 1, 2)), "storage view 'v' is defined twice, differently"),
        ((("v", -1, 2),), "storage view 'v' offset -1 is not a non-negative integer"),
    ],
    ids=["key-of-a-storage", "defined-twice", "negative-offset"],
)
def test_legacy_view_records_that_contradict_themselves(
    tmp_path: Path, views: tuple[tuple[str, int, int], ...], message: str
) -> None:
    items = [
        (f"t{i}", GEN.p_rebuild(GEN.p_legacy_view("1", 4, key, offset, size), (2,), (1,)))
        for i, (key, offset, size) in enumerate(views)
    ]
    pkl = state(*items)
    path = write(tmp_path / "m.bin", GEN.legacy_state(pkl, ["1"], [f32(1, 2, 3, 4)]))
    with pytest.raises(FormatError) as info:
        read_pickle(path)
    assert str(info.value) == message


def test_tensor_dtype_must_be_its_storage_dtype(tmp_path: Path) -> None:
    """float64 over a FloatStorage: torch.save refuses to write two dtypes over one storage."""
    tensor = _rebuild_v3(GEN.p_storage("0", 3, legacy=False), (1,), (1,), "float64")
    path = zip_file(tmp_path, state(("w", tensor)), {"0": f32(1, 2, 3)})
    with pytest.raises(FormatError, match="a F64 tensor on storage '0', which holds F32"):
        read_pickle(path)


# -- 2. nesting -----------------------------------------------------------------------------------
# Hashing a tuple recurses in C without a depth check: a tuple ~150,000 deep used as a dict key
# or set member overflows the C stack.

DEPTH = 200_000
DEEP_PICKLES = {
    "tuple-as-dict-key": b"\x80\x02}" + b")" + b"\x85" * DEPTH + b"Ns.",
    "tuple-in-a-set": b"\x80\x04\x8f(" + b")" + b"\x85" * DEPTH + b"\x90.",
    "tuple-in-a-frozenset": b"\x80\x04(" + b")" + b"\x85" * DEPTH + b"\x91.",
    "frozensets": b"\x80\x04" + b"(" * DEPTH + b")" + b"\x91" * DEPTH + b".",
    "lists-as-a-value": b"\x80\x02}" + GEN.p_str("a") + b"(" * DEPTH + b"l" * DEPTH + b"s.",
    "dicts-as-a-value": b"\x80\x02" + (b"}" + GEN.p_str("a")) * DEPTH + b"}" + b"s" * DEPTH + b".",
    "tuple-as-an-ordered-dict-key": b"\x80\x02"
    + GEN.p_global("collections", "OrderedDict")
    + b"(("
    + b")"
    + b"\x85" * DEPTH
    + b"N\x86ltR.",
}


@pytest.mark.parametrize("case", list(DEEP_PICKLES))
def test_deeply_nested_pickle_is_tc001_not_a_crash(tmp_path: Path, case: str) -> None:
    path = zip_file(tmp_path, DEEP_PICKLES[case])
    run = inspect_cli(path)
    assert run.code == 1
    message = only_error(run)
    assert message == (
        "pytorch_model.bin: pickle is nested too deeply: more than 1000 levels of containers"
    )


@pytest.mark.parametrize("container", ["list", "tuple", "dict"])
def test_nesting_limit_is_1000_levels(tmp_path: Path, container: str) -> None:
    def nested(levels: int) -> bytes:
        if container == "list":
            return b"(" * (levels - 1) + b"]" + b"l" * (levels - 1)
        if container == "tuple":
            return b")" + b"\x85" * (levels - 1)
        return (b"}" + GEN.p_str("k")) * (levels - 1) + b"}" + b"s" * (levels - 1)

    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (4,))
    for levels, readable in ((MAX_NESTING, True), (MAX_NESTING + 1, False)):
        # the state dict holding the value is one of the levels
        pkl = state(("w", tensor), ("deep", nested(levels - 1)))
        path = zip_file(tmp_path, pkl, {"0": f32(1, 2, 3, 4)})
        if readable:
            assert [e.name for e in read_pickle(path).entries] == ["w"]
        else:
            with pytest.raises(FormatError, match="nested too deeply"):
                read_pickle(path)


def test_lists_nested_after_they_were_placed_do_not_crash(tmp_path: Path) -> None:
    """A chain of 100,000 lists, each appended into the next only after that one was put in
    its own parent: nesting measured while building sees 2 levels at most. Nothing hashes
    lists, and nothing here walks them recursively, so the file reads without a crash."""
    n = 100_000
    build = b"".join(b"]" + GEN.p_put(i) + b"0" for i in range(n))
    # link from the outermost down: list i+1 goes into list i, after i is already in i-1
    link = b"".join(GEN.p_get(i) + GEN.p_get(i + 1) + b"a0" for i in range(n - 1))
    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (4,))
    pkl = (
        b"\x80\x02"
        + build
        + GEN.EMPTY_ORDERED_DICT
        + b"("
        + GEN.p_str("w")
        + tensor
        + GEN.p_str("chain")
        + GEN.p_get(0)
        + b"u"
        + link
        + b"."
    )
    path = zip_file(tmp_path, pkl, {"0": f32(1, 2, 3, 4)})
    run = inspect_cli(path)
    assert run.code == 0 and errors_of(run) == [] and run.report()["tensors"] == 1
    assert [e.name for e in read_pickle(path).entries] == ["w"]  # safe here: it did not crash


def _nested_json(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("depth", [64, 65])
@pytest.mark.parametrize("what", ["config.json", "adapter_config.json", "index", "header"])
def test_json_nested_past_64_levels_is_tc001(tmp_path: Path, what: str, depth: int) -> None:
    """Each document nests ``depth`` levels in all: 64 are read, 65 refused with a finding
    naming the file (``fix`` deep-copies configs; ``json.dumps`` and ``repr`` recurse)."""

    def deep(levels: int) -> str:  # an object nesting ``levels`` levels, itself included
        return '{"x": ' + _nested_json(levels - 1) + "}"

    if what in ("config.json", "adapter_config.json"):
        weights = "model.safetensors" if what == "config.json" else "adapter_model.safetensors"
        write(tmp_path / weights, GEN.VALID_ST)
        (tmp_path / what).write_text(deep(depth)[:-1] + ', "peft_type": "LORA"}')
        name = what
    elif what == "index":
        name = GEN.INDEX
        write(tmp_path / GEN.SHARD, GEN.VALID_ST)
        index = '{"metadata": ' + deep(depth - 1) + ', "weight_map": {"w": "' + GEN.SHARD + '"}}'
        (tmp_path / name).write_text(index)
    else:
        name = "model.safetensors"
        tensor = json.dumps(GEN.entry("F32", [4], 0, 16))
        header = '{"__metadata__": ' + deep(depth - 1) + ', "w": ' + tensor + "}"
        write(tmp_path / name, GEN.st_bytes(header, GEN.F32_4))
    report = tiecheck.inspect(tmp_path)
    refused = [f.message for f in report.findings if f.code == "TC001"]
    if depth == 65:
        assert refused == [f"{name}: JSON is nested too deeply (more than 64 levels)"]
    elif what == "header":  # read, then refused for what it says (as the loader refuses it)
        assert refused == [f"{name}: __metadata__ must map strings to strings"]
    else:
        assert refused == []


# -- 3. numbers, names and records that escaped as "internal error" ------------------------------


def test_encrypted_zip_record_is_tc001(tmp_path: Path) -> None:
    path = write(tmp_path / "pytorch_model.bin", GEN._flag_encrypted(GEN.VALID_ZIP))
    run = inspect_cli(path)
    assert run.code == 1
    assert only_error(run) == (
        "pytorch_model.bin: zip record 'archive/data.pkl' is encrypted, which torch never writes"
    )


@pytest.mark.parametrize(
    ("total", "shown"),
    [("9" * 401, "9.999e+400"), ("9" * 4299, "9.999e+4298"), ("1e400", "inf")],
    ids=["401-digits", "4299-digits", "float-overflow"],
)
@pytest.mark.parametrize("fmt", ["json", "sarif", "table"])
def test_absurd_total_size_is_tc007_in_every_format(
    tmp_path: Path, total: str, shown: str, fmt: str
) -> None:
    """A float cannot hold a 401-digit integer ('{:+,.0f}' raised OverflowError)."""
    write(tmp_path / GEN.SHARD, GEN.VALID_ST)
    (tmp_path / GEN.INDEX).write_text(
        '{"metadata": {"total_size": ' + total + '}, "weight_map": {"w": "' + GEN.SHARD + '"}}'
    )
    run = inspect_cli(tmp_path, fmt)
    assert run.code == 0  # TC007 is a warning
    if fmt == "json":
        (tc007,) = [f for f in run.report()["findings"] if f["code"] == "TC007"]
        assert tc007["message"] == (
            f"{GEN.INDEX} metadata.total_size is {shown} but the shards hold 16 bytes of tensor "
            f"data (difference -{shown})"
        )
    else:
        assert run.stdout.strip()


def _long4(value: int) -> bytes:
    return GEN.p_long(value)


HUGE = 1 << 20_000
"""A 6,021-digit integer: past Python's 4,300-digit limit for int-to-text."""


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("shape", "tensor 'w': its offset, shape or stride holds a number not below 2**63"),
        ("stride", "tensor 'w': its offset, shape or stride holds a number not below 2**63"),
        ("offset", "tensor 'w': its offset, shape or stride holds a number not below 2**63"),
        ("numel", "storage '0' size an integer of 20,001 bits is not below 2**63"),
    ],
)
def test_20000_bit_geometry_is_tc001_naming_the_tensor(
    tmp_path: Path, case: str, message: str
) -> None:
    path = write(tmp_path / "pytorch_model.bin", GEN.huge_geometry(case))
    run = inspect_cli(path)
    assert run.code == 1
    assert only_error(run).startswith(f"pytorch_model.bin: {message}")


HUGE_ELSEWHERE = {
    # each a number no message can print, where a message would print it
    "persistent-id-kind": (
        b"\x80\x02" + GEN.p_tuple(_long4(HUGE)) + b"Q.",
        "unsupported persistent record an integer of 20,001 bits (only storages allowed)",
    ),
    "storage-type": (
        b"\x80\x02"
        + GEN.p_tuple(GEN.p_str("storage"), _long4(HUGE), GEN.p_str("0"), GEN.p_str("c"), b"K\x01")
        + b"Q.",
        "storage type an integer of 20,001 bits is not a torch storage class",
    ),
    "tensor-dtype": (
        b"\x80\x02"
        + GEN.p_call(
            "torch._utils",
            "_rebuild_tensor_v3",
            GEN.p_storage("0", 4, legacy=False),
            GEN.p_int(0),
            GEN.p_tuple(GEN.p_int(4)),
            GEN.p_tuple(GEN.p_int(1)),
            b"\x89",
            GEN.EMPTY_ORDERED_DICT,
            _long4(HUGE),
        )
        + b".",
        "tensor dtype an integer of 20,001 bits is not a torch dtype",
    ),
    "shape-entry": (
        state(("w", GEN.p_rebuild(GEN.p_storage("0", 4, legacy=False), (b"N",), (1,)))),
        "tensor shape (None,) is not a tuple of non-negative integers",
    ),
    "memo-key": (
        b"\x80\x02g" + b"9" * 5000 + b"\n.",
        "malformed pickle: ValueError: Exceeds the limit (4300 digits)",
    ),
}


@pytest.mark.parametrize("case", list(HUGE_ELSEWHERE))
def test_hostile_values_are_never_printed_whole(tmp_path: Path, case: str) -> None:
    pkl, message = HUGE_ELSEWHERE[case]
    path = zip_file(tmp_path, pkl, {"0": f32(1, 2, 3, 4)})
    with pytest.raises(FormatError) as info:
        read_pickle(path)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 300


def test_legacy_protocol_of_20000_bits(tmp_path: Path) -> None:
    data = GEN.VALID_LEGACY.replace(b"M\xe9\x03", _long4(HUGE), 1)
    path = write(tmp_path / "old.bin", data)
    with pytest.raises(FormatError, match=r"^unsupported legacy protocol version an integer of"):
        read_pickle(path)


@pytest.mark.parametrize(
    ("shape", "stride", "readable"),
    [
        ((2**63 - 1, 0), (1, 1), True),  # no elements: any size below 2**63 is a size
        ((2**63, 0), (1, 1), False),
        ((1, 4), (2**60, 1), True),  # 2**62 bytes: still addressable
        ((1, 4), (2**61, 1), False),  # 2**63 bytes
        ((2**32, 2**31), (0, 0), False),  # 2**63 elements
    ],
    ids=["size-below", "size-at", "byte-stride-below", "byte-stride-at", "numel-at"],
)
def test_geometry_must_stay_below_2_pow_63(
    tmp_path: Path, shape: tuple[int, ...], stride: tuple[int, ...], readable: bool
) -> None:
    def enc(values: tuple[int, ...]) -> tuple[bytes, ...]:
        return tuple(_long4(v) for v in values)

    tensor = GEN.p_rebuild(GEN.p_storage("0", 4, legacy=False), enc(shape), enc(stride))
    path = zip_file(tmp_path, state(("w", tensor)), {"0": f32(1, 2, 3, 4)})
    if readable:
        (entry,) = read_pickle(path).entries
        assert entry.shape == shape
    else:
        with pytest.raises(FormatError, match=r"^tensor 'w': .*2\*\*63"):
            read_pickle(path)


@pytest.mark.parametrize(
    "shard",
    ["a" * 300 + ".safetensors", ("b" * 200 + "/") * 30 + "x.safetensors"],
    ids=["past-NAME_MAX", "past-PATH_MAX"],
)
def test_shard_name_too_long_for_the_file_system_is_tc001(tmp_path: Path, shard: str) -> None:
    (tmp_path / GEN.INDEX).write_text(GEN.index_json({"w": shard}))
    run = inspect_cli(tmp_path)
    assert run.code == 1
    assert only_error(run) == f"{shard}: cannot read: File name too long"


def test_source_path_too_long_is_a_one_line_error(tmp_path: Path) -> None:
    source = tmp_path / ("c" * 300)
    run = run_cli("inspect", source, "-q")
    assert run.code == 2
    assert run.stderr.strip() == f"tiecheck: error: {source}: File name too long"


@pytest.mark.parametrize(
    "base_model", ["a" * 5000, "~nosuchuser-tiecheck/model", "a\u0000b", "x/" + "b" * 300]
)
def test_adapter_base_model_that_cannot_be_a_path(tmp_path: Path, base_model: str) -> None:
    """The base model's name comes from the adapter's own file; when it cannot be a local
    path (too long, an unknown user's home, a NUL), the base config is simply not found."""
    write(tmp_path / "adapter_model.safetensors", GEN.VALID_ST)
    config = {"peft_type": "LORA", "base_model_name_or_path": base_model}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    run = inspect_cli(tmp_path)
    assert run.code == 0, run.stderr  # TC202 is a warning
    assert [f["code"] for f in run.report()["findings"]] == ["TC202"]


def test_base_path_too_long_is_not_found(tmp_path: Path) -> None:
    write(tmp_path / "adapter_model.safetensors", GEN.VALID_ST)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    run = run_cli("inspect", tmp_path, "--base", tmp_path / ("d" * 300), "--format", "json")
    assert run.code == 0, run.stderr
    assert [f["code"] for f in run.report()["findings"]] == ["TC202"]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ({"weight_map": {"k" * 1_000_000: 1}}, "weight_map['kkkk"),
        ({"metadata": {"total_size": "9" * 1_000_000}}, "metadata.total_size '9999"),
        ({"metadata": {"total_size": [0] * 100_000}}, "metadata.total_size (a JSON array of"),
    ],
    ids=["key", "string-size", "array-size"],
)
def test_index_messages_never_quote_a_value_whole(
    tmp_path: Path, index: dict[str, Any], message: str
) -> None:
    path = tmp_path / GEN.INDEX
    path.write_text(json.dumps({"weight_map": {}, **index}))
    with pytest.raises(FormatError) as info:
        read_index(path)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 300


def test_fix_refuses_deflated_storages_in_one_line(tmp_path: Path) -> None:
    """torch.load reads deflated storage records; fix cannot stream them and says so (it
    was an internal ValueError: the comparison failed first)."""
    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (2, 2))
    head = GEN.p_tensor(GEN.p_storage("1", 4, legacy=False), (2, 2))
    pkl = state(("model.embed_tokens.weight", tensor), ("lm_head.weight", head))
    records = {"data.pkl": pkl, "byteorder": b"little", "data/0": GEN.F32_4, "data/1": GEN.F32_4}
    deflated = {"data/0": 8, "data/1": 8}
    source = write(tmp_path / "src" / "pytorch_model.bin", GEN.torch_zip(records, deflated))
    out = tmp_path / "out"
    run = run_cli("fix", source, "--to", "tied", "-o", out)
    assert run.code == 2
    assert run.stderr.strip() == (
        "tiecheck: error: some tensors are stored compressed inside the zip; cannot stream"
    )
    assert not out.exists() or list(out.iterdir()) == []


# -- 4. work linear in the file -------------------------------------------------------------------
# Through the memo one value can be used any number of times: the walk for tensors, tuple
# hashing and the allowed constructors each get 16 x the pickle's size + 1 MiB.


def test_memo_dag_of_lists_is_walked_once(tmp_path: Path) -> None:
    """One tensor under lists 64 wide and 15 deep: 64**15 paths, one walk (was endless)."""
    path = tmp_path / "m.bin"
    GEN.CASES["valid/memo-dag-lists-64-wide-16-deep.bin"](path)
    assert path.stat().st_size < 10_000
    run = inspect_cli(path)
    assert run.code == 0 and run.report()["tensors"] == 1
    (entry,) = read_pickle(path).entries  # the first path to it names it
    assert entry.name == "model" + ".0" * 16


def test_memo_dag_tuple_as_a_key_is_refused_before_hashing(tmp_path: Path) -> None:
    """A tuple made of another twice, 60 deep: hashing it visits 2**60 elements (hung)."""
    path = zip_file(tmp_path, b"\x80\x02" + GEN.tuple_dag(60) + b"}" + GEN.p_get(60) + b"Ns.")
    run = inspect_cli(path)
    assert run.code == 1
    assert "would make its reader hash more than" in only_error(run)


def _copies(call: bytes, arg: bytes, times: int, tail: bytes = b"") -> bytes:
    one = call + b"(" + GEN.p_get(0) + tail + b"tR"
    return b"\x80\x02" + arg + GEN.p_put(0) + b"0](" + one * times + b"e."


INTS = b"(" + b"".join(b"J" + struct.pack("<i", i) for i in range(10_000)) + b"l"
PAIRS = b"(" + b"".join(b"J" + struct.pack("<i", i) + b"N\x86" for i in range(10_000)) + b"l"
COPIED = {
    # each would build ~300 MB from a file of ~100 KB without the budget
    "bytearray": _copies(GEN.p_global("builtins", "bytearray"), GEN.p_bytes(bytes(64 << 10)), 5000),
    "codecs.encode": _copies(
        GEN.p_global("_codecs", "encode"), GEN.p_str("a" * (64 << 10)), 5000, GEN.p_str("latin1")
    ),
    "set": _copies(GEN.p_global("builtins", "set"), INTS, 600),
    "frozenset": _copies(GEN.p_global("builtins", "frozenset"), INTS, 600),
    "torch.Size": _copies(GEN.p_global("torch", "Size"), INTS, 4000),
    "OrderedDict": _copies(GEN.p_global("collections", "OrderedDict"), PAIRS, 400),
}


@pytest.mark.parametrize("case", list(COPIED))
def test_copies_through_the_memo_are_budgeted(tmp_path: Path, case: str, traced: None) -> None:
    path = zip_file(tmp_path, COPIED[case])
    assert path.stat().st_size < 300_000
    with pytest.raises(FormatError, match="would make its reader build more than"):
        read_pickle(path)
    assert traced_peak() < 32 << 20


def test_a_shape_shared_by_many_tensors_is_budgeted(tmp_path: Path, traced: None) -> None:
    """Each tensor copies its shape: one memoised shape of 20,000 dimensions, 3,000 times."""
    storage = GEN.p_storage("0", 4, legacy=False) + GEN.p_put(1) + b"0"
    shape = b"(" + b"K\x01" * 20_000 + b"l" + GEN.p_put(2) + b"0"
    tensor = GEN.p_call(
        "torch._utils",
        "_rebuild_tensor_v2",
        GEN.p_get(1),
        GEN.p_int(0),
        GEN.p_get(2),
        GEN.p_get(2),
        b"\x89",
        GEN.EMPTY_ORDERED_DICT,
    )
    items = b"".join(GEN.p_str(f"t{i}") + tensor for i in range(3000))
    pkl = b"\x80\x02" + storage + shape + GEN.EMPTY_ORDERED_DICT + b"(" + items + b"u."
    path = zip_file(tmp_path, pkl, {"0": f32(1, 2, 3, 4)})
    with pytest.raises(FormatError, match="would make its reader build more than"):
        read_pickle(path)
    assert traced_peak() < 64 << 20


def test_long_names_are_budgeted(tmp_path: Path, traced: None) -> None:
    """Dicts 16 deep keyed by one memoised 64 KiB string: each of 300 names is 1 MiB."""
    key = GEN.p_str("k" * (64 << 10)) + GEN.p_put(0) + b"0"
    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (4,)) + GEN.p_put(1)
    others = b"".join(GEN.p_str(f"t{i}") + GEN.p_get(1) for i in range(1, 300))
    nested = b"}(" + GEN.p_str("t0") + tensor + others + b"u"
    for _ in range(15):
        nested = b"}" + GEN.p_get(0) + nested + b"s"
    path = zip_file(tmp_path, b"\x80\x02" + key + nested + b".", {"0": f32(1, 2, 3, 4)})
    with pytest.raises(FormatError, match="would make its reader walk more than"):
        read_pickle(path)
    assert traced_peak() < 64 << 20


def test_wrapper_prefix_is_stripped_in_linear_time(tmp_path: Path) -> None:
    """400,000 'module.' prefixes: stripping one at a time, checking every name, took minutes."""
    name = "module." * 400_000 + "w"
    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (4,))
    path = zip_file(tmp_path, state((name, tensor)), {"0": f32(1, 2, 3, 4)})
    started = time.monotonic()
    ckpt = read_pickle(path)
    assert time.monotonic() - started < 10
    assert ckpt.prefix == "module." * 400_000
    assert [e.name for e in ckpt.entries] == ["w"]


def test_real_checkpoints_stay_far_inside_the_budget(tmp_path: Path) -> None:
    """torch.save of a training checkpoint using every allowed constructor (sets, frozensets,
    torch.Size, bytearray, bytes, OrderedDict with _metadata, optimizer state) reads as is."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    obj = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "seen": {1, 2, 3},
        "frozen": frozenset({"a", (1, 2)}),
        "size": torch.Size([3, 4]),
        "blob": bytearray(b"x" * 1000),
        "raw": b"y" * 1000,
        "nested": {"a": [{"b": (1, [2, {"c": 3}])}]},
    }
    for legacy in (False, True):
        path = tmp_path / f"ckpt-{legacy}.pt"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        ckpt = read_pickle(path)
        assert ckpt.container == "model"
        assert sorted(e.name for e in ckpt.entries) == sorted(model.state_dict())


# -- 5. JSON sizes --------------------------------------------------------------------------------


def _sparse(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk (and cannot be parsed as JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize(
    ("name", "weights", "limit"),
    [
        ("config.json", "model.safetensors", MAX_CONFIG_BYTES),
        ("adapter_config.json", "adapter_model.safetensors", MAX_CONFIG_BYTES),
        (GEN.INDEX, GEN.SHARD, MAX_INDEX_BYTES),
    ],
)
def test_json_past_its_limit_is_tc001_without_being_read(
    tmp_path: Path, name: str, weights: str, limit: int, traced: None
) -> None:
    write(tmp_path / weights, GEN.VALID_ST)
    _sparse(tmp_path / name, limit + 1)
    report = tiecheck.inspect(tmp_path)
    messages = [f.message for f in report.findings if f.code == "TC001"]
    assert messages == [
        f"{name}: {limit + 1:,} bytes is too large for this JSON file (limit {limit:,})"
    ]
    assert traced_peak() < 8 << 20  # nothing of the file was read


def test_config_at_its_limit_is_read(tmp_path: Path) -> None:
    """The limit is the size of a config, not of any JSON: 16 MiB of real content parses."""
    write(tmp_path / "model.safetensors", GEN.VALID_ST)
    body = '{"model_type": "llama", "tie_word_embeddings": false, "pad": "'
    text = body + "x" * (MAX_CONFIG_BYTES - len(body) - 2) + '"}'
    assert len(text) == MAX_CONFIG_BYTES
    (tmp_path / "config.json").write_text(text)
    report = tiecheck.inspect(tmp_path)
    assert "TC001" not in serious(report)
    assert report.checkpoint.config is not None and report.checkpoint.config.model_type == "llama"


def test_json_size_is_that_of_the_opened_file(tmp_path: Path) -> None:
    """A FIFO is not opened for reading in a way that blocks, and is refused by what fstat
    says of it; so is a folder in a file's place."""
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)

    def blocked(_signum: int, _frame: object) -> None:
        raise TimeoutError("opening the FIFO blocked")

    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(10)
    try:
        with pytest.raises(FormatError, match="not a regular file"):
            read_json_file(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(FormatError, match="is a folder"):
        read_index(tmp_path / "folder.json")


# -- 6. files that hold no tensors ----------------------------------------------------------------


def test_files_without_tensors_are_read_cleanly(tmp_path: Path) -> None:
    """An empty state dict, plain values, an empty legacy file, an empty safetensors header:
    each reads as zero tensors, never an error (TC008 reports them, not a reader)."""
    torch = pytest.importorskip("torch")
    cases = {
        "empty.bin": collections.OrderedDict(),
        "values.pt": {"epoch": 3, "note": "no weights"},
        "legacy.bin": {},
    }
    for name, obj in cases.items():
        buffer = io.BytesIO()
        torch.save(obj, buffer, _use_new_zipfile_serialization=name != "legacy.bin")
        path = write(tmp_path / name, buffer.getvalue())
        assert read_pickle(path).entries == [], name
        assert serious(tiecheck.inspect(path)) == {"TC008"}, name
    empty = write(tmp_path / "empty.safetensors", GEN.st_bytes(b"{}"))
    assert read_header(empty).entries == []
    assert serious(tiecheck.inspect(empty)) == {"TC008"}
