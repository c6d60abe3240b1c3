"""Fuzz targets and input strategies shared by the property tests and the long fuzz run.

A *target* takes bytes, feeds them to one reader the way a checkpoint from a stranger would
reach it (a file on disk, then the whole ``tiecheck.inspect`` pipeline), and returns what
happened. Its contract: the reader returns a result or raises tiecheck's own ``FormatError``;
``inspect`` always returns a report (a broken file is a finding, not an exception). Anything
else escaping is a bug. ``tests/test_fuzz_properties.py`` runs each target a few hundred times
per test run; ``fuzz/run.py`` runs them for minutes and saves what fails to ``fuzz/crashes/``.

The strategies aim past the first check of each format: random bytes, random JSON with the
right key names, programs of pickle opcodes that use the allowed globals, and real files
(safetensors and ``torch.save`` output) with bytes edited, cut and re-zipped.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import tiecheck
from core_helpers import library_opens
from tiecheck.errors import FormatError
from tiecheck.readers.index_format import read_index
from tiecheck.readers.pickle_format import _ALLOWED, read_pickle
from tiecheck.readers.safetensors_format import header_length, parse_header, read_header

# ---------------------------------------------------------------------------------------------
# targets


def safetensors_target(data: bytes, scratch: Path) -> str:
    """The header parser from bytes, from a file, the library's verdict, then ``inspect``."""
    try:
        length = header_length(data[:8], len(data))
        parse_header(data[8 : 8 + length], len(data))
        from_bytes = True
    except FormatError:
        from_bytes = False
    path = scratch / "model.safetensors"
    path.write_bytes(data)
    try:
        read_header(path)
        ours = True
    except FormatError:
        ours = False
    assert ours == from_bytes, "parse_header and read_header disagree"
    theirs = library_opens(path)
    assert ours == theirs, f"tiecheck {'accepts' if ours else 'refuses'} what safe_open " + (
        "refuses" if ours else "opens"
    )
    report = tiecheck.inspect(path)
    assert (path.name in report.checkpoint.unreadable) == (not ours)
    return "valid" if ours else "invalid"


def pickle_target(data: bytes, scratch: Path) -> str:
    """The restricted unpickler (zip and legacy), then ``inspect`` of the same file."""
    path = scratch / "pytorch_model.bin"
    path.write_bytes(data)
    try:
        read_pickle(path)
        readable = True
    except FormatError:
        readable = False
    report = tiecheck.inspect(path)
    assert (path.name in report.checkpoint.unreadable) == (not readable)
    assert not list(scratch.glob("tiecheck-pwned*"))
    return "valid" if readable else "invalid"


SHARD = "model-00001-of-00002.safetensors"
_SHARD_BYTES = (
    struct.pack("<Q", 56)
    + b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    + struct.pack("<4f", 1, 2, 3, 4)
)


def index_target(data: bytes, scratch: Path) -> str:
    """The index reader, then ``inspect`` of the folder (index plus one real shard)."""
    folder = scratch / "model"
    folder.mkdir(exist_ok=True)
    (folder / SHARD).write_bytes(_SHARD_BYTES)
    index = folder / "model.safetensors.index.json"
    index.write_bytes(data)
    try:
        read_index(index)
        readable = True
    except FormatError:
        readable = False
    report = tiecheck.inspect(folder)
    if not readable:  # (a readable index naming an unsafe shard is reported against it too)
        assert index.name in report.checkpoint.unreadable
    return "valid" if readable else "invalid"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def checkpoint_target(data: bytes, scratch: Path) -> str:
    """A real tied model folder (two shards, index, config) with one file replaced by ``data``
    (its first byte picks which, and the direction of the fix): ``inspect`` must report, and
    ``fix`` must write a verified checkpoint or refuse with a TiecheckError, and never touch
    the source."""
    from tiecheck.analysis.ties import Verdict
    from tiecheck.errors import TiecheckError

    folder = scratch / "model"
    folder.mkdir()
    files = model_folder_files()
    names = sorted(files)
    selector, content = (data[0], data[1:]) if data else (0, b"")
    files = {**files, names[selector % len(names)]: content}
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    before = _tree(folder)
    tiecheck.inspect(folder)
    to = Verdict.TIED if selector & 0x80 == 0 else Verdict.UNTIED
    try:
        result = tiecheck.fix(folder, to=to, output=scratch / "out")
    except TiecheckError:
        outcome = "refused"
    else:
        outcome = "fixed" if result.after is not None else "unchanged"
        if result.after is not None:  # reached, or the re-inspection says why not (TC112)
            codes = {f.code for f in result.after.findings}
            assert result.after.verdict is to or "TC112" in codes, result.after.verdict
    assert _tree(folder) == before, "fix modified its source"
    out = scratch / "out"
    if out.is_dir():
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "leftovers"
    return outcome


