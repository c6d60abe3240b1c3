"""safetensors header validation: every rule of the Rust loader, checked against the loader.

Each invalid file is first shown to be refused by ``safetensors.safe_open`` itself, so the test
proves both that the rule is real and that tiecheck enforces it. The property tests at the end
generate headers at random and hold tiecheck to the loader's verdict in both directions.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiecheck
from core_helpers import (
    codes,
    entry,
    examples,
    findings_with,
    library_opens,
    raw_safetensors,
    save_numpy,
)
from tiecheck.errors import FormatError
from tiecheck.readers.safetensors_format import MAX_HEADER_BYTES, parse_header, read_header


def refused(path: Path, match: str) -> None:
    """The loader refuses the file, and tiecheck refuses it with a message matching ``match``."""
    assert not library_opens(path), "the Rust loader opens this file: the test is wrong"
    with pytest.raises(FormatError, match=match):
        read_header(path)
    report = tiecheck.inspect(path, no_data=True)
    assert [f.code for f in report.findings if f.severity.value == "error"] == ["TC001"]
    assert report.checkpoint.unreadable == {path.name}


# -- valid files -----------------------------------------------------------------------------------


def test_library_written_file_parses_with_absolute_spans(tmp_path: Path) -> None:
    arrays = {
        "b.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a.bias": np.arange(5, dtype=np.int64),
        "c.half": np.arange(6, dtype=np.float16).reshape(2, 3),
        "scalar": np.array(7, dtype=np.uint8),
    }
    path = save_numpy(tmp_path / "m.safetensors", arrays, note="hello")
    header = read_header(path)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert header.data_start == 8 + length
    assert header.metadata == {"format": "pt", "note": "hello"}
    assert header.duplicate_keys == []
    by_name = {e.name: e for e in header.entries}
    assert set(by_name) == set(arrays)
    dtypes = {"b.weight": "F32", "a.bias": "I64", "c.half": "F16", "scalar": "U8"}
    for name, array in arrays.items():
        e = by_name[name]
        assert e.dtype == dtypes[name]
        assert e.shape == array.shape
        # the span is absolute: slicing the file there gives exactly the tensor's bytes
        assert raw[e.span.start : e.span.end] == array.tobytes()


def test_empty_header_and_zero_sized_tensors_are_valid(tmp_path: Path) -> None:
    empty = raw_safetensors(tmp_path / "empty.safetensors", {})
    assert library_opens(empty)
    assert read_header(empty).entries == []

    header = {"z": entry("F32", [0, 4], 0, 0), "a": entry("U8", [2], 0, 2)}
    path = raw_safetensors(tmp_path / "zero.safetensors", header, b"xy")
    assert library_opens(path)
    assert {e.name: e.shape for e in read_header(path).entries} == {"z": (0, 4), "a": (2,)}


def test_metadata_null_is_accepted_like_the_loader(tmp_path: Path) -> None:
    header = {"__metadata__": None, "a": entry("U8", [2], 0, 2)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"xy")
    assert library_opens(path)
    assert read_header(path).metadata == {}


def test_unknown_fields_in_an_entry_are_ignored_like_the_loader(tmp_path: Path) -> None:
    header = {"a": {**entry("U8", [2], 0, 2), "comment": {"x": 1}}}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"xy")
    assert library_opens(path)
    assert [e.name for e in read_header(path).entries] == ["a"]


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes"),
    [("F4", [4], 2), ("F6_E2M3", [4], 3), ("F8_E8M0", [3], 3), ("BF16", [2], 4), ("C64", [1], 8)],
)
def test_newer_dtypes_including_sub_byte_ones(
    tmp_path: Path, dtype: str, shape: list[int], nbytes: int
) -> None:
    path = raw_safetensors(
        tmp_path / "m.safetensors", {"a": entry(dtype, shape, 0, nbytes)}, b"\0" * nbytes
    )
    assert library_opens(path)
    (e,) = read_header(path).entries
    assert (e.dtype, e.shape, e.span.length) == (dtype, tuple(shape), nbytes)


# -- every rule of the loader ----------------------------------------------------------------------


def test_file_shorter_than_the_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x10\0\0")
    refused(path, "too short")


def test_header_length_past_end_of_file(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", {}, length=4096)
    refused(path, "past the end of the file")


def test_header_length_claim_over_100_mb_is_refused_before_reading(tmp_path: Path) -> None:
    # a small file claiming a 100,000,001-byte header: refused on the claim alone
    path = raw_safetensors(tmp_path / "m.safetensors", {}, length=MAX_HEADER_BYTES + 1)
    refused(path, "exceeds the loader's limit")


def test_header_at_the_size_limit_is_judged_on_its_content(tmp_path: Path) -> None:
    # exactly 100,000,000 is allowed by the loader; the claim alone must not be refused
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES) + b"{}")
    with pytest.raises(FormatError, match="past the end"):
        read_header(path)


def test_bad_utf8(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", b'{"\xff\xfe":{}}')
    refused(path, "UTF-8")


def test_invalid_json(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", b'{"a": ')
    refused(path, "invalid JSON")


@pytest.mark.parametrize("header", [b"[]", b'"text"', b"123", b"\x0c{}"])
def test_header_that_is_not_an_object(tmp_path: Path, header: bytes) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", header)
    refused(path, "not start with|not an object")


def test_nan_constant_is_not_json(tmp_path: Path) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", b'{"a":{"dtype":"U8","shape":[NaN]}}')
    refused(path, "invalid JSON|not valid JSON")


@pytest.mark.parametrize("dtype", ["F128", "float32", "C128", "F8_E4M3FN", ""])
def test_unknown_dtype(tmp_path: Path, dtype: str) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", {"a": entry(dtype, [1], 0, 4)}, b"\0" * 4)
    refused(path, "unknown dtype")


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 12)
    refused(path, "overlaps")


def test_two_names_on_the_same_bytes_is_an_overlap(tmp_path: Path) -> None:
    # the only way a safetensors file could express a tie; the format forbids it
    header = {"embed": entry("F32", [2], 0, 8), "head": entry("F32", [2], 0, 8)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 8)
    refused(path, "overlaps")


def test_gap_between_tensors(tmp_path: Path) -> None:
    header = {"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 12)
    refused(path, "belong to no tensor")


def test_gap_before_the_first_tensor(tmp_path: Path) -> None:
    header = {"a": entry("F32", [1], 4, 8)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 8)
    refused(path, "belong to no tensor")


def test_trailing_bytes_after_the_last_tensor(tmp_path: Path) -> None:
    header = {"a": entry("F32", [1], 0, 4)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 5)
    refused(path, "trailing bytes")


def test_data_shorter_than_the_offsets_truncated(tmp_path: Path) -> None:
    header = {"a": entry("F32", [4], 0, 16)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 10)
    refused(path, "truncated")


@pytest.mark.parametrize(
    ("shape", "offsets"),
    [([3], [0, 8]), ([2, 2], [0, 12]), ([], [0, 8]), ([0], [0, 4])],
)
def test_shape_and_byte_size_disagree(tmp_path: Path, shape: list[int], offsets: list[int]) -> None:
    header = {"a": entry("F32", shape, *offsets)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * offsets[1])
    refused(path, "needs .* bytes")


def test_sub_byte_dtype_not_ending_on_a_byte(tmp_path: Path) -> None:
    header = {"a": entry("F4", [3], 0, 2)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0" * 2)
    refused(path, "whole bytes")


@pytest.mark.parametrize(
    "bad",
    [
        {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]},
        {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]},
        {"dtype": "F32", "shape": [1]},
        {"dtype": "F32", "data_offsets": [0, 4]},
        {"shape": [1], "data_offsets": [0, 4]},
        [0, 4],
    ],
)
def test_malformed_entries(tmp_path: Path, bad: object) -> None:
    path = raw_safetensors(tmp_path / "m.safetensors", {"a": bad}, b"\0" * 4)
    refused(path, "tensor 'a'")


def test_negative_zero_is_not_a_size(tmp_path: Path) -> None:
    # JSON -0 is an integer 0 to Python, a float to the Rust loader, which refuses it
    raw = b'{"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}'
    path = raw_safetensors(tmp_path / "m.safetensors", raw)
    refused(path, "tensor 'a'")


def test_sizes_beyond_usize_are_refused(tmp_path: Path) -> None:
    raw = b'{"a":{"dtype":"U8","shape":[0,18446744073709551616],"data_offsets":[0,0]}}'
    path = raw_safetensors(tmp_path / "m.safetensors", raw)
    refused(path, "tensor 'a'")


@pytest.mark.parametrize("metadata", [{"a": 1}, ["format", "pt"], "pt", {"a": None}])
def test_metadata_must_map_strings_to_strings(tmp_path: Path, metadata: object) -> None:
    header = {"__metadata__": metadata, "a": entry("U8", [1], 0, 1)}
    path = raw_safetensors(tmp_path / "m.safetensors", header, b"\0")
    refused(path, "__metadata__")


def test_repeated_field_inside_an_entry_is_refused(tmp_path: Path) -> None:
    raw = b'{"a":{"dtype":"F32","dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
    path = raw_safetensors(tmp_path / "m.safetensors", raw, b"xy")
    refused(path, "appears more than once")


def test_repeated_metadata_object_is_refused(tmp_path: Path) -> None:
    raw = (
        b'{"__metadata__":{"k":"1"},"__metadata__":{"j":"2"},'
        b'"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
    )
    path = raw_safetensors(tmp_path / "m.safetensors", raw, b"xy")
    refused(path, "__metadata__")


def test_repeated_metadata_key_keeps_the_last_like_the_loader(tmp_path: Path) -> None:
    raw = b'{"__metadata__":{"k":"1","k":"2"},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}'
    path = raw_safetensors(tmp_path / "m.safetensors", raw, b"xy")
    assert library_opens(path)
    header = read_header(path)
    assert header.metadata == {"k": "2"}
    assert header.duplicate_keys == []


# -- duplicate tensor names: the one thing the loader accepts silently -----------------------------


def test_duplicate_tensor_name_is_accepted_by_the_loader_but_reported_tc006(
    tmp_path: Path,
) -> None:
    raw = (
        b'{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
        b'"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}'
    )
    path = raw_safetensors(tmp_path / "model.safetensors", raw, b"\x01\x02")
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        assert list(f.keys()) == ["w"]
        assert f.get_tensor("w").dtype == np.int8  # the last entry won, silently
    header = read_header(path)
    assert header.duplicate_keys == ["w"]
    assert [(e.name, e.dtype) for e in header.entries] == [("w", "I8")]
    report = tiecheck.inspect(path)
    tc006 = findings_with(report, "TC006")
    assert len(tc006) == 1
    assert tc006[0].keys == ("w",)
    assert tc006[0].severity.value == "error"
    assert "TC001" not in codes(report)


# -- property tests: tiecheck's verdict is the loader's verdict ------------------------------------

DTYPES = ["F32", "F16", "BF16", "U8", "I64", "BOOL", "F4", "F8_E4M3", "F6_E3M2", "C64", "X9"]
ITEM_BITS = {
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "U8": 8,
    "I64": 64,
    "BOOL": 8,
    "F4": 4,
    "F8_E4M3": 8,
    "F6_E3M2": 6,
    "C64": 64,
    "X9": 8,
}


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A header and data buffer: mostly valid, with one random corruption half of the time."""
    count = draw(st.integers(0, 4))
    names = draw(st.lists(st.sampled_from("abcdefg"), min_size=count, max_size=count, unique=True))
    entries: dict[str, dict] = {}
    position = 0
    for name in names:
        dtype = draw(st.sampled_from(DTYPES[:-1]))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        numel = int(np.prod(shape)) if shape else 1
        bits = numel * ITEM_BITS[dtype]
        if bits % 8:
            shape = [*shape, 8] if numel else shape
            numel = int(np.prod(shape)) if shape else 1
            bits = numel * ITEM_BITS[dtype]
        size = bits // 8
        entries[name] = entry(dtype, shape, position, position + size)
        position += size
    data = bytes(draw(st.binary(min_size=position, max_size=position)))
    header: dict = {}
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    header.update(entries)

    mutation = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "none",
                "shift-begin",
                "shift-end",
                "shape",
                "dtype",
                "unknown-dtype",
                "data-short",
                "data-long",
                "swap-offsets",
                "metadata",
                "reorder",
            ]
        )
    )
    names = list(entries)
    if mutation in ("shift-begin", "shift-end", "shape", "dtype", "unknown-dtype") and names:
        target = entries[draw(st.sampled_from(names))]
        delta = draw(st.sampled_from([-2, -1, 1, 3]))
        if mutation == "shift-begin":
            target["data_offsets"][0] = max(0, target["data_offsets"][0] + delta)
        elif mutation == "shift-end":
            target["data_offsets"][1] = max(0, target["data_offsets"][1] + delta)
        elif mutation == "shape":
            target["shape"] = [*target["shape"], draw(st.integers(0, 3))]
        elif mutation == "dtype":
            target["dtype"] = draw(st.sampled_from(DTYPES[:-1]))
        else:
            target["dtype"] = "X9"
    elif mutation == "data-short" and data:
        data = data[: -draw(st.integers(1, len(data)))]
    elif mutation == "data-long":
        data += b"\0" * draw(st.integers(1, 9))
    elif mutation == "swap-offsets" and len(names) >= 2:
        a, b = draw(st.permutations(names))[:2]
        entries[a]["data_offsets"], entries[b]["data_offsets"] = (
            entries[b]["data_offsets"],
            entries[a]["data_offsets"],
        )
    elif mutation == "metadata":
        header["__metadata__"] = draw(
            st.sampled_from([None, {}, {"a": "b"}, {"a": 1}, [], "x", {"a": None}])
        )
    elif mutation == "reorder":
        header = dict(reversed(list(header.items())))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * draw(st.integers(0, 9))
    return raw, data


