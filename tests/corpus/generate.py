"""Write the hostile and broken input corpus, deterministically.

    python tests/corpus/generate.py          # rewrite every committed case
    python tests/corpus/generate.py --check  # exit 1 if the committed files differ

Each case is a tiny file (or, for indexes, a folder) that a checkpoint from a stranger could be:
a safetensors header that lies, a pickle that tries to run code or exhaust memory, an index
that points outside its folder. ``EXPECTED.toml`` beside this script says what ``tiecheck
inspect`` must answer for each one; ``tests/test_corpus.py`` runs the real command line on
every case under a memory limit and a timeout.

No writer library is used: safetensors files are written byte by byte and torch checkpoints
(zip and legacy) are assembled from pickle opcodes, so the bytes depend on nothing but this
script. The valid controls in ``valid/`` load with ``safe_open`` and ``torch.load`` (the tests
check), which proves the broken cases differ from a real file only by their defect.

Cases too large to commit, or that git cannot hold (a FIFO), are built at test time by the
functions in ``RUNTIME``; ``EXPECTED.toml`` marks them ``runtime = true``.

Pickle payloads only ever ``touch`` a marker named ``tiecheck-pwned-<case>`` in the working
directory; the tests run tiecheck in an empty temporary folder and check that no marker
appears (and, separately, that each payload does create it under plain ``pickle``).
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("safetensors", "pickles", "indexes", "configs", "valid")
"""The folders this script owns (removed and rewritten); nothing else here is touched."""

MARKER_PREFIX = "tiecheck-pwned-"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

Builder = Callable[[Path], None]
CASES: dict[str, Builder] = {}
RUNTIME: dict[str, Builder] = {}


def case(name: str, *, runtime: bool = False) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        (RUNTIME if runtime else CASES)[name] = fn
        return fn

    return register


def marker(name: str) -> str:
    return MARKER_PREFIX + name


# ---------------------------------------------------------------------------------------------
# safetensors, byte by byte

F32_4 = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)


def st_bytes(header: bytes | str | dict, data: bytes = b"", *, length: int | None = None) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def entry(dtype: str, shape: list, begin: object, end: object) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def st_case(name: str, data: Callable[[], bytes]) -> None:
    CASES[f"safetensors/{name}.safetensors"] = lambda p: write(p, data())


VALID_ST = st_bytes({"w": entry("F32", [4], 0, 16)}, F32_4)

st_case("file-7-bytes", lambda: b"\x10\x00\x00\x00\x00\x00\x00")
st_case("header-length-0", lambda: st_bytes(b""))
st_case("header-length-7-truncated", lambda: st_bytes(b'{"a"', length=7))
st_case("header-length-past-eof", lambda: st_bytes(b"{}", length=1000))
st_case("header-length-2-pow-63", lambda: st_bytes(b"{}", length=2**63))
st_case("header-length-2-pow-64-minus-1", lambda: st_bytes(b"{}", length=2**64 - 1))
st_case("header-claims-150mb", lambda: st_bytes(b'{"w":{}}', length=150_000_000))
st_case("header-claims-99mb-of-a-tiny-file", lambda: st_bytes(b"{}", length=99_999_999))
st_case("invalid-utf8", lambda: st_bytes(b'{"w\xff\xfe":{}}      '))
st_case("not-json", lambda: st_bytes(b"{this is not json}"))
st_case("json-array", lambda: st_bytes(b"[1, 2, 3]"))
st_case("json-string", lambda: st_bytes(b'"{}"'))
st_case("json-object-then-garbage", lambda: st_bytes(b"{} {}"))
st_case("deeply-nested-json", lambda: st_bytes(b'{"w":' + b"[" * 20_000 + b"]" * 20_000 + b"}"))
st_case("nan-constant", lambda: st_bytes('{"w":' + json.dumps(entry("F32", [4], 0, float("nan")))))
st_case(
    "integer-of-5000-digits",
    lambda: st_bytes('{"w":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,16]}}'),
)
st_case(
    "duplicate-tensor-name",
    lambda: st_bytes(
        '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
        '"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}',
        F32_4,
    ),
)
st_case(
    "duplicate-field-in-entry",
    lambda: st_bytes(
        '{"w":{"dtype":"F32","dtype":"F16","shape":[4],"data_offsets":[0,16]}}', F32_4
    ),
)
st_case(
    "duplicate-metadata",
    lambda: st_bytes(
        '{"__metadata__":{"format":"pt"},"__metadata__":{"format":"pt"},'
        '"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}',
        F32_4,
    ),
)
st_case("unknown-dtype", lambda: st_bytes({"w": entry("F128", [4], 0, 16)}, F32_4))
st_case("negative-offset", lambda: st_bytes({"w": entry("F32", [4], -16, 0)}, F32_4))
st_case("reversed-offsets", lambda: st_bytes({"w": entry("F32", [4], 16, 0)}, F32_4))
st_case("offsets-beyond-u64", lambda: st_bytes({"w": entry("U8", [0], 2**64, 2**64)}))
st_case("float-offsets", lambda: st_bytes({"w": entry("F32", [4], 0.0, 16.0)}, F32_4))
st_case(
    "overlapping-offsets",
    lambda: st_bytes({"a": entry("F32", [4], 0, 16), "b": entry("F32", [2], 8, 16)}, F32_4),
)
st_case(
    "non-contiguous-offsets",
    lambda: st_bytes({"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 12, 16)}, F32_4),
)
st_case("offsets-out-of-range", lambda: st_bytes({"w": entry("F32", [4], 0, 16)}, F32_4[:8]))
st_case(
    "offsets-far-out-of-range",
    lambda: st_bytes({"w": entry("U8", [2**40], 0, 2**40)}, F32_4),
)
st_case("shape-size-mismatch", lambda: st_bytes({"w": entry("F32", [5], 0, 16)}, F32_4))
st_case("shape-negative", lambda: st_bytes({"w": entry("F32", [-4], 0, 16)}, F32_4))
st_case("shape-not-a-list", lambda: st_bytes({"w": entry("F32", "4", 0, 16)}, F32_4))  # type: ignore[arg-type]
st_case(
    "shape-element-count-overflows",
    lambda: st_bytes({"w": entry("F32", [2**32, 2**32, 2**32], 0, 16)}, F32_4),
)
st_case("entry-not-an-object", lambda: st_bytes({"w": [0, 16]}, F32_4))
st_case("trailing-bytes", lambda: VALID_ST + b"\x00" * 8)
st_case("truncated-buffer", lambda: VALID_ST[:-5])
st_case(
    "metadata-int-value",
    lambda: st_bytes({"__metadata__": {"format": 1}, "w": entry("F32", [4], 0, 16)}, F32_4),
)
st_case(
    "metadata-nested-object",
    lambda: st_bytes(
        {"__metadata__": {"format": "pt", "x": {"y": "z"}}, "w": entry("F32", [4], 0, 16)}, F32_4
    ),
)
st_case(
    "metadata-not-an-object",
    lambda: st_bytes({"__metadata__": ["pt"], "w": entry("F32", [4], 0, 16)}, F32_4),
)
st_case(
    "lone-surrogate-name",
    lambda: st_bytes('{"w\\ud800":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', F32_4),
)


# ---------------------------------------------------------------------------------------------
# pickles, from opcodes


def p_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def p_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_call(module: str, name: str, *args: bytes) -> bytes:
    return p_global(module, name) + p_tuple(*args) + b"R"


EMPTY_ORDERED_DICT = p_global("collections", "OrderedDict") + b")R"


def p_storage(key: str, numel: int, *, legacy: bool, kind: str = "FloatStorage") -> bytes:
    fields = [p_str("storage"), p_global("torch", kind), p_str(key), p_str("cpu"), p_int(numel)]
    if legacy:
        fields.append(b"N")  # no view
    return p_tuple(*fields) + b"Q"


def p_tensor(storage: bytes, shape: tuple[int, ...], offset: int = 0) -> bytes:
    stride, step = [], 1
    for size in reversed(shape):
        stride.insert(0, step)
        step *= size
    return p_call(
        "torch._utils",
        "_rebuild_tensor_v2",
        storage,
        p_int(offset),
        p_tuple(*map(p_int, shape)),
        p_tuple(*map(p_int, stride)),
        b"\x89",  # requires_grad False
        EMPTY_ORDERED_DICT,
    )


def p_state_dict(*items: tuple[str, bytes]) -> bytes:
    """Protocol 2, as torch.save writes: an OrderedDict of name -> value, then STOP."""
    body = b"".join(p_str(name) + value for name, value in items)
    return b"\x80\x02" + EMPTY_ORDERED_DICT + b"(" + body + b"u."


def torch_zip(records: dict[str, bytes], compress: dict[str, int] | None = None) -> bytes:
    """A torch.save-style archive (``archive/data.pkl``, ``archive/data/<key>``...)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in records.items():
            info = zipfile.ZipInfo(f"archive/{name}", date_time=ZIP_DATE)
            info.compress_type = (compress or {}).get(name, zipfile.ZIP_STORED)
            info.create_system = 3
            z.writestr(info, data)
    return buffer.getvalue()