_MODEL: dict[str, bytes] = {}


def model_folder_files() -> dict[str, bytes]:
    """A tiny tied Llama-style model, sharded in two, its head stored as a copy."""
    if not _MODEL:
        import numpy as np
        from safetensors.numpy import save

        g = np.random.default_rng(0)
        emb = g.standard_normal((16, 4)).astype(np.float32)
        first = {"model.embed_tokens.weight": emb, "model.norm.weight": np.ones(4, np.float32)}
        second = {"lm_head.weight": emb.copy(), "model.layers.0.mlp.weight": emb[:4].copy()}
        shards = {
            "model-00001-of-00002.safetensors": first,
            "model-00002-of-00002.safetensors": second,
        }
        weight_map = {}
        for name, tensors in shards.items():
            _MODEL[name] = save(tensors, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, name))
        total = sum(a.nbytes for t in shards.values() for a in t.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        _MODEL["model.safetensors.index.json"] = json.dumps(index).encode()
        config = {"model_type": "llama", "tie_word_embeddings": True}
        _MODEL["config.json"] = json.dumps(config).encode()
    return _MODEL


TARGETS: dict[str, Callable[[bytes, Path], str]] = {
    "safetensors": safetensors_target,
    "pickle": pickle_target,
    "index": index_target,
    "checkpoint": checkpoint_target,
}

# ---------------------------------------------------------------------------------------------
# strategies: safetensors

DTYPES = ["F32", "F16", "BF16", "U8", "I64", "BOOL", "F4", "F6_E2M3", "F8_E4M3", "C64", "F128"]
KEYS = ["dtype", "shape", "data_offsets", "__metadata__", "w", "a", "format"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(DTYPES),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4)), inner, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """Near-valid files: real entries with random edits, random JSON, or random bytes."""
    kind = draw(st.sampled_from(["entries", "json", "bytes", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        raw = json.dumps(draw(json_values)).encode()
        data = draw(st.binary(max_size=32))
    else:
        header: dict[str, Any] = {}
        position = 0
        for name in draw(st.lists(st.sampled_from("abcde"), max_size=4, unique=True)):
            dtype = draw(st.sampled_from(DTYPES))
            shape = draw(st.lists(st.integers(0, 5), max_size=3))
            size = draw(st.sampled_from([None, 0, 1, 4, 16]))
            if size is None:
                from tiecheck.model import DTYPE_BITS

                numel = 1
                for d in shape:
                    numel *= d
                size = numel * DTYPE_BITS.get(dtype, 8) // 8
            begin = draw(st.sampled_from([position, position, 0, position + 1, -1]))
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + size]}
            position = max(position, begin + size)
        if draw(st.booleans()):
            header["__metadata__"] = draw(
                st.one_of(
                    st.just({"format": "pt"}), st.dictionaries(st.text(max_size=3), json_values)
                )
            )
        raw = json.dumps(header).encode()
        data = bytes(max(0, position + draw(st.integers(-2, 2))))
    raw += b" " * draw(st.integers(0, 7))
    blob = bytearray(struct.pack("<Q", len(raw)) + raw + data)
    if kind == "mutated" or draw(st.integers(0, 9)) == 0:
        blob = mutate(draw, blob)
    return bytes(blob)


def mutate(draw: st.DrawFn, blob: bytearray, max_edits: int = 4) -> bytearray:
    """Random byte edits, insertions, deletions and a cut, at fractional positions."""
    for _ in range(draw(st.integers(1, max_edits))):
        if not blob:
            break
        at = int(draw(st.floats(0, 1, exclude_max=True)) * len(blob))
        op = draw(st.sampled_from(["set", "set", "insert", "delete", "cut", "u64"]))
        if op == "set":
            blob[at] = draw(st.integers(0, 255))
        elif op == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del blob[at : at + draw(st.integers(1, 8))]
        elif op == "cut":
            del blob[at:]
        else:  # a length or offset field overwritten with an extreme value
            value = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]))
            blob[at : at + 8] = struct.pack("<Q", value)[: len(blob) - at]
    return blob


# ---------------------------------------------------------------------------------------------
# strategies: pickles


def p_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


ALLOWED_GLOBALS = sorted(_ALLOWED)
OTHER_GLOBALS = [
    ("os", "system"),
    ("builtins", "getattr"),
    ("torch", "load"),
    ("copyreg", "_reconstructor"),
]
STRINGS = [
    "storage",
    "0",
    "1",
    "cpu",
    "w",
    "lm_head.weight",
    "dtype",
    "nbytes",
    "key",
    "state_dict",
]


