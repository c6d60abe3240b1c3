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

import contextlib
import io
import json
import os
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


# ---------------------------------------------------------------------------------------------
# targets: what fix finds in folders (journals, layouts) and configuration files


def _all_files(root: Path) -> dict[str, tuple[str, bytes]]:
    """Everything under ``root``, not following links: kind and content or link target."""
    out: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", str(path.readlink()).encode())
        elif path.is_file():
            out[rel] = ("file", path.read_bytes())
        else:
            out[rel] = ("other", b"")
    return out


def journal_target(data: bytes, scratch: Path) -> str:
    """A commit journal (``data``, a JSON document whose entries may carry ``"ino": -1``: "the
    real inode of the temporary I planted") planted with its temporaries in the source folder
    (in place) or an existing output folder. ``fix`` must refuse with a TiecheckError or
    finish; nothing outside the two folders may change, and a refused journal renames
    nothing."""
    from tiecheck.errors import TiecheckError
    from tiecheck.rewrite.commit import JOURNAL

    in_place = bool(data[:1]) and data[0] & 1 == 1
    body = data[1:]
    model, out = scratch / "model", scratch / "out"
    model.mkdir()
    for name, blob in model_folder_files().items():
        (model / name).write_bytes(blob)
    (scratch / "victim.txt").write_text("precious")
    folder = model if in_place else out
    folder.mkdir(exist_ok=True)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    entries = document.get("renames") if isinstance(document, dict) else None
    if isinstance(entries, list):
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("temp"), str):
                continue
            temp = entry["temp"]
            if "/" in temp or "\0" in temp or temp in ("", ".", "..") or len(temp) > 200:
                continue
            planted = folder / temp
            with contextlib.suppress(OSError):
                planted.write_bytes(b"planted " + temp.encode("utf-8", "replace"))
                if entry.get("ino") == -1:  # a plant that matches its own temporary
                    st = planted.stat()
                    entry.update(dev=st.st_dev, ino=st.st_ino, size=st.st_size)
        body = json.dumps(document).encode()
    (folder / JOURNAL).write_bytes(body)
    outside = _all_files(scratch)
    outside = {k: v for k, v in outside.items() if not k.startswith(("model", "out"))}
    before = _all_files(folder)
    try:
        if in_place:
            tiecheck.fix(model, to="tied", in_place=True)
        else:
            tiecheck.fix(model, to="tied", output=out, overwrite=True)
        outcome = "finished"
    except TiecheckError:
        outcome = "refused"
        if (folder / JOURNAL).exists():  # refused the journal itself: nothing was renamed
            assert _all_files(folder) == before, "a refused journal renamed files"
    after = {k: v for k, v in _all_files(scratch).items() if not k.startswith(("model", "out"))}
    assert after == outside, "fix changed files outside its folders"
    return outcome


def policy_target(data: bytes, scratch: Path) -> str:
    """A configuration file: ``load_config`` returns a Config or raises ConfigError (with a
    file name), and its override globs match any source in bounded time."""
    from tiecheck.config import ConfigError, load_config

    name = "pyproject.toml" if data[:1] == b"p" else "tiecheck.toml"
    path = scratch / name
    path.write_bytes(data[1:])
    try:
        config = load_config(path)
    except ConfigError as e:
        assert name in str(e), str(e)
        return "invalid"
    sources = ["models/a/model.safetensors", "org/name", "x" * 300 + "/" + "a" * 2000, "."]
    for override in config.overrides:
        for source in sources:
            override.matches(source, scratch)
    config.policy_for("models/a")
    return "valid"


LAYOUT_KINDS = ("file", "link-out", "link-in", "dangling", "fifo", "folder", "empty", "loop")


def layout_target(data: bytes, scratch: Path) -> str:
    """A model folder whose files are replaced by what a hostile repository can hold (links
    out of the folder and in it, dangling links, FIFOs, folders, empty files, link loops):
    ``inspect`` reports, ``fix -o`` writes or refuses with a TiecheckError; nothing outside is
    read into the output or changed, and nothing hangs."""
    from tiecheck.errors import TiecheckError

    model, out = scratch / "model", scratch / "out"
    model.mkdir()
    secret = scratch / "secret.txt"
    secret.write_text("secret-content")
    files = dict(model_folder_files())
    names = [*sorted(files), "README.md", "tokenizer.json", "extra.safetensors"]
    for i, byte in enumerate(data[: len(names)]):
        name, kind = names[i], LAYOUT_KINDS[byte % len(LAYOUT_KINDS)]
        path = model / name
        if kind == "file":
            path.write_bytes(files.get(name, b"{}"))
        elif kind == "link-out":
            path.symlink_to(secret)
        elif kind == "link-in":
            path.symlink_to(names[(i + 1) % len(names)])
        elif kind == "dangling":
            path.symlink_to(scratch / "nowhere")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            path.symlink_to(name)
    for name in names[len(data) :]:
        if name in files:
            (model / name).write_bytes(files[name])
    outside = {k: v for k, v in _all_files(scratch).items() if not k.startswith("model")}
    source = _all_files(model)
    try:
        tiecheck.inspect(model)
    except TiecheckError:  # no weights left at all: a one-line error, not a report
        outcome = "unreadable"
    else:
        try:
            tiecheck.fix(model, to="tied", output=out)
            outcome = "fixed"
        except TiecheckError:
            outcome = "refused"
    assert _all_files(model) == source, "fix changed its source"
    after = _all_files(scratch)
    assert {k: v for k, v in after.items() if not k.startswith(("model", "out"))} == outside
    for rel, (kind, blob) in after.items():
        if rel.startswith("out"):
            assert kind != "link", f"the output holds a link: {rel}"
            assert b"secret-content" not in blob, f"a file outside was copied into {rel}"
    return outcome