def zip_state(data_pkl: bytes, storages: dict[str, bytes] | None = None) -> bytes:
    records = {"data.pkl": data_pkl, "byteorder": b"little"}
    records.update({f"data/{k}": v for k, v in (storages or {}).items()})
    records["version"] = b"3\n"
    return torch_zip(records)


def legacy_state(main: bytes, keys: list[str], storages: list[bytes], itemsize: int = 4) -> bytes:
    """The pre-1.6 format: magic, protocol, sys info, the object, storage keys, raw storages."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, sys_info))
    tail = pickle.dumps(keys, protocol=2)
    for raw in storages:
        tail += struct.pack("<q", len(raw) // itemsize) + raw
    return head + main + tail


VALID_ZIP_PKL = p_state_dict(("w", p_tensor(p_storage("0", 4, legacy=False), (4,))))
VALID_ZIP = zip_state(VALID_ZIP_PKL, {"0": F32_4})
VALID_LEGACY_PKL = p_state_dict(("w", p_tensor(p_storage("0", 4, legacy=True), (4,))))
VALID_LEGACY = legacy_state(VALID_LEGACY_PKL, ["0"], [F32_4])


def touch(name: str) -> str:
    return f"touch {marker(name)}"


# Payloads: each is a complete pickle whose only effect under plain ``pickle.loads`` is
# creating its marker file in the working directory.
PAYLOADS: dict[str, bytes] = {
    "os-system": p_call("os", "system", p_str(touch("os-system"))) + b".",
    "posix-system": p_call("posix", "system", p_str(touch("posix-system"))) + b".",
    "builtins-eval": p_call(
        "builtins", "eval", p_str(f"__import__('os').system({touch('builtins-eval')!r})")
    )
    + b".",
    "builtins-exec": p_call(
        "builtins", "exec", p_str(f"import os; os.system({touch('builtins-exec')!r})")
    )
    + b".",
    "subprocess-popen": p_global("subprocess", "check_call")
    + b"(("
    + p_str("touch")
    + p_str(marker("subprocess-popen"))
    + b"ltR.",
    "subprocess-getoutput": p_call("subprocess", "getoutput", p_str(touch("subprocess-getoutput")))
    + b".",
    # a torch function outside the allow-list that writes a file: torch.save(obj, path)
    "torch-save": p_call("torch", "save", p_str("x"), p_str(marker("torch-save"))) + b".",
    # protocol 4 STACK_GLOBAL and the old INST opcode reach globals without GLOBAL
    "stack-global": b"\x80\x04"
    + p_str("os")
    + p_str("system")
    + b"\x93"
    + p_str(touch("stack-global"))
    + b"\x85R.",
    "inst-opcode": b"(" + p_str(touch("inst-opcode")) + b"ios\nsystem\n.",
    # a valid state dict with the payload hidden in a value after the tensors
    "after-valid-tensors": p_state_dict(
        ("w", p_tensor(p_storage("0", 4, legacy=False), (4,))),
        ("config", p_call("os", "system", p_str(touch("after-valid-tensors")))),
    ),
}


def payload_case(name: str, data: Callable[[], bytes], suffix: str = ".bin") -> None:
    CASES[f"pickles/{name}{suffix}"] = lambda p: write(p, data())


for _name, _payload in PAYLOADS.items():
    _storages = {"0": F32_4} if _name == "after-valid-tensors" else None
    payload_case(f"zip-{_name}", lambda pl=_payload, st=_storages: zip_state(pl, st))

payload_case(
    "legacy-os-system",
    lambda: legacy_state(p_call("os", "system", p_str(touch("legacy-os-system"))) + b".", [], []),
)
payload_case(
    "legacy-payload-as-magic",
    lambda: p_call("os", "system", p_str(touch("legacy-payload-as-magic"))) + b".",
    ".pt",
)

# -- resource exhaustion: what a pickle or a zip merely claims must not be allocated


_BZ2_ZEROS: dict[int, bytes] = {}


def _bz2_zeros(nbytes: int) -> bytes:
    """``nbytes`` zero bytes, bzip2-compressed: 1 GiB becomes under 1 KB (takes a few s)."""
    if nbytes not in _BZ2_ZEROS:
        compressor = bz2.BZ2Compressor(9)
        chunk = bytes(1 << 20)
        out = [compressor.compress(chunk) for _ in range(nbytes >> 20)]
        _BZ2_ZEROS[nbytes] = b"".join(out) + compressor.flush()
    return _BZ2_ZEROS[nbytes]


def zlib_raw(data: bytes) -> bytes:
    """A raw deflate stream, as a zip record holds it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zip_with_raw_member(name: str, raw: bytes, size: int, method: int, extra: dict) -> bytes:
    """A torch archive whose ``name`` record is already-compressed ``raw`` (``size`` bytes once
    decompressed), next to the ``extra`` records stored as usual."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as z:
        for other, data in extra.items():
            info = zipfile.ZipInfo(f"archive/{other}", date_time=ZIP_DATE)
            info.create_system = 3
            z.writestr(info, data)
        info = zipfile.ZipInfo(f"archive/{name}", date_time=ZIP_DATE)
        info.create_system = 3
        info.compress_type = method
        # write the already-compressed stream as if zipfile had compressed it
        info.file_size = size
        info.compress_size = len(raw)
        info.CRC = 0
        zip64 = size > 0xFFFFFFFF
        header = info.FileHeader(zip64)
        info.header_offset = z.fp.tell()
        z.fp.write(header + raw)
        z.start_dir = z.fp.tell()
        z.filelist.append(info)
        z.NameToInfo[info.filename] = info
    return buffer.getvalue()


payload_case(
    "zip-bomb-data-pkl-bz2-1gb",
    lambda: zip_with_raw_member(
        "data.pkl", _bz2_zeros(1 << 30), 1 << 30, zipfile.ZIP_BZIP2, {"byteorder": b"little"}
    ),
)
payload_case(
    "zip-bomb-byteorder-bz2-1gb",
    lambda: zip_with_raw_member(
        "byteorder", _bz2_zeros(1 << 30), 1 << 30, zipfile.ZIP_BZIP2, {"data.pkl": VALID_ZIP_PKL}
    ),
)
payload_case(
    "zip-declared-size-64gb",
    lambda: zip_with_raw_member(
        "data.pkl",
        zlib_raw(VALID_ZIP_PKL),
        64 << 30,
        zipfile.ZIP_DEFLATED,
        {"byteorder": b"little"},
    ),
)


def overlapping_zip() -> bytes:
    """Two central-directory records pointing at the same bytes (the 'overlapping files' bomb)."""
    data = bytearray(VALID_ZIP)
    cd = data.index(b"PK\x01\x02")
    first_offset = struct.unpack("<I", data[cd + 42 : cd + 46])[0]
    at = cd
    while True:
        at = data.index(b"PK\x01\x02", at + 4)
        name_len = struct.unpack("<H", data[at + 28 : at + 30])[0]
        if data[at + 46 : at + 46 + name_len] == b"archive/data/0":
            data[at + 42 : at + 46] = struct.pack("<I", first_offset)
            return bytes(data)


payload_case("zip-overlapping-records", overlapping_zip)
payload_case("zip-truncated", lambda: VALID_ZIP[: len(VALID_ZIP) // 2])
payload_case("zip-central-directory-cut", lambda: VALID_ZIP[:-10])
payload_case("zip-without-data-pkl", lambda: torch_zip({"byteorder": b"little"}))
payload_case("zip-storage-record-missing", lambda: zip_state(VALID_ZIP_PKL, {}))
payload_case("zip-storage-record-too-small", lambda: zip_state(VALID_ZIP_PKL, {"0": F32_4[:8]}))
payload_case("legacy-truncated", lambda: VALID_LEGACY[:-6])
payload_case("legacy-wrong-protocol", lambda: VALID_LEGACY.replace(b"M\xe9\x03", b"M\xea\x03", 1))
payload_case(
    "text-named-bin", lambda: b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n"
)
payload_case("empty", lambda: b"")
payload_case("random-bytes", lambda: bytes((i * 97 + 13) % 256 for i in range(512)))
payload_case(
    "binbytes8-claims-4-exabytes",
    lambda: zip_state(b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"xx"),
)
payload_case(
    "bytearray8-claims-3gb",
    lambda: zip_state(b"\x80\x05\x96" + struct.pack("<Q", 3_000_000_000) + b"."),
)
payload_case(
    "bytearray-of-900mb",
    lambda: zip_state(b"\x80\x02" + p_call("builtins", "bytearray", p_int(900_000_000)) + b"."),
)
payload_case(
    "set-state-on-a-storage",
    # BUILD on the storage record torch's own reader would never see: its dtype set to junk
    lambda: zip_state(
        p_state_dict(
            (
                "w",
                p_tensor(
                    p_storage("0", 4, legacy=False) + b"}" + p_str("dtype") + p_str("F99") + b"sb",
                    (4,),
                ),
            )
        ),
        {"0": F32_4},
    ),
)
payload_case(
    "set-state-on-a-dtype",
    lambda: zip_state(
        b"\x80\x02" + p_global("torch", "float32") + b"}" + p_str("code") + p_str("F99") + b"sb."
    ),
)
payload_case(
    "non-storage-persistent-id",
    lambda: zip_state(b"\x80\x02" + p_tuple(p_str("module"), p_str("x")) + b"Q."),
)
payload_case(
    "tensor-beyond-its-storage",
    lambda: zip_state(
        p_state_dict(("w", p_tensor(p_storage("0", 4, legacy=False), (4,), offset=3))),
        {"0": F32_4},
    ),
)
payload_case(
    "storage-claims-2-pow-62-elements",
    lambda: zip_state(
        p_state_dict(
            (
                "w",
                p_call(
                    "torch._utils",
                    "_rebuild_tensor_v2",
                    p_tuple(
                        p_str("storage"),
                        p_global("torch", "FloatStorage"),
                        p_str("0"),
                        p_str("cpu"),
                        b"\x8a\x08" + struct.pack("<q", 1 << 62),
                    )
                    + b"Q",
                    p_int(0),
                    p_tuple(p_int(4)),
                    p_tuple(p_int(1)),
                    b"\x89",
                    EMPTY_ORDERED_DICT,
                ),
            )
        ),
        {"0": F32_4},
    ),
)


def p_view(key: str, numel: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A tensor with explicit strides (a stride of 0 repeats the storage: torch's expand)."""
    return p_call(
        "torch._utils",
        "_rebuild_tensor_v2",
        p_storage(key, numel, legacy=False),
        p_int(0),
        p_tuple(*map(p_int, shape)),
        p_tuple(*map(p_int, stride)),
        b"\x89",
        EMPTY_ORDERED_DICT,
    )