@st.composite
def pickle_token(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        module, name = draw(st.sampled_from(ALLOWED_GLOBALS + OTHER_GLOBALS[:1]))
        return b"c" + f"{module}\n{name}\n".encode()
    if kind == 1:
        return p_str(draw(st.sampled_from(STRINGS)))
    if kind == 2:
        return b"J" + struct.pack("<i", draw(st.integers(-(2**31), 2**31 - 1)))
    if kind == 3:
        return b"K" + bytes([draw(st.integers(0, 255))])
    if kind == 4:
        value = draw(st.integers(-(2**70), 2**70))
        raw = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if kind == 5:  # opcodes that carry a size or an index: claims, not data
        claim = draw(st.sampled_from([0, 3, 2**16, 2**31 - 1, 2**32 - 1, 3 * 10**9, 2**62]))
        opcode = draw(st.sampled_from([b"\x8e", b"\x96", b"\x8d", b"\x95"]))  # 8-byte sizes
        if draw(st.booleans()):
            return b"r" + struct.pack("<I", min(claim, 2**32 - 1))  # LONG_BINPUT
        return opcode + struct.pack("<Q", claim) + draw(st.binary(max_size=4))
    # structure: containers, calls, persistent ids, BUILD, memo
    return draw(
        st.sampled_from(
            [
                b"(",
                b"(",
                b"t",
                b"\x85",
                b"\x86",
                b"\x87",
                b")",
                b"}",
                b"]",
                b"l",
                b"d",
                b"s",
                b"u",
                b"a",
                b"e",
                b"R",
                b"R",
                b"Q",
                b"b",
                b"N",
                b"\x88",
                b"\x89",
                b"0",
                b"2",
                b"\x94",
                b"q\x00",
                b"h\x00",
                b"q\x01",
                b"h\x01",
                b"\x8f",
            ]
        )
    )


def _storage_pid(key: str, numel: int, legacy: bool) -> bytes:
    fields = [
        p_str("storage"),
        b"ctorch\nFloatStorage\n",
        p_str(key),
        p_str("cpu"),
        _ints([numel])[1:-1],
    ]
    return b"(" + b"".join(fields) + (b"N" if legacy else b"") + b"tQ"


def _ints(values: list[int]) -> bytes:
    out = b"("
    for v in values:
        raw = v.to_bytes((v.bit_length() + 8) // 8 or 1, "little", signed=True)
        out += b"\x8a" + bytes([len(raw)]) + raw
    return out + b"t"


def _tensor(
    key: str,
    legacy: bool,
    numel: int = 4,
    geometry: tuple[int, list[int], list[int]] = (0, [4], [1]),
) -> bytes:
    offset, shape, stride = geometry
    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n("
        + _storage_pid(key, numel, legacy)
        + _ints([offset])[1:-1]
        + _ints(shape)
        + _ints(stride)
        + b"\x89ccollections\nOrderedDict\n)Rt"
        + b"R"
    )


SIZES = [0, 1, 2, 3, 4, 16, 2**20, 2**31, 2**62, -1]
geometries = st.tuples(
    st.sampled_from([0, 0, 1, 3, 2**40, -1]),
    st.lists(st.sampled_from(SIZES), max_size=3),
    st.lists(st.sampled_from(SIZES), max_size=3),
)


@st.composite
def pickle_programs(draw: st.DrawFn, legacy: bool) -> bytes:
    """A state dict prefix (so the reader gets past 'no tensors'), random opcodes, STOP."""
    body = b"\x80\x02}(" + p_str("w") + _tensor("0", legacy)
    if draw(st.booleans()):  # a second tensor, on the same storage or not, of any geometry
        numel = draw(st.sampled_from([1, 4, 16, 2**40]))
        key = draw(st.sampled_from(["0", "1"]))
        body += p_str("lm_head.weight") + _tensor(key, legacy, numel, draw(geometries))
    tokens = draw(st.lists(pickle_token(), max_size=24))
    body += b"".join(tokens)
    return body + draw(st.sampled_from([b"u.", b".", b"u", b""]))


def torch_zip(data_pkl: bytes, storages: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        records = {"data.pkl": data_pkl, "byteorder": b"little"}
        records.update({f"data/{k}": v for k, v in storages.items()})
        for name, content in records.items():
            info = zipfile.ZipInfo(f"archive/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            z.writestr(info, content)
    return buffer.getvalue()


def legacy_file(main: bytes, keys: list[str], storages: list[bytes]) -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, sys_info))
    tail = pickle.dumps(keys, protocol=2)
    for raw in storages:
        tail += struct.pack("<q", len(raw) // 4) + raw
    return head + main + tail


_TORCH_BASES: list[bytes] = []


def torch_bases() -> list[bytes]:
    """Real ``torch.save`` output: a tied zip checkpoint, a legacy one, a nested container."""
    if not _TORCH_BASES:
        try:
            import torch
        except ImportError:  # hand-built equivalents (tiecheck never needs torch)
            state = b"\x80\x02}(" + p_str("w") + _tensor("0", False) + b"u."
            _TORCH_BASES.append(torch_zip(state, {"0": bytes(16)}))
            legacy = b"\x80\x02}(" + p_str("w") + _tensor("0", True) + b"u."
            _TORCH_BASES.append(legacy_file(legacy, ["0"], [bytes(16)]))
            return _TORCH_BASES

        g = torch.Generator().manual_seed(0)
        emb = torch.randn(8, 4, generator=g)
        states = [
            ({"model.embed_tokens.weight": emb, "lm_head.weight": emb}, True),
            ({"model.embed_tokens.weight": emb, "lm_head.weight": emb.t().contiguous().t()}, True),
            ({"state_dict": {"module.a": emb[:4], "module.b": emb[4:].half()}}, False),
            ({"a": emb, "b": emb.clone()}, False),
        ]
        for state, zip_format in states:
            buffer = io.BytesIO()
            torch.save(state, buffer, _use_new_zipfile_serialization=zip_format)
            _TORCH_BASES.append(buffer.getvalue())
    return _TORCH_BASES


@st.composite
def mutated_torch_files(draw: st.DrawFn) -> bytes:
    """torch.save output, edited either as raw bytes or inside data.pkl and re-zipped (which
    keeps the archive valid so the edit reaches the unpickler)."""
    base = draw(st.sampled_from(torch_bases()))
    if base[:4] == b"PK\x03\x04" and draw(st.booleans()):
        with zipfile.ZipFile(io.BytesIO(base)) as z:
            records = {i.filename: z.read(i) for i in z.infolist()}
        name = next(n for n in records if n.endswith("data.pkl"))
        records[name] = bytes(mutate(draw, bytearray(records[name])))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            for n, content in records.items():
                z.writestr(zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0)), content)
        return buffer.getvalue()
    return bytes(mutate(draw, bytearray(base), max_edits=6))


@st.composite
def pickle_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "zip-program", "legacy-program", "mutated"]))
    if kind == "bytes":
        prefix = draw(st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x02\x8a\x0a"]))
        return prefix + draw(st.binary(max_size=200))
    if kind == "zip-program":
        program = draw(pickle_programs(legacy=False))
        storages = {"0": bytes(16), "1": bytes(draw(st.sampled_from([0, 8, 16, 64])))}
        return torch_zip(program, storages)
    if kind == "legacy-program":
        program = draw(pickle_programs(legacy=True))
        keys = draw(st.lists(st.sampled_from(["0", "1", "2"]), max_size=3))
        return legacy_file(program, keys, [bytes(16)] * len(keys))
    return draw(mutated_torch_files())


# ---------------------------------------------------------------------------------------------
# strategies: indexes

SHARD_NAMES = [
    SHARD,
    "model-00002-of-00002.safetensors",
    "../model.safetensors",
    "/etc/passwd",
    "C:\\x.safetensors",
    "sub/../" + SHARD,
    "",
    ".",
    "model.safetensors.index.json",
    "a\x00b",
    "\ud800.safetensors",
]


@st.composite
def index_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "index", "index", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    names = st.one_of(st.sampled_from(["w", "x", "lm_head.weight", "\ud800"]), st.text(max_size=5))
    shards = st.one_of(st.sampled_from(SHARD_NAMES), json_scalars)
    weight_map = draw(st.one_of(st.dictionaries(names, shards, max_size=5), json_values))
    metadata = draw(
        st.one_of(
            st.fixed_dictionaries({"total_size": st.one_of(st.integers(-5, 2**70), json_scalars)}),
            json_values,
        )
    )
    document: dict[str, Any] = {"weight_map": weight_map}
    if draw(st.booleans()):
        document["metadata"] = metadata
    raw = json.dumps(document).encode()
    if kind == "mutated":
        raw = bytes(mutate(draw, bytearray(raw)))
    return raw


@st.composite
def checkpoint_edits(draw: st.DrawFn) -> bytes:
    """Selector byte + one file of the model folder, edited (or replaced by a fuzzed one)."""
    files = model_folder_files()
    names = sorted(files)
    selector = draw(st.integers(0, 255))
    name = names[selector % len(names)]
    if draw(st.integers(0, 3)) == 0:  # a file from the format's own generator instead
        fresh = index_files() if name.endswith(".json") else safetensors_files()
        return bytes([selector]) + draw(fresh)
    return bytes([selector]) + bytes(mutate(draw, bytearray(files[name])))


STRATEGIES: dict[str, st.SearchStrategy[bytes]] = {
    "safetensors": safetensors_files(),
    "pickle": pickle_files(),
    "index": index_files(),
    "checkpoint": checkpoint_edits(),
}
