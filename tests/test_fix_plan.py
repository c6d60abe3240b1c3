"""What ``fix`` plans and writes, checked on real tiny checkpoints read back with safetensors.

Every checkpoint is built in ``tmp_path`` with safetensors' own writer (numpy) or ``torch.save``
(pickle tests only); outputs are read back with ``safe_open`` and with a plain header parser so
tensor bytes, dtypes, shapes and metadata are compared exactly.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import tiecheck
from tiecheck.analysis.ties import Verdict
from tiecheck.errors import SourceError
from tiecheck.rewrite.fix import FixResult
from tiecheck.rewrite.plan import FixRefused, build_plan, output_file_name, parse_size

EMB = "model.embed_tokens.weight"
HEAD = "lm_head.weight"
VOCAB, HIDDEN = 32, 8


# -- helpers -----------------------------------------------------------------------------------


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def llama_tensors(seed: int = 0, head: str = "copy") -> dict[str, np.ndarray]:
    """A tiny llama-shaped state dict; ``head``: copy (identical), diverged, or none."""
    r = rng(seed)
    emb = r.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    tensors = {
        EMB: emb,
        "model.layers.0.self_attn.q_proj.weight": r.standard_normal((HIDDEN, HIDDEN)).astype(
            np.float16
        ),
        "model.layers.0.mlp.up_proj.weight": r.standard_normal((16, HIDDEN)).astype(np.float32),
        "model.layers.0.counter": np.arange(5, dtype=np.int64),
        "model.layers.0.mask": np.array([1, 0, 1], dtype=np.uint8),
        "model.norm.weight": np.ones(HIDDEN, dtype=np.float32),
    }
    if head == "copy":
        tensors[HEAD] = emb.copy()
    elif head == "diverged":
        tensors[HEAD] = emb + r.standard_normal(emb.shape).astype(np.float32) * 0.1
    return tensors


def config(tied: bool | None, model_type: str = "llama", **extra: object) -> dict:
    data: dict = {"model_type": model_type, "architectures": ["LlamaForCausalLM"], **extra}
    if tied is not None:
        data["tie_word_embeddings"] = tied
    return data


def make_folder(
    folder: Path,
    tensors: dict[str, np.ndarray],
    cfg: dict | None,
    *,
    metadata: dict[str, str] | None = None,
    shards: list[list[str]] | None = None,
    index_metadata: dict | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (folder / "config.json").write_text(json.dumps(cfg))
    if shards is None:
        save_file(tensors, str(folder / "model.safetensors"), metadata=metadata or {"format": "pt"})
        return folder
    weight_map = {}
    n = len(shards)
    for i, names in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_file({k: tensors[k] for k in names}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, name))
    meta = {"total_size": sum(tensors[k].nbytes for k in weight_map), **(index_metadata or {})}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": meta, "weight_map": weight_map})
    )
    return folder


def read_raw(path: Path) -> tuple[dict[str, tuple[str, list[int], bytes]], dict[str, str]]:
    """{name: (dtype, shape, raw bytes)} and __metadata__, parsed by hand (independent of
    tiecheck's reader), after safetensors' own loader has accepted the file."""
    with safe_open(str(path), "np") as f:
        keys = set(f.keys())
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    assert set(header) == keys
    data = blob[8 + n :]
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        out[name] = (entry["dtype"], entry["shape"], data[begin:end])
    return out, metadata


def raw_of(arr: np.ndarray) -> bytes:
    return np.ascontiguousarray(arr).tobytes()


def all_output_tensors(folder: Path) -> dict[str, tuple[str, list[int], bytes]]:
    out: dict[str, tuple[str, list[int], bytes]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors, _ = read_raw(path)
        assert not set(tensors) & set(out), "a tensor is stored in two output files"
        out.update(tensors)
    return out


def fix(source: Path, out: Path, **kwargs: object) -> FixResult:
    return tiecheck.fix(source, output=out, **kwargs)


# -- --to tied ---------------------------------------------------------------------------------


def test_tied_drops_identical_head_and_records_alias(tmp_path: Path) -> None:
    tensors = llama_tensors(head="copy")
    src = make_folder(tmp_path / "src", tensors, config(True))
    result = fix(src, tmp_path / "out", to="tied")

    plan = result.plan
    assert plan.dropped == [(HEAD, EMB)]
    assert plan.copied == [] and plan.renamed == []
    written, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert set(written) == set(tensors) - {HEAD}
    assert metadata == {"format": "pt", HEAD: EMB}
    for name, (_dtype, shape, raw) in written.items():
        assert shape == list(tensors[name].shape)
        assert raw == raw_of(tensors[name]), name
    assert json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is True
    assert result.after is not None and result.after.verdict is Verdict.TIED
    assert plan.bytes_before - plan.bytes_after == tensors[HEAD].nbytes


def test_tied_refuses_diverged_head_and_says_what_would_be_lost(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", llama_tensors(head="diverged"), config(True))
    for dry_run in (True, False):
        with pytest.raises(FixRefused) as e:
            tiecheck.fix(src, to="tied", output=tmp_path / "out", dry_run=dry_run)
        message = str(e.value)
        assert HEAD in message and EMB in message
        assert "--keep" in message and "differ" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keep", ["head", "embedding"])
def test_keep_decides_whose_values_are_stored_under_the_embedding_name(
    tmp_path: Path, keep: str
) -> None:
    tensors = llama_tensors(head="diverged")
    src = make_folder(tmp_path / "src", tensors, config(True))
    result = fix(src, tmp_path / "out", to="tied", keep=keep)

    written, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert HEAD not in written
    expected = tensors[HEAD] if keep == "head" else tensors[EMB]
    assert written[EMB][2] == raw_of(expected)
    assert metadata[HEAD] == EMB
    if keep == "head":
        assert (HEAD, EMB) in result.plan.renamed
    else:
        assert result.plan.dropped == [(HEAD, EMB)]
    assert result.after is not None and result.after.verdict is Verdict.TIED
    assert not [f.code for f in result.after.findings if f.severity.value == "error"]


def test_tied_with_head_missing_under_untied_config_changes_only_the_config(
    tmp_path: Path,
) -> None:
    """TC101: the weights are already in tied form; flipping the flag is the whole fix."""
    tensors = llama_tensors(head="none")
    src = make_folder(tmp_path / "src", tensors, config(False))
    assert "TC101" in [f.code for f in tiecheck.inspect(src).findings]
    result = fix(src, tmp_path / "out", to="tied")

    assert result.plan.dropped == [] and result.plan.copied == [] and result.plan.renamed == []
    assert result.plan.config_edits == ["tie_word_embeddings: false -> true"]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        src / "model.safetensors"
    ).read_bytes()
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == config(True)
    assert result.after is not None and result.after.verdict is Verdict.TIED


def test_tied_with_embedding_missing_stores_head_under_embedding_name(tmp_path: Path) -> None:
    """TC104: the head is the only copy; it must survive under the name loaders tie to."""
    tensors = llama_tensors(head="copy")
    head = tensors.pop(EMB)
    tensors[HEAD] = head
    src = make_folder(tmp_path / "src", tensors, config(True))
    assert "TC104" in [f.code for f in tiecheck.inspect(src).findings]
    result = fix(src, tmp_path / "out", to="tied")

    written, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert HEAD not in written and written[EMB][2] == raw_of(head)
    assert metadata[HEAD] == EMB
    assert result.after is not None and result.after.verdict is Verdict.TIED


def test_tied_keeps_one_copy_of_a_three_way_seq2seq_group(tmp_path: Path) -> None:
    """BART layout with every alias stored (old conversions): only model.shared survives."""
    r = rng(3)
    shared = r.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    names = [
        "model.shared.weight",
        "model.encoder.embed_tokens.weight",
        "model.decoder.embed_tokens.weight",
        "lm_head.weight",
    ]
    tensors = {n: shared.copy() for n in names}
    tensors["final_logits_bias"] = np.zeros((1, VOCAB), dtype=np.float32)
    cfg = {"model_type": "bart", "architectures": ["BartForConditionalGeneration"]}
    src = make_folder(tmp_path / "src", tensors, cfg)
    result = fix(src, tmp_path / "out", to="tied")

    written, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert set(written) == {"model.shared.weight", "final_logits_bias"}
    assert {k: v for k, v in metadata.items() if k != "format"} == dict.fromkeys(
        names[1:], "model.shared.weight"
    )
    out_cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert out_cfg["tie_word_embeddings"] is True  # absent before: now explicit
    assert result.after is not None and result.after.verdict is Verdict.TIED


def test_tie_flag_is_set_at_every_level_that_declares_it(tmp_path: Path) -> None:
    cfg = {
        "model_type": "qwen2_vl",
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "tie_word_embeddings": False,
        "text_config": {"model_type": "qwen2", "tie_word_embeddings": False, "hidden_size": 8},
        "vision_config": {"depth": 1},
    }
    tensors = llama_tensors(head="copy")
    src = make_folder(tmp_path / "src", tensors, cfg)
    fix(src, tmp_path / "tied", to="tied")
    out = json.loads((tmp_path / "tied" / "config.json").read_text())
    assert out["tie_word_embeddings"] is True
    assert out["text_config"]["tie_word_embeddings"] is True
    assert out["text_config"]["hidden_size"] == 8 and out["vision_config"] == {"depth": 1}
    assert "tie_word_embeddings" not in out["vision_config"]

    fix(tmp_path / "tied", tmp_path / "untied", to="untied")
    back = json.loads((tmp_path / "untied" / "config.json").read_text())
    assert back == cfg


# -- --to untied -------------------------------------------------------------------------------


def test_untied_stores_a_byte_copy_of_the_embedding_and_drops_stale_alias_records(
    tmp_path: Path,
) -> None:
    tensors = llama_tensors(head="none")
    src = make_folder(
        tmp_path / "src",
        tensors,
        config(True),
        metadata={"format": "pt", HEAD: EMB, "note": "kept as is"},
    )
    result = fix(src, tmp_path / "out", to="untied")

    assert result.plan.copied == [(HEAD, EMB)]
    written, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert written[HEAD] == written[EMB]
    assert written[HEAD][2] == raw_of(tensors[EMB])
    assert metadata == {"format": "pt", "note": "kept as is"}
    assert (
        json.loads((tmp_path / "out" / "config.json").read_text())["tie_word_embeddings"] is False
    )
    assert result.after is not None and result.after.verdict is Verdict.UNTIED


def test_untied_stores_every_absent_alias_explicitly(tmp_path: Path) -> None:
    """transformers 5.x unties a BART's encoder/decoder embeddings and BERT's decoder bias
    together with the head when the flag is false: each must be stored, or it loads at random
    (see tests/interop/test_fix_interop.py)."""
    r = rng(9)
    shared = r.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    bart = make_folder(
        tmp_path / "bart",
        {"model.shared.weight": shared, "final_logits_bias": np.zeros((1, VOCAB), "f4")},
        {"model_type": "bart", "architectures": ["BartForConditionalGeneration"]},
    )
    result = fix(bart, tmp_path / "bart-untied", to="untied")
    aliases = ["model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"]
    assert sorted(result.plan.copied) == sorted(
        (name, "model.shared.weight") for name in [*aliases, HEAD]
    )
    written, _ = read_raw(tmp_path / "bart-untied" / "model.safetensors")
    for name in [*aliases, HEAD]:
        assert written[name][2] == raw_of(shared)

    bias = r.standard_normal(VOCAB).astype(np.float32)
    bert = make_folder(
        tmp_path / "bert",
        {"bert.embeddings.word_embeddings.weight": shared, "cls.predictions.bias": bias},
        {"model_type": "bert", "architectures": ["BertForMaskedLM"]},
    )
    result = fix(bert, tmp_path / "bert-untied", to="untied")
    assert ("cls.predictions.decoder.bias", "cls.predictions.bias") in result.plan.copied
    written, _ = read_raw(tmp_path / "bert-untied" / "model.safetensors")
    assert written["cls.predictions.decoder.bias"][2] == raw_of(bias)
    assert written["cls.predictions.decoder.weight"][2] == raw_of(shared)
    assert len(written) == 4

    # And back: --to tied drops every copy again, the bias alias included.
    fix(tmp_path / "bert-untied", tmp_path / "bert-tied", to="tied")
    written, metadata = read_raw(tmp_path / "bert-tied" / "model.safetensors")
    assert set(written) == {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias"}
    assert metadata["cls.predictions.decoder.bias"] == "cls.predictions.bias"


def test_untied_with_diverged_copies_keeps_both_and_changes_only_the_config(
    tmp_path: Path,
) -> None:
    src = make_folder(tmp_path / "src", llama_tensors(head="diverged"), config(True))
    result = fix(src, tmp_path / "out", to="untied")

    assert not result.plan.changes_weights
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (
        src / "model.safetensors"
    ).read_bytes()
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == config(False)
    assert result.after is not None and result.after.verdict is Verdict.UNTIED


def test_untied_with_embedding_missing_copies_the_head_into_the_embedding(tmp_path: Path) -> None:
    tensors = llama_tensors(head="copy")
    del tensors[EMB]
    src = make_folder(tmp_path / "src", tensors, config(True))
    result = fix(src, tmp_path / "out", to="untied")
    written, _ = read_raw(tmp_path / "out" / "model.safetensors")
    assert written[EMB][2] == written[HEAD][2] == raw_of(tensors[HEAD])
    assert result.after is not None and result.after.verdict is Verdict.UNTIED


def t5_tensors() -> dict[str, np.ndarray]:
    r = rng(5)
    return {
        "shared.weight": r.standard_normal((VOCAB, HIDDEN)).astype(np.float32),
        "encoder.final_layer_norm.weight": np.ones(HIDDEN, dtype=np.float32),
        "decoder.final_layer_norm.weight": np.ones(HIDDEN, dtype=np.float32),
    }


def test_t5_cannot_be_untied_because_the_flag_rescales_output(tmp_path: Path) -> None:
    cfg = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}
    src = make_folder(tmp_path / "src", t5_tensors(), cfg)
    with pytest.raises(FixRefused, match="rescales"):
        tiecheck.fix(src, to="untied", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # Already tied: --to tied is allowed and keeps the model as it is.
    result = fix(src, tmp_path / "tied", to="tied")
    written, _ = read_raw(tmp_path / "tied" / "model.safetensors")
    assert set(written) == set(t5_tensors())
    assert result.after is not None and result.after.verdict is Verdict.TIED


# -- formats, shards and everything else that comes along --------------------------------------


def test_tensors_outside_tie_groups_dtypes_shapes_and_metadata_are_preserved(
    tmp_path: Path,
) -> None:
    r = rng(7)
    tensors = llama_tensors(head="copy")
    tensors["model.layers.0.bf16_as_u16"] = r.integers(0, 2**16, (3, 5), dtype=np.uint16)
    tensors["model.layers.0.f64"] = r.standard_normal((2, 3, 4))
    tensors["model.layers.0.i8"] = r.integers(-128, 127, (7,), dtype=np.int8)
    tensors["model.layers.0.bool"] = np.array([True, False, True])
    tensors["model.layers.0.scalar"] = np.array(3.5, dtype=np.float32)
    src = make_folder(
        tmp_path / "src",
        tensors,
        config(True),
        metadata={"format": "pt", "producer": "unit test", "epoch": "3"},
    )
    before, _ = read_raw(src / "model.safetensors")
    for to in ("tied", "untied"):
        fix(src, tmp_path / to, to=to)
        after, metadata = read_raw(tmp_path / to / "model.safetensors")
        assert metadata["producer"] == "unit test" and metadata["epoch"] == "3"
        assert metadata["format"] == "pt"
        for name, entry in before.items():
            if name != HEAD:
                assert after[name] == entry, name


def test_format_metadata_is_set_to_pt_when_missing(tmp_path: Path) -> None:
    src = make_folder(
        tmp_path / "src", llama_tensors(head="none"), config(True), metadata={"owner": "x"}
    )
    fix(src, tmp_path / "out", to="untied")
    _, metadata = read_raw(tmp_path / "out" / "model.safetensors")
    assert metadata == {"format": "pt", "owner": "x"}


def test_sharded_input_stays_sharded_with_a_correct_index(tmp_path: Path) -> None:
    tensors = llama_tensors(head="copy")
    first = [EMB, "model.norm.weight"]
    shards = [first, [n for n in sorted(tensors) if n not in (*first, HEAD)], [HEAD]]
    src = make_folder(
        tmp_path / "src", tensors, config(True), shards=shards, index_metadata={"note": "kept"}
    )
    result = fix(src, tmp_path / "out", to="tied")

    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    on_disk = {}
    for path in out.glob("*.safetensors"):
        tensors_in, metadata = read_raw(path)
        assert HEAD not in metadata, "sharded: alias records belong in the index"
        on_disk.update(dict.fromkeys(tensors_in, path.name))
    assert index["weight_map"] == on_disk
    assert HEAD not in on_disk
    assert index["metadata"]["total_size"] == sum(tensors[n].nbytes for n in on_disk)
    assert index["metadata"][HEAD] == EMB
    assert index["metadata"]["note"] == "kept"
    # The third shard held only the head: it is not written, and the index does not name it.
    assert sorted(p.name for p in out.glob("*.safetensors")) == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
    ]
    assert (out / "model-00002-of-00003.safetensors").read_bytes() == (
        src / "model-00002-of-00003.safetensors"
    ).read_bytes()
    assert result.after is not None and result.after.verdict is Verdict.TIED
    assert tiecheck.inspect(out / "model.safetensors.index.json").verdict is Verdict.TIED


def test_untied_sharded_index_lists_the_new_head(tmp_path: Path) -> None:
    tensors = llama_tensors(head="none")
    names = sorted(tensors)
    src = make_folder(
        tmp_path / "src",
        tensors,
        config(True),
        shards=[names[:3], names[3:]],
        index_metadata={HEAD: EMB},
    )
    fix(src, tmp_path / "out", to="untied")
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert HEAD in index["weight_map"] and HEAD not in index["metadata"]
    total = 0
    for name, shard in index["weight_map"].items():
        with safe_open(str(out / shard), "np") as f:
            assert name in set(f.keys())
            total += f.get_tensor(name).nbytes
    assert index["metadata"]["total_size"] == total
    assert all_output_tensors(out)[HEAD][2] == raw_of(tensors[EMB])


def test_shards_in_a_sub_folder_keep_their_relative_names(tmp_path: Path) -> None:
    """An index may name shards as ``shards/a.safetensors``; the output must keep the layout
    (and the commit must rename inside the sub-folder, not at the top)."""
    tensors = llama_tensors(head="copy")
    src = tmp_path / "src"
    (src / "shards").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(config(True)))
    save_file({EMB: tensors[EMB]}, str(src / "shards" / "a.safetensors"))
    rest = {k: v for k, v in tensors.items() if k != EMB}
    save_file(rest, str(src / "shards" / "b.safetensors"))
    weight_map = {EMB: "shards/a.safetensors", **dict.fromkeys(rest, "shards/b.safetensors")}
    total = sum(a.nbytes for a in tensors.values())
    (src / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    result = fix(src, tmp_path / "out", to="tied")

    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {k: v for k, v in weight_map.items() if k != HEAD}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config.json",
        "model.safetensors.index.json",
        "shards/a.safetensors",
        "shards/b.safetensors",
    ]
    assert sorted(result.written) == [
        "config.json",
        "model.safetensors.index.json",
        "shards/a.safetensors",
        "shards/b.safetensors",
    ]
    written, _ = read_raw(out / "shards" / "b.safetensors")
    assert set(written) == set(rest) - {HEAD}
    assert result.after is not None and result.after.verdict is Verdict.TIED


def test_max_shard_size_reshards_into_an_indexed_set(tmp_path: Path) -> None:
    r = rng(11)
    tensors = {EMB: r.standard_normal((VOCAB, HIDDEN)).astype(np.float32)}
    for i in range(6):
        tensors[f"model.layers.{i}.mlp.weight"] = r.standard_normal((16, 16)).astype(np.float32)
    src = make_folder(tmp_path / "src", tensors, config(True))
    limit = 2 * 16 * 16 * 4  # two layer tensors per shard
    fix(src, tmp_path / "out", to="untied", max_shard_size=str(limit))

    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shard_files = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shard_files) > 2
    assert set(index["weight_map"].values()) == set(shard_files)
    n = len(shard_files)
    assert shard_files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    expected = {**tensors, HEAD: tensors[EMB]}
    sizes = {}
    for name in shard_files:
        contents, metadata = read_raw(out / name)
        assert metadata.get("format") == "pt"
        sizes[name] = sum(len(raw) for _, _, raw in contents.values())
        for key, (_, _, raw) in contents.items():
            assert index["weight_map"][key] == name
            assert raw == raw_of(expected[key])
    assert all(size <= limit or len(read_raw(out / n_)[0]) == 1 for n_, size in sizes.items())
    assert set(index["weight_map"]) == set(expected)
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in expected.values())


def test_dry_run_plans_exactly_what_a_real_run_writes(tmp_path: Path) -> None:
    tensors = llama_tensors(head="copy")
    names = sorted(tensors)
    src = make_folder(tmp_path / "src", tensors, config(True), shards=[names[:4], names[4:]])
    dry = tiecheck.fix(src, to="tied", dry_run=True)
    assert dry.target is None and dry.after is None and dry.written == []
    real = fix(src, tmp_path / "out", to="tied")

    def shape(plan):  # type: ignore[no-untyped-def]
        return [(f.name, [t.name for t in f.tensors], f.metadata) for f in plan.files]

    assert shape(dry.plan) == shape(real.plan)
    assert dry.plan.index_metadata == real.plan.index_metadata
    written = {p.name for p in (tmp_path / "out").iterdir()}
    planned = {f.name for f in dry.plan.files} | {dry.plan.index_name, "config.json"}
    assert written == planned


def test_non_weight_files_of_a_model_folder_come_along(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", llama_tensors(head="copy"), config(True))
    (src / "tokenizer.json").write_text('{"model": {"vocab": {}}}')
    (src / "generation_config.json").write_text('{"do_sample": false}')
    (src / "README.md").write_text("# tiny\n")
    (src / ".hidden").write_text("not part of the model")
    fix(src, tmp_path / "out", to="tied")
    out = tmp_path / "out"
    for name in ("tokenizer.json", "generation_config.json", "README.md"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert not (out / ".hidden").exists()
    assert not list(out.glob(".*"))  # no temporaries or journal left behind


def test_a_lone_file_source_brings_no_neighbours(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "downloads", llama_tensors(head="copy"), None)
    (src / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = tiecheck.fix(src / "model.safetensors", to="tied", output=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.safetensors"]
    assert result.plan.dropped == [(HEAD, EMB)]


def test_refuses_a_non_empty_output_folder_unless_overwrite(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", llama_tensors(head="copy"), config(True))
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(SourceError, match="not empty"):
        tiecheck.fix(src, to="tied", output=out)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    tiecheck.fix(src, to="tied", output=out, overwrite=True)
    assert (out / "mine.txt").read_text() == "precious"
    assert (out / "model.safetensors").is_file()


def test_output_equal_to_source_is_refused(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", llama_tensors(head="copy"), config(True))
    with pytest.raises(SourceError, match="in-place"):
        tiecheck.fix(src, to="tied", output=src, overwrite=True)


def test_refuses_peft_adapters(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": None})
    )
    save_file(
        {"base_model.model.lm_head.weight": np.zeros((VOCAB, HIDDEN), dtype=np.float32)},
        str(folder / "adapter_model.safetensors"),
    )
    with pytest.raises(FixRefused, match="adapter"):
        tiecheck.fix(folder, to="tied", output=tmp_path / "out")


def test_plan_refuses_tc006_ambiguous_duplicates(tmp_path: Path) -> None:
    tensors = llama_tensors(head="copy")
    src = make_folder(tmp_path / "src", tensors, config(True), shards=[[EMB, HEAD], [EMB]])
    report = tiecheck.inspect(src)
    assert "TC006" in [f.code for f in report.findings]
    with pytest.raises(FixRefused, match="TC006"):
        build_plan(report, Verdict.TIED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 * 2**30), ("1000", 1000)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_size("five gigs")


def test_output_file_names() -> None:
    assert output_file_name("pytorch_model.bin") == "model.safetensors"
    assert output_file_name("pytorch_model-00001-of-00002.bin") == (
        "model-00001-of-00002.safetensors"
    )
    assert output_file_name("model-00001-of-00002.safetensors") == (
        "model-00001-of-00002.safetensors"
    )
    assert output_file_name("consolidated.pth") == "consolidated.safetensors"


# -- PyTorch pickles ---------------------------------------------------------------------------


def test_pickle_tie_becomes_one_stored_tensor(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    emb = torch.randn(VOCAB, HIDDEN)
    state = {EMB: emb, HEAD: emb, "model.norm.weight": torch.ones(HIDDEN)}
    src = tmp_path / "src"
    src.mkdir()
    torch.save(state, src / "pytorch_model.bin")
    (src / "config.json").write_text(json.dumps(config(True)))

    result = fix(src, tmp_path / "tied", to="tied")
    out = tmp_path / "tied"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    written, metadata = read_raw(out / "model.safetensors")
    assert set(written) == {EMB, "model.norm.weight"}
    assert written[EMB][2] == emb.numpy().tobytes()
    assert metadata == {"format": "pt", HEAD: EMB}
    assert "pytorch_model.bin" in result.plan.replaced_sources

    fix(src, tmp_path / "untied", to="untied")
    written, _ = read_raw(tmp_path / "untied" / "model.safetensors")
    assert written[HEAD][2] == written[EMB][2] == emb.numpy().tobytes()


def test_pickle_views_are_copied_into_valid_safetensors(tmp_path: Path) -> None:
    """Fused qkv slices, overlapping windows and a transposed view of one storage: safetensors
    cannot share bytes, so each must be written as its own contiguous copy."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    emb = torch.randn(VOCAB, HIDDEN)
    qkv = torch.randn(3 * HIDDEN, HIDDEN)
    flat = torch.arange(40, dtype=torch.float32)
    base = torch.randn(HIDDEN, 4)
    state = {
        EMB: emb,
        HEAD: emb,
        "model.layers.0.q.weight": qkv[:HIDDEN],
        "model.layers.0.k.weight": qkv[HIDDEN : 2 * HIDDEN],
        "model.layers.0.v.weight": qkv[2 * HIDDEN :],
        "model.layers.0.window_a": flat[0:24],
        "model.layers.0.window_b": flat[16:40],
        "model.layers.0.transposed": base.t(),
        "model.layers.0.strided": flat[::4],
    }
    src = tmp_path / "src"
    src.mkdir()
    torch.save(state, src / "pytorch_model.bin")
    (src / "config.json").write_text(json.dumps(config(True)))
    for to in ("tied", "untied"):
        fix(src, tmp_path / to, to=to)
        with safe_open(str(tmp_path / to / "model.safetensors"), "pt") as f:
            keys = set(f.keys())
            for name, tensor in state.items():
                if name == HEAD and to == "tied":
                    assert name not in keys
                    continue
                got = f.get_tensor(name)
                assert got.dtype == tensor.dtype and got.shape == tensor.shape
                assert torch.equal(got, tensor), name


def test_sharded_pickles_become_sharded_safetensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    emb = torch.randn(VOCAB, HIDDEN)
    shard1 = {EMB: emb, "model.norm.weight": torch.ones(HIDDEN)}
    shard2 = {"model.layers.0.w": torch.randn(4, 4), HEAD: emb.clone()}
    src = tmp_path / "src"
    src.mkdir()
    weight_map = {}
    for i, shard in enumerate((shard1, shard2), 1):
        name = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save(shard, src / name)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for s in (shard1, shard2) for t in s.values())
    (src / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (src / "config.json").write_text(json.dumps(config(True)))

    fix(src, tmp_path / "out", to="tied")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {
        EMB: "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00001-of-00002.safetensors",
        "model.layers.0.w": "model-00002-of-00002.safetensors",
    }
    assert index["metadata"] == {"total_size": total - emb.numel() * 4, HEAD: EMB}
    contents = all_output_tensors(out)
    assert contents[EMB][2] == emb.numpy().tobytes()
    assert contents["model.layers.0.w"][2] == shard2["model.layers.0.w"].numpy().tobytes()