payload_case(
    "expanded-view-4-tib",
    # one float viewed as (2**20, 2**20) twice: 8 TiB of values to compare, from a 1 KB file
    lambda: zip_state(
        p_state_dict(
            ("model.embed_tokens.weight", p_view("0", 1, (1 << 20, 1 << 20), (0, 0))),
            ("lm_head.weight", p_view("1", 1, (1 << 20, 1 << 20), (0, 0))),
        ),
        {"0": F32_4[:4], "1": F32_4[:4]},
    ),
)
payload_case(
    "legacy-storage-count-negative",
    lambda: legacy_state(VALID_LEGACY_PKL, ["0"], []) + struct.pack("<q", -(1 << 62)),
)


# -- views past their storage: a strided view is read through numpy over a map of its storage,
# and one element past the map is a read of unmapped memory (SIGSEGV), not an exception


def p_long(value: int) -> bytes:
    """LONG4: an integer of any size (torch writes dimensions as BININT)."""
    raw = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def p_put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def p_get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def p_rebuild(storage: bytes, shape: tuple, stride: tuple, offset: object = 0) -> bytes:
    """``_rebuild_tensor_v2`` with explicit geometry (ints, or already-pickled bytes)."""

    def enc(value: object) -> bytes:
        return value if isinstance(value, bytes) else p_int(value)  # type: ignore[arg-type]

    return p_call(
        "torch._utils",
        "_rebuild_tensor_v2",
        storage,
        enc(offset),
        p_tuple(*map(enc, shape)),
        p_tuple(*map(enc, stride)),
        b"\x89",
        EMPTY_ORDERED_DICT,
    )


