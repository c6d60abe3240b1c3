"""PyTorch pickles read without torch and without executing anything.

Files are written by ``torch.save`` itself (zip and legacy formats) into ``tmp_path``; the
expected names, dtypes, shapes and bytes come from the tensors that were saved, never from
tiecheck's own output. Hostile pickles are built from opcodes and must never run: each carries
a command that would create a marker file, and the marker must not appear.
"""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiecheck
from core_helpers import FIXTURES, codes, examples, findings_with, run_cli, serious, write_config
from tiecheck.analysis.sharing import SharingKind
from tiecheck.errors import FormatError, UnsafePickleError
from tiecheck.model import FileFormat
from tiecheck.readers.pickle_format import read_pickle
from tiecheck.readers.tensor_data import TensorData

torch = pytest.importorskip("torch")

LEGACY = [False, True]
FORMAT_IDS = ["zip", "legacy"]

MARKER = "tiecheck-hostile-marker"


def save(path: Path, obj: object, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def tensor_bytes(t: torch.Tensor) -> bytes:
    """C-order bytes of a tensor, whatever its dtype (viewed as raw uint8)."""
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def file_bytes(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start)


# -- plain state dicts -----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
def test_state_dict_names_dtypes_shapes_and_bytes(tmp_path: Path, legacy: bool) -> None:
    g = torch.Generator().manual_seed(0)
    sd = {
        "model.embed_tokens.weight": torch.randn(8, 4, generator=g),
        "model.norm.weight": torch.randn(4, generator=g).half(),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=g).bfloat16(),
        "model.step": torch.tensor(17, dtype=torch.int64),
        "model.mask": torch.tensor([True, False, True]),
    }
    path = save(tmp_path / "m.bin", sd, legacy)
    ckpt = read_pickle(path)
    assert ckpt.format is (FileFormat.PYTORCH_LEGACY if legacy else FileFormat.PYTORCH_ZIP)
    assert ckpt.container is None and ckpt.prefix == ""
    by_name = {e.name: e for e in ckpt.entries}
    assert set(by_name) == set(sd)
    expected_dtype = {
        torch.float32: "F32",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.bool: "BOOL",
    }
    for name, t in sd.items():
        e = by_name[name]
        assert e.dtype == expected_dtype[t.dtype]
        assert e.shape == tuple(t.shape)
        assert e.span is not None
        assert file_bytes(path, e.span.start, e.span.end) == tensor_bytes(t)


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
@pytest.mark.parametrize(
    ("dtype", "code"),
    [
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
        ("bfloat16", "BF16"),
        ("uint16", "U16"),
        ("complex64", "C64"),
    ],
)
def test_dtypes_on_untyped_storages(tmp_path: Path, legacy: bool, dtype: str, code: str) -> None:
    # fp8 and the unsigned types have no typed storage class: torch pickles an
    # UntypedStorage and passes the dtype to _rebuild_tensor_v3
    t = torch.tensor([[0.5, -1.0, 2.0], [0.25, 4.0, -0.5]]).to(getattr(torch, dtype))
    path = save(tmp_path / "m.pt", {"w": t, "other": torch.ones(2)}, legacy)
    entries = {e.name: e for e in read_pickle(path).entries}
    e = entries["w"]
    assert (e.dtype, e.shape) == (code, (2, 3))
    assert file_bytes(path, e.span.start, e.span.end) == tensor_bytes(t)