def _verdicts(raw: bytes, data: bytes) -> tuple[bool, bool]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        try:
            read_header(path)
            ours = True
        except FormatError:
            ours = False
        return ours, library_opens(path)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_tiecheck_accepts_exactly_what_safe_open_opens(case: tuple[bytes, bytes]) -> None:
    raw, data = case
    ours, library = _verdicts(raw, data)
    assert ours == library, f"tiecheck {'accepts' if ours else 'refuses'}, safe_open disagrees"


@settings(max_examples=examples(150), deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_after_the_prefix_never_crash_and_match_the_loader(junk: bytes) -> None:
    ours, library = _verdicts(junk, b"")
    assert ours == library


def test_parse_header_is_pure_bytes_in_outcome_out() -> None:
    # the remote reader feeds parse_header the bytes of a range request: no file needed
    raw = json.dumps({"a": entry("U8", [3], 0, 3)}).encode()
    header = parse_header(raw, file_size=8 + len(raw) + 3)
    assert [(e.name, e.span.start, e.span.end) for e in header.entries] == [
        ("a", 8 + len(raw), 8 + len(raw) + 3)
    ]
    with pytest.raises(FormatError, match="trailing"):
        parse_header(raw, file_size=8 + len(raw) + 4)


@pytest.mark.parametrize("space", [b" ", b"\n", b"\t", b"\r\n"])
def test_json_whitespace_before_the_object_is_accepted_like_the_loader(
    tmp_path: Path, space: bytes
) -> None:
    raw = space + json.dumps({"a": entry("U8", [1], 0, 1)}).encode()
    path = raw_safetensors(tmp_path / "m.safetensors", raw, b"\0")
    assert library_opens(path)
    assert [e.name for e in read_header(path).entries] == ["a"]