def p_legacy_view(root: str, numel: int, view: str, offset: int, size: int) -> bytes:
    """A pre-1.0 storage view: elements ``[offset, offset + size)`` of storage ``root``."""
    return (
        p_tuple(
            p_str("storage"),
            p_global("torch", "FloatStorage"),
            p_str(root),
            p_str("cpu"),
            p_int(numel),
            p_tuple(p_str(view), p_int(offset), p_int(size)),
        )
        + b"Q"
    )


BIG = 4096
"""Side of the head the view cases compare: 4096 x 4096 floats read from a 16-byte storage
reach 64 MiB past its map, well into unmapped memory."""


def legacy_head_on(head_storage: bytes, shape: tuple, stride: tuple) -> bytes:
    """A legacy file whose embedding (one float repeated, stride 0: 64 MiB of values from 4
    bytes) is compared with a head on ``head_storage``, a storage record or view of root '1'."""
    pkl = p_state_dict(
        (
            "model.embed_tokens.weight",
            p_rebuild(p_storage("0", 1, legacy=True), (BIG, BIG), (0, 0)),
        ),
        ("lm_head.weight", p_rebuild(head_storage, shape, stride)),
    )
    return legacy_state(pkl, ["0", "1"], [F32_4[:4], F32_4])


payload_case(
    "legacy-view-larger-than-its-storage",
    # a transposed head on a view claiming 2**24 elements of a 4-element storage (SIGSEGV)
    lambda: legacy_head_on(p_legacy_view("1", 4, "v", 0, BIG * BIG), (BIG, BIG), (1, BIG)),
)
payload_case(
    "legacy-view-larger-than-its-storage-contiguous",
    # the same view read contiguously was read past the storage, into the next bytes
    lambda: legacy_head_on(p_legacy_view("1", 4, "v", 0, BIG * BIG), (BIG, BIG), (BIG, 1)),
)
payload_case(
    "legacy-view-offset-past-its-storage",
    lambda: legacy_head_on(p_legacy_view("1", 4, "v", 1 << 24, 4), (2, 2), (1, 2)),
)
payload_case(
    "legacy-view-key-is-a-storage-key",
    # the view is named like its own root: which bytes does '1' mean?
    lambda: legacy_head_on(p_legacy_view("1", 4, "1", 2, 2), (2,), (1,)),
)
payload_case(
    "zip-transposed-head-past-its-storage",
    lambda: zip_state(
        p_state_dict(
            (
                "model.embed_tokens.weight",
                p_rebuild(p_storage("0", 1, legacy=False), (BIG, BIG), (0, 0)),
            ),
            ("lm_head.weight", p_rebuild(p_storage("1", 4, legacy=False), (BIG, BIG), (1, BIG))),
        ),
        {"0": F32_4[:4], "1": F32_4},
    ),
)
payload_case(
    "dtype-differs-from-its-storage",
    # four float32 read as float64: the storage is not a whole number of the view's elements
    lambda: zip_state(
        p_state_dict(
            (
                "w",
                p_call(
                    "torch._utils",
                    "_rebuild_tensor_v3",
                    p_storage("0", 3, legacy=False),
                    p_int(0),
                    p_tuple(p_int(1)),
                    p_tuple(p_int(1)),
                    b"\x89",
                    EMPTY_ORDERED_DICT,
                    p_global("torch", "float64"),
                ),
            )
        ),
        {"0": F32_4[:12]},
    ),
)