# -- containers and wrapper prefixes ---------------------------------------------------------------


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
@pytest.mark.parametrize("container", ["state_dict", "model", "module", "model_state_dict"])
def test_training_checkpoint_containers(tmp_path: Path, legacy: bool, container: str) -> None:
    sd = {"a.weight": torch.ones(2, 2), "b.weight": torch.zeros(3)}
    obj = {container: sd, "epoch": 4, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    ckpt = read_pickle(save(tmp_path / "last.ckpt", obj, legacy))
    assert ckpt.container == container
    assert sorted(e.name for e in ckpt.entries) == ["a.weight", "b.weight"]
    assert sorted(e.stored_name for e in ckpt.entries) == [
        f"{container}.a.weight",
        f"{container}.b.weight",
    ]


def test_nested_objects_are_flattened(tmp_path: Path) -> None:
    obj = {"models": [{"enc": {"w": torch.ones(2)}}, {"dec": {"w": torch.zeros(2)}}]}
    ckpt = read_pickle(save(tmp_path / "x.pt", obj))
    assert ckpt.container == "(nested)"
    assert sorted(e.name for e in ckpt.entries) == ["models.0.enc.w", "models.1.dec.w"]


@pytest.mark.parametrize(
    ("prefix", "stripped"),
    [
        ("module.", "module."),
        ("_orig_mod.", "_orig_mod."),
        ("_fsdp_wrapped_module.", "_fsdp_wrapped_module."),
        ("module._orig_mod.", "module._orig_mod."),
    ],
)
def test_wrapper_prefixes_are_removed(tmp_path: Path, prefix: str, stripped: str) -> None:
    sd = {
        f"{prefix}model.embed_tokens.weight": torch.ones(4, 2),
        f"{prefix}lm_head.weight": torch.zeros(4, 2),
    }
    ckpt = read_pickle(save(tmp_path / "m.pt", sd))
    assert ckpt.prefix == stripped
    assert sorted(e.name for e in ckpt.entries) == ["lm_head.weight", "model.embed_tokens.weight"]
    assert all(e.stored_name.startswith(prefix) for e in ckpt.entries)


def test_prefix_kept_when_not_every_name_has_it(tmp_path: Path) -> None:
    sd = {"module.a": torch.ones(1), "b": torch.ones(1)}
    ckpt = read_pickle(save(tmp_path / "m.pt", sd))
    assert ckpt.prefix == ""
    assert sorted(e.name for e in ckpt.entries) == ["b", "module.a"]


def test_lightning_fixture_reads_through_container_and_prefix(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "lightning-ckpt")
    names = {t.name for t in report.checkpoint.tensors}
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= names
    assert not any(n.startswith(("module.", "state_dict.")) for n in names)
    assert all(t.stored_name.startswith("state_dict.module.") for t in report.checkpoint.tensors)
    assert any("'state_dict'" in n for n in report.notes)
    assert any("'module.'" in n for n in report.notes)
    # Llama, untied, head stored with its own values: nothing wrong
    assert report.verdict.value == "untied"
    assert not [f for f in report.findings if f.severity.value != "info"]


# -- shared storages and views ---------------------------------------------------------------------


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
def test_tied_parameters_share_one_storage(tmp_path: Path, legacy: bool) -> None:
    emb = torch.randn(8, 4)
    sd = {
        "model.embed_tokens.weight": emb,
        "lm_head.weight": emb,
        "model.norm.weight": torch.ones(4),
    }
    path = save(tmp_path / "pytorch_model.bin", sd, legacy)
    ckpt = read_pickle(path)
    keys = {e.name: e.storage.key for e in ckpt.entries}
    assert keys["model.embed_tokens.weight"] == keys["lm_head.weight"] != keys["model.norm.weight"]

    write_config(tmp_path, model_type="qwen2", tie_word_embeddings=True)
    report = tiecheck.inspect(tmp_path)
    (shared,) = report.shared_storage
    assert shared.kind is SharingKind.ALIAS
    assert set(shared.keys) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert codes(report) == {"TC109"}
    (group,) = report.tie_groups
    assert group.state.value == "shared-storage"
    assert report.verdict.value == "tied"
    # the head is the same bytes, so it adds nothing on disk
    assert group.nbytes == emb.numel() * 4


def test_fused_qkv_slices_are_disjoint_views_not_ties(tmp_path: Path) -> None:
    qkv = torch.randn(12, 4)
    sd = {"q.weight": qkv[0:4], "k.weight": qkv[4:8], "v.weight": qkv[8:12]}
    path = save(tmp_path / "m.bin", sd)
    entries = {e.name: e for e in read_pickle(path).entries}
    assert len({e.storage.key for e in entries.values()}) == 1
    assert [entries[n].storage.offset for n in ("q.weight", "k.weight", "v.weight")] == [0, 16, 32]
    for name, t in sd.items():  # contiguous slices: directly addressable
        e = entries[name]
        assert file_bytes(path, e.span.start, e.span.end) == tensor_bytes(t)
    report = tiecheck.inspect(path)
    (shared,) = report.shared_storage
    assert shared.kind is SharingKind.DISJOINT
    (tc110,) = findings_with(report, "TC110")
    assert set(tc110.keys) == {"q.weight", "k.weight", "v.weight"}
    assert "TC109" not in codes(report)


def test_overlapping_and_transposed_views(tmp_path: Path) -> None:
    w = torch.randn(4, 6)
    sd = {"a": w, "a_t": w.t(), "tail": w[1:]}
    report = tiecheck.inspect(save(tmp_path / "m.bin", sd))
    kinds = {s.kind for s in report.shared_storage}
    assert kinds == {SharingKind.OVERLAPPING}
    (tc110,) = findings_with(report, "TC110")
    assert set(tc110.keys) == {"a", "a_t", "tail"}
    assert "overlapping" in tc110.message


def test_pickle_shared_storage_fixture(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "pickle-shared-storage")
    assert report.checkpoint.files["pytorch_model.bin"].format is FileFormat.PYTORCH_ZIP
    (tc109,) = findings_with(report, "TC109")
    assert set(tc109.keys) == {"model.embed_tokens.weight", "lm_head.weight"}


def test_legacy_fixture_keeps_the_tie(fixtures_dir: Path) -> None:
    path = fixtures_dir / "legacy-pickle" / "pytorch_model.bin"
    ckpt = read_pickle(path)
    assert ckpt.format is FileFormat.PYTORCH_LEGACY
    # torch agrees: loaded with weights_only, the two names come back on one storage
    loaded = torch.load(path, weights_only=True)
    wte, head = loaded["transformer.wte.weight"], loaded["lm_head.weight"]
    assert wte.untyped_storage().data_ptr() == head.untyped_storage().data_ptr()
    keys = {e.name: e.storage.key for e in ckpt.entries}
    assert keys["transformer.wte.weight"] == keys["lm_head.weight"]
    for e in ckpt.entries:
        assert file_bytes(path, e.span.start, e.span.end) == tensor_bytes(loaded[e.name])


# -- non-contiguous tensors are compared in C order ------------------------------------------------


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
@pytest.mark.parametrize("diverged", [False, True], ids=["identical", "diverged"])
def test_transposed_head_is_compared_by_value(tmp_path: Path, legacy: bool, diverged: bool) -> None:
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(8, 4, generator=g)
    head_values = emb.clone()
    if diverged:
        head_values[2, 1] += 0.75
        head_values[5] -= 0.125
    head = head_values.t().contiguous().t()  # same values, column-major: stride (1, 8)
    assert head.stride() == (1, 8)
    sd = {"model.embed_tokens.weight": emb, "lm_head.weight": head}
    save(tmp_path / "pytorch_model.bin", sd, legacy)
    write_config(tmp_path, model_type="qwen2", tie_word_embeddings=True)

    report = tiecheck.inspect(tmp_path)
    entries = {t.name: t for t in report.checkpoint.tensors}
    assert entries["lm_head.weight"].span is None  # not one byte range
    with TensorData.reading(report.checkpoint) as data:
        gathered = b"".join(data.chunks(entries["lm_head.weight"], chunk=40))
    assert gathered == tensor_bytes(head)

    (group,) = report.tie_groups
    if diverged:
        assert group.state.value == "distinct"
        assert codes(report) >= {"TC102"}
        expected_max = float((head_values - emb).abs().max())
        assert group.max_abs_diff == pytest.approx(expected_max)
        expected_fraction = float((head_values != emb).float().mean())
        assert group.differing_fraction == pytest.approx(expected_fraction)
    else:
        assert group.state.value == "duplicate"
        assert "TC103" in codes(report) and "TC102" not in codes(report)


# -- hostile pickles -------------------------------------------------------------------------------


def _global_reduce(module: str, name: str, arg: str) -> bytes:
    a = arg.encode()
    return (
        b"\x80\x02c"
        + f"{module}\n{name}\n".encode()
        + b"X"
        + struct.pack("<I", len(a))
        + a
        + b"\x85R."
    )


def _stack_global_reduce(module: str, name: str, arg: str) -> bytes:
    parts = b"".join(b"X" + struct.pack("<I", len(s)) + s for s in (module.encode(), name.encode()))
    a = arg.encode()
    return b"\x80\x04" + parts + b"\x93" + b"X" + struct.pack("<I", len(a)) + a + b"\x85R."


def _inst(module: str, name: str, arg: str) -> bytes:
    a = arg.encode()
    return b"(X" + struct.pack("<I", len(a)) + a + b"i" + f"{module}\n{name}\n".encode() + b"."


def _torch_zip(data_pkl: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def _legacy(main: bytes) -> bytes:
    head = b"".join(
        pickle.dumps(x, protocol=2)
        for x in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    return head + main + pickle.dumps([], protocol=2)


def _marker_command(folder: Path) -> str:
    return f"touch {folder / MARKER}"


def test_fixture_payload_is_live_when_unpickled_naively(tmp_path: Path) -> None:
    """The hostile fixture really runs its command under plain pickle (so the tests below
    could fail): unpickle its data.pkl in a child process and watch the marker appear."""
    with zipfile.ZipFile(FIXTURES / "hostile-pickle" / "pytorch_model.bin") as z:
        (name,) = [n for n in z.namelist() if n.endswith("data.pkl")]
        data = z.read(name)
    assert b"system" in data
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / MARKER).exists()


@pytest.mark.parametrize("name", ["pytorch_model.bin", "legacy.bin"])
def test_hostile_fixtures_give_tc002_and_never_run(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)  # the payload would create the marker in the working directory
    path = fixtures_dir / "hostile-pickle" / name
    with pytest.raises(UnsafePickleError, match=r"(os|posix)\.system"):
        read_pickle(path)
    report = tiecheck.inspect(path)
    (tc002,) = findings_with(report, "TC002")
    assert tc002.severity.value == "error"
    assert tc002.file == name
    assert report.checkpoint.tensors == ()
    assert not (tmp_path / MARKER).exists()

    result = run_cli("inspect", path, "--json", cwd=tmp_path)
    assert result.code == 1
    assert [f["code"] for f in result.report()["findings"]] == ["TC002"]
    assert not (tmp_path / MARKER).exists()


PAYLOADS = {
    "os": lambda cmd: _global_reduce("os", "system", cmd),
    "posix": lambda cmd: _global_reduce("posix", "system", cmd),
    "exec": lambda cmd: _global_reduce("builtins", "exec", f"import os; os.system({cmd!r})"),
    "subprocess": lambda cmd: _global_reduce("subprocess", "getoutput", cmd),
    "stack-global": lambda cmd: _stack_global_reduce("os", "system", cmd),
    "inst": lambda cmd: _inst("os", "system", cmd),
    "torch.load": lambda cmd: _global_reduce("torch", "load", cmd),
    "near-miss": lambda cmd: _global_reduce("torch._utils", "_rebuild_tensor_v2x", cmd),
}


def test_payload_builders_are_live(tmp_path: Path) -> None:
    """Each hand-built payload runs its command under plain pickle (proof the tests can fail)."""
    for name in ("os", "exec", "stack-global", "inst"):
        folder = tmp_path / name
        folder.mkdir()
        data = PAYLOADS[name](_marker_command(folder))
        code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
        subprocess.run([sys.executable, "-c", code], input=data, check=False)
        assert (folder / MARKER).exists(), name


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_hostile_payloads_are_refused_without_running(
    tmp_path: Path, payload: str, container: str
) -> None:
    data = PAYLOADS[payload](_marker_command(tmp_path))
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(_torch_zip(data) if container == "zip" else _legacy(data))
    report = tiecheck.inspect(path)
    assert serious(report) == {"TC002"}
    assert not (tmp_path / MARKER).exists()


def test_hostile_payload_in_the_legacy_magic_position(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    path.write_bytes(PAYLOADS["os"](_marker_command(tmp_path)))
    report = tiecheck.inspect(path)
    assert serious(report) == {"TC002"}
    assert not (tmp_path / MARKER).exists()


def test_persistent_ids_other_than_storages_are_refused(tmp_path: Path) -> None:
    # BINPERSID with a ("module", ...) record, as legacy torch wrote for nn.Module classes
    data = b"\x80\x02X\x06\x00\x00\x00module\x85Q."
    path = tmp_path / "m.pt"
    path.write_bytes(_torch_zip(data))
    with pytest.raises(FormatError, match="persistent record 'module'"):
        read_pickle(path)
    assert serious(tiecheck.inspect(path)) == {"TC001"}


# -- broken files ----------------------------------------------------------------------------------


def test_truncated_zip(tmp_path: Path) -> None:
    src = save(tmp_path / "full.bin", {"w": torch.ones(64)})
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(src.read_bytes()[:-200])
    report = tiecheck.inspect(path)
    assert serious(report) == {"TC001"}


def test_truncated_legacy(tmp_path: Path) -> None:
    src = save(tmp_path / "full.bin", {"w": torch.ones(64)}, legacy=True)
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(src.read_bytes()[:-100])
    (finding,) = [f for f in tiecheck.inspect(path).findings if f.code != "TC111"]
    assert finding.code == "TC001"
    assert "truncated" in finding.message


def test_zip_missing_its_storage_record(tmp_path: Path) -> None:
    src = save(tmp_path / "full.bin", {"w": torch.ones(4)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            if not info.filename.endswith("/data/0"):
                new.writestr(info, old.read(info))
    path = tmp_path / "m.bin"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(FormatError, match="data/0"):
        read_pickle(path)


def test_big_endian_zip_is_refused(tmp_path: Path) -> None:
    src = save(tmp_path / "full.bin", {"w": torch.ones(4)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(buffer, "w") as new:
        for info in old.infolist():
            data = b"big" if info.filename.endswith("byteorder") else old.read(info)
            new.writestr(info, data)
    path = tmp_path / "m.bin"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(FormatError, match="big-endian"):
        read_pickle(path)


def test_text_file_named_bin_is_tc001(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "not-a-pickle")
    (finding,) = [f for f in report.findings if f.severity.value == "error"]
    assert finding.code == "TC001"
    assert finding.file == "pytorch_model.bin"
    assert "not a PyTorch checkpoint" in finding.message


def test_plain_pickle_of_numpy_arrays_is_not_executed(tmp_path: Path) -> None:
    # numpy arrays pickle through numpy.core.multiarray._reconstruct: not on the allow-list
    path = tmp_path / "weights.pt"
    with path.open("wb") as f:
        pickle.dump({"w": np.ones(3)}, f, protocol=2)
    assert serious(tiecheck.inspect(path)) == {"TC002"}


def _tied_module() -> torch.nn.Module:
    model = torch.nn.Module()
    model.model = torch.nn.Module()
    model.model.embed_tokens = torch.nn.Embedding(8, 4)
    model.model.norm = torch.nn.LayerNorm(4)
    model.lm_head = torch.nn.Linear(4, 8, bias=False)
    model.lm_head.weight = model.model.embed_tokens.weight
    return model


@pytest.mark.parametrize("legacy", LEGACY, ids=FORMAT_IDS)
def test_real_module_state_dict_with_metadata_and_optimizer(tmp_path: Path, legacy: bool) -> None:
    # nanoGPT / torchtitan style: {"model": state_dict (an OrderedDict with _metadata),
    # "optimizer": its state, holding tensors of its own}
    model = _tied_module()
    optimizer = torch.optim.AdamW(model.parameters())
    model.lm_head(model.model.embed_tokens(torch.tensor([1, 2]))).sum().backward()
    optimizer.step()
    state = model.state_dict()
    assert hasattr(state, "_metadata")
    obj = {"model": state, "optimizer": optimizer.state_dict(), "iter_num": 7}
    path = save(tmp_path / "ckpt.pt", obj, legacy)
    ckpt = read_pickle(path)
    assert ckpt.container == "model"
    assert sorted(e.name for e in ckpt.entries) == sorted(state)
    report = tiecheck.inspect(path)
    (tc109,) = findings_with(report, "TC109")
    assert set(tc109.keys) == {"model.embed_tokens.weight", "lm_head.weight"}


def test_parameters_pickled_as_parameters(tmp_path: Path) -> None:
    model = _tied_module()
    params = dict(model.named_parameters(remove_duplicate=False))
    params["model.norm.weight"].note = "custom attribute"  # -> _rebuild_parameter_with_state
    path = save(tmp_path / "params.pt", params)
    entries = {e.name: e for e in read_pickle(path).entries}
    assert set(entries) == set(params)
    assert entries["lm_head.weight"].storage.key == entries["model.embed_tokens.weight"].storage.key
    for name, p in params.items():
        e = entries[name]
        assert file_bytes(path, e.span.start, e.span.end) == tensor_bytes(p)


_FUZZ_BASES: dict[bool, bytes] = {}


def _fuzz_base(legacy: bool) -> bytes:
    if legacy not in _FUZZ_BASES:
        buffer = io.BytesIO()
        emb = torch.randn(8, 4)
        obj = {"state_dict": {"module.a": emb, "module.b": emb, "module.c": torch.randn(3).half()}}
        torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
        _FUZZ_BASES[legacy] = buffer.getvalue()
    return _FUZZ_BASES[legacy]


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    legacy=st.booleans(),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_damaged_pickles_are_invalid_files_never_crashes(
    legacy: bool, edits: list[tuple[float, int]], cut: float | None
) -> None:
    data = bytearray(_fuzz_base(legacy))
    for where, value in edits:
        data[int(where * len(data))] = value
    if cut is not None:
        data = data[: int(cut * len(data))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pytorch_model.bin"
        path.write_bytes(bytes(data))
        try:
            read_pickle(path)  # anything but FormatError escaping is a crash
            readable = True
        except FormatError:
            readable = False
        report = tiecheck.inspect(path)  # never raises for a file that exists
        if not readable:
            assert report.checkpoint.unreadable == {"pytorch_model.bin"}
            assert codes(report) & {"TC001", "TC002"}
        assert not (Path(folder) / MARKER).exists()


def _corrupt_zip(how: str) -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(4)}, buffer)
    data = bytearray(buffer.getvalue())
    if how == "local-name":  # the local header's file name no longer matches the directory
        at = data.index(b"/byteorder")
        data[at + 1] = 0xFF
    elif how == "compression":  # an unknown compression method in the central directory
        at = data.index(b"PK\x01\x02")
        data[at + 10 : at + 12] = struct.pack("<H", 99)
    elif how == "version":  # needs a zip version no reader has
        at = data.index(b"PK\x01\x02")
        data[at + 6 : at + 8] = struct.pack("<H", 99)
    return bytes(data)


@pytest.mark.parametrize("how", ["local-name", "compression", "version"])
def test_corrupt_zip_structures_are_tc001(tmp_path: Path, how: str) -> None:
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(_corrupt_zip(how))
    with pytest.raises(FormatError):
        read_pickle(path)
    report = tiecheck.inspect(path)
    assert serious(report) == {"TC001"}


@pytest.mark.parametrize(
    "shape",
    [(64, 100), (300, 1000)],
    ids=["beyond-the-sample-windows", "beyond-one-comparison-block"],
)
@pytest.mark.parametrize("diverged", [False, True], ids=["identical", "diverged"])
def test_transposed_copy_of_a_larger_head(
    tmp_path: Path, shape: tuple[int, int], diverged: bool
) -> None:
    # 25 KiB: larger than the three 4 KiB sample windows; 1.2 MB: larger than the 1 MiB block
    # comparisons read at a time, with rows (4000 bytes) that do not divide it
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(*shape, generator=g)
    values = emb.clone()
    if diverged:
        values[shape[0] // 2, 3] += 2.0
    head = values.t().contiguous().t()
    torch.save({"model.embed_tokens.weight": emb, "lm_head.weight": head}, tmp_path / "m.bin")
    write_config(tmp_path, model_type="qwen2", tie_word_embeddings=True)
    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    if diverged:
        assert group.state.value == "distinct"
        assert group.max_abs_diff == pytest.approx(2.0, rel=1e-6)
        assert group.differing_fraction == pytest.approx(1 / emb.numel())
        assert serious(report) == {"TC102"}
    else:
        assert group.state.value == "duplicate"
        assert serious(report) == {"TC103"}


@pytest.mark.parametrize("chunk", [4, 40, 1000, 4100, 1 << 20])
def test_strided_and_contiguous_chunks_line_up(tmp_path: Path, chunk: int) -> None:
    emb = torch.randn(50, 30)
    torch.save({"a": emb, "b": emb.t().contiguous().t()}, tmp_path / "m.bin")
    report = tiecheck.inspect(tmp_path / "m.bin", no_data=True)
    tensors = {t.name: t for t in report.checkpoint.tensors}
    assert tensors["a"].span is not None and tensors["b"].span is None
    with TensorData.reading(report.checkpoint) as data:
        a = list(data.chunks(tensors["a"], chunk))
        b = list(data.chunks(tensors["b"], chunk))
        assert [len(x) for x in a] == [len(x) for x in b]
        assert a == b
        assert data.sample(tensors["a"]) == data.sample(tensors["b"])


# -- which mapping is the state dict --------------------------------------------------------


def test_a_scalar_beside_the_state_dict_does_not_make_the_checkpoint_the_state_dict(
    tmp_path: Path,
) -> None:
    """nanoGPT's ckpt.pt: {"model": ..., "optimizer": ..., "best_val_loss": tensor(1.5)}. The
    0-d tensor at the top level must not hide the model; optimizer tensors are not weights."""
    torch = pytest.importorskip("torch")
    w = torch.randn(64, 16)
    model = {"transformer.wte.weight": w, "lm_head.weight": w, "transformer.ln_f.weight": w[0]}
    param = torch.nn.Parameter(w.clone())
    optimizer = torch.optim.AdamW([param])
    param.grad = torch.randn_like(param)
    optimizer.step()
    checkpoint = {
        "model": model,
        "optimizer": optimizer.state_dict(),
        "model_args": {"n_layer": 1},
        "iter_num": 5,
        "best_val_loss": torch.tensor(1.5),
    }
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    report = tiecheck.inspect(tmp_path / "ckpt.pt")
    assert {t.name for t in report.checkpoint.tensors} == set(model)
    assert report.checkpoint.files["ckpt.pt"].container == "model"
    assert report.verdict.value == "tied"
    assert any("also holds tensors under (top level)" in n for n in report.notes)


@pytest.mark.parametrize(
    ("layout", "container"),
    [
        ({"state_dict": "M", "state_dict_ema": "M"}, "state_dict"),
        ({"ema": "M", "optimizer": {"state": {0: {"exp_avg": "T"}}}}, "ema"),
        ({"run": {"weights": "M"}, "epoch": 3}, "run.weights"),
        ({"small": {"x": "T"}, "big": "M"}, "big"),
    ],
)
def test_the_state_dict_is_the_known_container_or_the_largest_mapping(
    tmp_path: Path, layout: dict, container: str
) -> None:
    torch = pytest.importorskip("torch")
    model = {"a.weight": torch.randn(32, 8), "b.weight": torch.randn(32, 8)}

    def build(value: object) -> object:
        if value == "M":
            return dict(model)
        if value == "T":
            return torch.randn(2)
        if isinstance(value, dict):
            return {k: build(v) for k, v in value.items()}
        return value

    torch.save(build(layout), tmp_path / "x.pt")
    report = tiecheck.inspect(tmp_path / "x.pt")
    assert report.checkpoint.files["x.pt"].container == container
    assert {t.name for t in report.checkpoint.tensors} == set(model)