TARGETS: dict[str, Callable[[bytes, Path], str]] = {
    "safetensors": safetensors_target,
    "pickle": pickle_target,
    "index": index_target,
    "checkpoint": checkpoint_target,
    "journal": journal_target,
    "policy": policy_target,
    "layout": layout_target,
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


# ---------------------------------------------------------------------------------------------
# strategies: journals, configuration files, folder layouts

HOSTILE_NAMES = [
    "model-00001-of-00002.safetensors",
    "config.json",
    ".tiecheck-commit.json",
    "../victim.txt",
    "/tmp/tiecheck-fuzz-absolute",
    "a/../../victim.txt",
    "sub/x.safetensors",
    "",
    ".",
    "x\0y",
]


@st.composite
def journals(draw: st.DrawFn) -> bytes:
    """Selector byte (in place or -o) + a journal: well-formed entries with hostile names,
    matching or not, malformed documents, or bytes."""
    selector = bytes([draw(st.integers(0, 255))])
    kind = draw(st.sampled_from(["entries", "entries", "json", "bytes"]))
    if kind == "bytes":
        return selector + draw(st.binary(max_size=200))
    if kind == "json":
        return selector + json.dumps(draw(json_values)).encode()
    entries = []
    for _ in range(draw(st.integers(0, 4))):
        final = draw(st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=8)))
        own = "/".join([*final.split("/")[:-1], f".{final.split('/')[-1]}.tiecheck-tmp"])
        temp = draw(st.one_of(st.just(own), st.sampled_from(HOSTILE_NAMES), st.text(max_size=8)))
        number = st.one_of(st.just(-1), st.integers(0, 2**20), st.sampled_from([2**64, -5]))
        entry: dict[str, Any] = {"temp": temp, "final": final}
        for key in ("dev", "ino", "size"):
            if draw(st.integers(0, 9)):
                entry[key] = draw(number)
        entries.append(entry)
    version = draw(st.sampled_from([2, 2, 2, 1, "2"]))
    return selector + json.dumps({"tiecheck_journal": version, "renames": entries}).encode()


TOML_KEYS = ["expect", "fail-on", "ignore", "select", "overrides", "path", "tool", "tiecheck"]
TOML_VALUES = [
    '"tied"',
    '"warning"',
    '["TC101", "TC999"]',
    '"**/*a*a*a*a*a*a*b"',
    '"[z-a]"',
    '["*", "[", "]"]',
    "1",
    "[" * 200 + "]" * 200,
    '"' + "a" * 5000 + '"',
    "{a = {b = 1}}",
]


@st.composite
def policy_files(draw: st.DrawFn) -> bytes:
    """Selector (pyproject.toml or tiecheck.toml) + TOML assembled from tiecheck's keys,
    hostile values and headers, sometimes mutated."""
    selector = draw(st.sampled_from([b"p", b"t"]))
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            header = draw(st.sampled_from(["tool.tiecheck", "tiecheck", "tool"]))
            lines.append(f"[{header}]")
        elif choice == 1:
            lines.append(f"[[{draw(st.sampled_from(['overrides', 'tool.tiecheck.overrides']))}]]")
        elif choice == 2:
            lines.append(draw(st.text(max_size=30)))
        else:
            key = draw(st.one_of(st.sampled_from(TOML_KEYS), st.text(max_size=6)))
            lines.append(f"{key} = {draw(st.sampled_from(TOML_VALUES))}")
    raw = bytearray("\n".join(lines).encode("utf-8", "surrogatepass"))
    if draw(st.integers(0, 4)) == 0:
        raw = mutate(draw, raw)
    return selector + bytes(raw)


layouts = st.binary(min_size=0, max_size=8)


STRATEGIES: dict[str, st.SearchStrategy[bytes]] = {
    "safetensors": safetensors_files(),
    "pickle": pickle_files(),
    "index": index_files(),
    "checkpoint": checkpoint_edits(),
    "journal": journals(),
    "policy": policy_files(),
    "layout": layouts,
}