def huge_geometry(field: str) -> bytes:
    """A tensor one of whose numbers is a 20,000-bit integer (LONG4): past 4,300 digits,
    Python refuses to format it into a message."""
    big = p_long(1 << 20_000)
    storage = p_tuple(
        p_str("storage"),
        p_global("torch", "FloatStorage"),
        p_str("0"),
        p_str("cpu"),
        big if field == "numel" else p_int(4),
    )
    shape = (big,) if field == "shape" else (2,)
    stride = (big,) if field == "stride" else (1,)
    offset = big if field == "offset" else 0
    tensor = p_rebuild(storage + b"Q", shape, stride, offset)
    return zip_state(p_state_dict(("w", tensor)), {"0": F32_4})


for _field in ("shape", "stride", "offset", "numel"):
    payload_case(f"{_field}-of-20000-bits", lambda f=_field: huge_geometry(f))
payload_case(
    "byte-stride-past-2-pow-63",
    # a stride of 2**62 elements on a dimension of size 1 never moves, but in bytes it
    # overflows int64 (numpy refused it with an OverflowError)
    lambda: zip_state(
        p_state_dict(
            ("w", p_rebuild(p_storage("0", 4, legacy=False), (1, 4), (p_long(1 << 62), 1)))
        ),
        {"0": F32_4},
    ),
)
payload_case(
    "zip-encrypted-record",
    # the 'encrypted' flag set on data.pkl: zipfile raised RuntimeError (password required)
    lambda: _flag_encrypted(VALID_ZIP),
)


def _flag_encrypted(data: bytes) -> bytes:
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    central = out.index(b"PK\x01\x02")
    out[local + 6] |= 1
    out[central + 8] |= 1
    return bytes(out)


# -- nesting: hashing a tuple recurses in C with no depth check (SIGSEGV at ~150,000 levels)

payload_case(
    "lists-nested-20000",
    # torch.load reads it; tiecheck refuses containers nested past 1,000 levels
    lambda: zip_state(b"\x80\x02" + b"(" * 20_000 + b"l" * 20_000 + b"."),
)
payload_case(
    "lists-nested-1001",
    lambda: zip_state(
        p_state_dict(
            ("w", p_tensor(p_storage("0", 4, legacy=False), (4,))),
            ("deep", b"(" * 1000 + b"]" + b"l" * 1000),
        ),
        {"0": F32_4},
    ),
)
payload_case(
    "dict-values-nested-5000",
    lambda: zip_state(b"\x80\x02" + (b"}" + p_str("a")) * 5000 + b"}" + b"s" * 5000 + b"."),
)


@case("pickles/tuple-key-nested-200000.bin", runtime=True)
def deep_tuple_key(path: Path) -> None:
    """A tuple nested 200,000 deep used as a dict key: hashing it overflowed the C stack."""
    write(path, zip_state(b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns."))


@case("pickles/tuple-in-a-set-nested-200000.bin", runtime=True)
def deep_tuple_in_set(path: Path) -> None:
    """The same tuple added to a set (protocol 4 ADDITEMS)."""
    write(path, zip_state(b"\x80\x04\x8f(" + b")" + b"\x85" * 200_000 + b"\x90."))


@case("pickles/frozensets-nested-200000.bin", runtime=True)
def deep_frozensets(path: Path) -> None:
    write(path, zip_state(b"\x80\x04" + b"(" * 200_000 + b")" + b"\x91" * 200_000 + b"."))


# -- work that must stay linear in the file: the memo lets one value be used many times


def tuple_dag(levels: int) -> bytes:
    """``t[k+1] = (t[k], t[k])``, memoised as ``k + 1``: 2**levels elements to hash."""
    out = b")" + p_put(0) + b"0"
    for k in range(levels):
        out += p_get(k) + p_get(k) + b"\x86" + p_put(k + 1) + b"0"
    return out


payload_case(
    "memo-dag-tuple-as-dict-key",
    # a 1 KB pickle whose dict key takes 2**60 steps to hash (hung forever)
    lambda: zip_state(b"\x80\x02" + tuple_dag(60) + b"}" + p_get(60) + b"Ns."),
)


def list_dag(width: int, levels: int, leaf: bytes) -> bytes:
    """``l[k+1] = [l[k]] * width``, memoised as ``k + 1``, over ``leaf``: width**levels paths."""
    out = leaf + p_put(0) + b"0"
    for k in range(levels):
        out += b"](" + p_get(k) * width + b"e" + p_put(k + 1) + b"0"
    return out


CASES["valid/memo-dag-lists-64-wide-16-deep.bin"] = lambda p: write(
    # one tensor reached by 64**15 paths: walked once (it took forever)
    p,
    zip_state(
        b"\x80\x02"
        + list_dag(64, 15, b"](" + p_tensor(p_storage("0", 4, legacy=False), (4,)) + b"e")
        + b"}"
        + p_str("model")
        + p_get(15)
        + b"s.",
        {"0": F32_4},
    ),
)


def copies(call: bytes, arg: bytes, times: int, *, tail: bytes = b"") -> bytes:
    """A pickle calling ``call`` on one memoised ``arg`` ``times`` times, keeping each result."""
    one = call + b"(" + p_get(0) + tail + b"tR"
    return zip_state(b"\x80\x02" + arg + p_put(0) + b"0](" + one * times + b"e.")


def p_bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data  # BINBYTES


QUARTER_MB = 256 << 10


@case("pickles/bytearray-copied-8000-times.bin", runtime=True)
def bytearray_copies(path: Path) -> None:
    """bytearray() of one memoised 256 KiB string, 8,000 times: 2 GiB from 340 KB."""
    write(path, copies(p_global("builtins", "bytearray"), p_bytes(bytes(QUARTER_MB)), 8000))


@case("pickles/codecs-encode-copied-8000-times.bin", runtime=True)
def encode_copies(path: Path) -> None:
    call, text = p_global("_codecs", "encode"), p_str("a" * QUARTER_MB)
    write(path, copies(call, text, 8000, tail=p_str("latin1")))


@case("pickles/set-copied-2000-times.bin", runtime=True)
def set_copies(path: Path) -> None:
    """set() of one memoised list of 50,000 integers, 2,000 times: 4 GB of hash tables."""
    items = b"(" + b"".join(b"J" + struct.pack("<i", i) for i in range(50_000)) + b"l"
    write(path, copies(p_global("builtins", "set"), items, 2000))


@case("pickles/size-copied-4000-times.bin", runtime=True)
def size_copies(path: Path) -> None:
    """torch.Size() of one memoised list of 50,000 integers, 4,000 times: 1.6 GB."""
    items = b"(" + b"".join(b"J" + struct.pack("<i", i) for i in range(50_000)) + b"l"
    write(path, copies(p_global("torch", "Size"), items, 4000))


@case("pickles/shape-shared-by-4000-tensors.bin", runtime=True)
def shared_shape(path: Path) -> None:
    """One memoised shape of 50,000 ones, used by 4,000 tensors (each copies it): 1.6 GB."""
    storage = p_storage("0", 4, legacy=False) + p_put(1) + b"0"
    shape = b"(" + b"K\x01" * 50_000 + b"l" + p_put(2) + b"0"
    tensor = p_call(
        "torch._utils",
        "_rebuild_tensor_v2",
        p_get(1),
        p_int(0),
        p_get(2),
        p_get(2),
        b"\x89",
        EMPTY_ORDERED_DICT,
    )
    items = b"".join(p_str(f"t{i}") + tensor for i in range(4000))
    pkl = b"\x80\x02" + storage + shape + EMPTY_ORDERED_DICT + b"(" + items + b"u."
    write(path, zip_state(pkl, {"0": F32_4}))


@case("pickles/names-of-16-mb.bin", runtime=True)
def long_names(path: Path) -> None:
    """Dicts 16 deep, each keyed by one memoised 1 MiB string, over 5,000 tensors: every
    name is 16 MiB long (80 GB of names from a 1 MB file)."""
    key = p_str("k" * (1 << 20)) + p_put(0) + b"0"
    tensor = p_tensor(p_storage("0", 4, legacy=False), (4,)) + p_put(1)
    others = b"".join(p_str(f"t{i}") + p_get(1) for i in range(1, 5000))
    nested = b"}(" + p_str("t0") + tensor + others + b"u"
    for _ in range(15):
        nested = b"}" + p_get(0) + nested + b"s"
    write(path, zip_state(b"\x80\x02" + key + nested + b".", {"0": F32_4}))


@case("valid/module-prefix-400000-times.bin", runtime=True)
def repeated_prefix(path: Path) -> None:
    """A name of 400,000 'module.' prefixes: stripping them one by one, checking every name
    each time, was quadratic (hours)."""
    name = "module." * 400_000 + "w"
    tensor = p_tensor(p_storage("0", 4, legacy=False), (4,))
    write(path, zip_state(p_state_dict((name, tensor)), {"0": F32_4}))


# ---------------------------------------------------------------------------------------------
# indexes (each case is a model folder)


def index_json(weight_map: object, **metadata: object) -> str:
    return json.dumps({"metadata": {"total_size": 16, **metadata}, "weight_map": weight_map})


def index_case(name: str, files: dict[str, str | bytes | None], group: str = "indexes") -> None:
    """A model folder; ``files``: relative path -> text, bytes, or None for a folder."""

    def build(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for rel, content in files.items():
            path = folder / rel
            if content is None:
                path.mkdir(parents=True)
                (path / "README").write_text("a folder where the index expects a shard\n")
                continue
            data = content.encode() if isinstance(content, str) else content
            write(path, data)

    CASES[f"{group}/{name}"] = build


INDEX = "model.safetensors.index.json"
SHARD = "model-00001-of-00001.safetensors"

index_case("invalid-json", {INDEX: '{"weight_map": {"w": "' + SHARD + '"', SHARD: VALID_ST})
index_case("not-an-object", {INDEX: "[]", SHARD: VALID_ST})
index_case("weight-map-not-an-object", {INDEX: index_json([SHARD]), SHARD: VALID_ST})
index_case("weight-map-value-not-a-string", {INDEX: index_json({"w": 1}), SHARD: VALID_ST})
index_case("metadata-not-an-object", {INDEX: json.dumps({"metadata": 1, "weight_map": {}})})
index_case(
    "total-size-not-a-number", {INDEX: index_json({"w": SHARD}, total_size="16"), SHARD: VALID_ST}
)
index_case("invalid-utf8", {INDEX: b'{"weight_map": {"w\xff": "x"}}', SHARD: VALID_ST})
index_case("deeply-nested", {INDEX: '{"weight_map":' + "[" * 20_000 + "]" * 20_000 + "}"})
index_case("shard-absolute-path", {INDEX: index_json({"w": "/etc/passwd"})})
index_case(
    "shard-dot-dot",
    # the target exists (one level up, beside the case folders) and must still not be read
    {
        INDEX: index_json({"w": "../shard-dot-dot-target.safetensors"}),
        "../shard-dot-dot-target.safetensors": VALID_ST,
    },
)
index_case("shard-windows-absolute", {INDEX: index_json({"w": "C:\\Windows\\win.ini"})})
index_case("shard-is-a-folder", {INDEX: index_json({"w": SHARD}), SHARD: None})
index_case("shard-is-the-index", {INDEX: index_json({"w": INDEX})})
index_case("shard-missing", {INDEX: index_json({"w": SHARD})})
index_case("shard-name-with-nul", {INDEX: index_json({"w": "model\u0000.safetensors"})})
index_case(
    "duplicate-keys",
    {INDEX: '{"weight_map":{"w":"' + SHARD + '","w":"' + SHARD + '"}}', SHARD: VALID_ST},
)


# JSON nested past 64 levels (later code deep-copies and dumps configs) and file names longer
# than the file system allows (pathlib raised OSError from exists())


def nested_json(levels: int) -> str:
    return "[" * levels + "]" * levels


def config_json(levels: int, **fields: object) -> str:
    """A JSON object (level 1) whose ``x`` holds arrays nested ``levels`` deep below it."""
    return json.dumps(fields)[:-1] + ', "x": ' + nested_json(levels) + "}"


index_case(
    "nested-65-levels",
    {
        INDEX: '{"metadata": {"x": ' + nested_json(63) + '}, "weight_map": {"w": "' + SHARD + '"}}',
        SHARD: VALID_ST,
    },
)
index_case(
    "shard-name-longer-than-name-max", {INDEX: index_json({"w": "a" * 300 + ".safetensors"})}
)
index_case(
    "shard-path-longer-than-path-max",
    {INDEX: index_json({"w": ("b" * 200 + "/") * 30 + "x.safetensors"})},
)
index_case(
    "config-nested-65-levels",
    {"model.safetensors": VALID_ST, "config.json": config_json(64, model_type="llama")},
    group="configs",
)
index_case(
    "adapter-config-nested-65-levels",
    {
        "adapter_model.safetensors": VALID_ST,
        "adapter_config.json": config_json(64, peft_type="LORA"),
    },
    group="configs",
)
index_case(
    "config-nested-64-levels",
    {
        "model.safetensors": VALID_ST,
        "config.json": config_json(63, model_type="llama", tie_word_embeddings=False),
    },
    group="valid",
)
st_case(
    "metadata-nested-65-levels",
    lambda: st_bytes(
        '{"__metadata__": {"x": '
        + nested_json(63)
        + '}, "w": '
        + json.dumps(entry("F32", [4], 0, 16))
        + "}",
        F32_4,
    ),
)


def sparse_json_case(name: str, json_name: str, size: int, files: dict[str, bytes]) -> None:
    """A folder whose ``json_name`` is ``size`` bytes (a sparse file: zeros, no disk used)."""

    def build(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            write(folder / rel, data)
        with (folder / json_name).open("wb") as f:
            f.truncate(size)

    RUNTIME[name] = build


sparse_json_case(
    "configs/config-json-500mb", "config.json", 500 << 20, {"model.safetensors": VALID_ST}
)
sparse_json_case(
    "configs/adapter-config-json-100mb",
    "adapter_config.json",
    100 << 20,
    {"adapter_model.safetensors": VALID_ST},
)
sparse_json_case("indexes/index-200mb", INDEX, 200 << 20, {SHARD: VALID_ST})


def symlink_case(name: str, target: str) -> None:
    def build(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INDEX).write_text(index_json({"w": SHARD}))
        (folder / SHARD).symlink_to(target)

    CASES[f"indexes/{name}"] = build


# a real safetensors file, but outside the model folder: read it and a hostile repository
# could make a CI job report on (and leak details of) any file on the machine
symlink_case("shard-symlink-out-of-folder", f"../../valid/{'tiny.safetensors'}")
symlink_case("shard-symlink-to-etc-passwd", "/etc/passwd")


def _symlink_inside(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).write_text(index_json({"w": SHARD}))
    write(folder / "blobs" / "tiny.safetensors", VALID_ST)
    (folder / SHARD).symlink_to("blobs/tiny.safetensors")


# a link that stays inside the model folder is read as usual
CASES["valid/shard-symlink-inside-folder"] = _symlink_inside


def _weights_symlink_out(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").symlink_to("../../valid/tiny.safetensors")


# no index: the weights a folder offers must be its own too (named directly, a link is read)
CASES["indexes/folder-weights-symlink-out-of-folder"] = _weights_symlink_out


# -- built at test time


@case("indexes/million-keys", runtime=True)
def million_keys(folder: Path) -> None:
    """An index listing 1,000,000 tensors (about 50 MB of JSON) over one small shard."""
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / SHARD, VALID_ST)
    with (folder / INDEX).open("w") as f:
        f.write('{"metadata": {"total_size": 16}, "weight_map": {"w": "' + SHARD + '"')
        for i in range(1_000_000):
            f.write(f', "model.layers.{i}.mlp.weight": "{SHARD}"')
        f.write("}}")


@case("indexes/shard-is-a-fifo", runtime=True)
def fifo_shard(folder: Path) -> None:
    """Opening a FIFO blocks until someone writes: a reader must not even open it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / INDEX).write_text(index_json({"w": SHARD}))
    os.mkfifo(folder / SHARD)


def _deflate_zeros(nbytes: int) -> bytes:
    """``nbytes`` zeros as a raw deflate stream, in milliseconds: one fully flushed 1 MiB block
    (no reference crosses a full flush) repeated, then the final block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (nbytes >> 20) + c.flush()


@case("pickles/zip-bomb-deflate-1gb.bin", runtime=True)
def deflate_bomb(path: Path) -> None:
    """1 GiB of zeros in 1 MB of deflate, declared honestly."""
    member = zip_with_raw_member(
        "data.pkl", _deflate_zeros(1 << 30), 1 << 30, zipfile.ZIP_DEFLATED, {"byteorder": b"little"}
    )
    write(path, member)


@case("pickles/zip-bomb-deflate-declared-small.bin", runtime=True)
def deflate_bomb_lying(path: Path) -> None:
    """The same 1 GiB stream declared as 4 MiB: reading must stop at what is declared."""
    member = zip_with_raw_member(
        "data.pkl", _deflate_zeros(1 << 30), 4 << 20, zipfile.ZIP_DEFLATED, {"byteorder": b"little"}
    )
    write(path, member)


@case("valid/ten-thousand-embeddings.safetensors", runtime=True)
def many_embeddings(path: Path) -> None:
    """10,000 names that each look like an embedding (750 KB): finding their tie groups took
    129 s (a scan of every name per member); the corpus timeout is 30 s."""
    header = {f"m{i}.model.embed_tokens.weight": entry("U8", [1], i, i + 1) for i in range(10_000)}
    write(path, st_bytes(header, bytes(10_000)))


@case("valid/unknown-family-8000-pairs.safetensors", runtime=True)
def many_unknown_pairs(path: Path) -> None:
    """8,000 embedding-like and 8,000 head-like names of no known family: the shape heuristic
    compared every pair (over a minute); the corpus timeout is 30 s."""
    header = {}
    for i in range(8_000):
        header[f"x{i}.embed.weight"] = entry("U8", [2, 2], 8 * i, 8 * i + 4)
        header[f"x{i}.logits.weight"] = entry("U8", [2, 2], 8 * i + 4, 8 * i + 8)
    write(path, st_bytes(header, bytes(64_000)))


@case("safetensors/is-a-fifo.safetensors", runtime=True)
def fifo_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


# ---------------------------------------------------------------------------------------------
# valid controls


CASES["valid/tiny.safetensors"] = lambda p: write(p, VALID_ST)
# odd but valid: read, reported on, never refused and never a crash
CASES["valid/shape-20000-dims.safetensors"] = lambda p: write(
    p, st_bytes({"w": entry("U8", [1] * 20_000, 0, 1)}, b"x")
)
CASES["valid/control-characters-in-names.safetensors"] = lambda p: write(
    p, st_bytes({"w\u001b[31m\r\n": entry("F32", [4], 0, 16)}, F32_4)
)
# rich markup in names (two identical tensors, so a finding names both)
CASES["valid/markup-in-names.safetensors"] = lambda p: write(
    p,
    st_bytes(
        {"[/]": entry("F32", [4], 0, 16), "[bold red]x[/bold red]": entry("F32", [4], 16, 32)},
        F32_4 * 2,
    ),
)
# pickled strings may hold lone surrogates (torch.load reads them); identical tensors again
CASES["valid/surrogate-names.bin"] = lambda p: write(
    p,
    zip_state(
        p_state_dict(
            ("a\udc80", p_tensor(p_storage("0", 4, legacy=False), (4,))),
            ("b\ud800", p_tensor(p_storage("1", 4, legacy=False), (4,))),
        ),
        {"0": F32_4, "1": F32_4},
    ),
)
# torch.zeros(1).expand(4, 4): a small self-overlapping view, which is read
CASES["valid/expanded-view.bin"] = lambda p: write(
    p, zip_state(p_state_dict(("w", p_view("0", 1, (4, 4), (0, 0)))), {"0": F32_4[:4]})
)
# an empty dict memoised at index 2**31 - 1: valid (torch.load reads {}), but CPython's C
# unpickler sizes its memo table from the index (a 32 GB allocation, zeroed, from 5 bytes)
ONE_FLOAT = p_str("w") + p_tensor(p_storage("0", 1, legacy=False), (1,))
CASES["valid/memo-index-2-pow-31.bin"] = lambda p: write(
    p,
    zip_state(b"\x80\x02}r" + struct.pack("<I", 2**31 - 1) + ONE_FLOAT + b"s.", {"0": bytes(4)}),
)
CASES["valid/tiny-zip.bin"] = lambda p: write(p, VALID_ZIP)
CASES["valid/tiny-legacy.bin"] = lambda p: write(p, VALID_LEGACY)
index_case("sharded", {INDEX: index_json({"w": SHARD}), SHARD: VALID_ST}, group="valid")


# ---------------------------------------------------------------------------------------------
# files that hold no tensors at all: weights that are not there (TC008)
# torch.save(OrderedDict()): an empty state dict
CASES["pickles/no-tensors-empty-state-dict.bin"] = lambda p: write(
    p, zip_state(b"\x80\x02" + EMPTY_ORDERED_DICT + b".")
)
# torch.save({"epoch": 3}): plain values
CASES["pickles/no-tensors-plain-values.bin"] = lambda p: write(
    p, zip_state(b"\x80\x02}" + p_str("epoch") + b"K\x03s.")
)
CASES["safetensors/no-tensors-empty-header.safetensors"] = lambda p: write(p, st_bytes(b"{}"))


# ---------------------------------------------------------------------------------------------


SLOW = ("pickles/zip-bomb-data-pkl-bz2-1gb.bin", "pickles/zip-bomb-byteorder-bz2-1gb.bin")
"""Cases that take seconds to generate (bzip2 of 1 GiB); the test suite checks them by shape."""


def generate(root: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Write every committed case under ``root`` (its owned groups are emptied first)."""
    for group in GROUPS:
        target = root / group
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
    for rel, build in CASES.items():
        if rel not in skip:
            build(Path(os.path.normpath(root / rel)))


def tree(root: Path) -> dict[str, tuple[str, bytes]]:
    out: dict[str, tuple[str, bytes]] = {}
    for group in GROUPS:
        base = root / group
        if not base.exists():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", str(path.readlink()).encode())
            elif path.is_file():
                out[rel] = ("file", path.read_bytes())
            else:
                out[rel] = ("dir", b"")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        generate(HERE)
        total = sum(len(v) for _, v in tree(HERE).values())
        print(f"wrote {len(CASES)} cases ({total:,} bytes) under {HERE}")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        fresh, committed = tree(Path(scratch)), tree(HERE)
    if fresh != committed:
        differ = sorted(
            k for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k)
        )
        print("corpus differs from the generator: " + ", ".join(differ[:10]), file=sys.stderr)
        return 1
    print(f"{len(CASES)} cases match the generator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
