"""Real index + config files of released models (tests/data/real-layouts, copied from the
shared folder), filled with tiny tensors.

For each pair, shards holding exactly the index's keys are written into ``tmp_path`` (embedding
and head a small [V, H], everything else two elements), ``total_size`` is rewritten to match
(kept a float where the original was one), the config is copied, and the folder is inspected.
The expected outcomes are the ones the layouts' README lists as "cases worth testing".
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import codes, findings_with, save_numpy, serious
from tiecheck.analysis.groups import GroupKind

V, H = 32, 8
EMBEDDING = re.compile(r"(^|\.)(embed_tokens|embed_in|word_embeddings|wte)\.weight$")
HEAD = re.compile(r"(^|\.)(lm_head|embed_out|output|ff_out)\.weight$|^layers\.33\.linear\.weight$")


@dataclass
class Pair:
    index: str
    config: str | None
    verdict: str
    serious: set[str] = field(default_factory=set)
    head: str = "different"
    """what to store for a head key: 'different' values or an 'identical' copy."""


PAIRS: dict[str, Pair] = {
    # tied, and no head in the index
    "qwen2.5-vl-3b": Pair(
        "Qwen2.5-VL-3B-Instruct__model.safetensors.index.json",
        "Qwen2.5-VL-3B-Instruct__config.json",
        "tied",
    ),
    "llama-3.2-3b-per-tensor": Pair(
        "Llama-3.2-3B-pertensor-reshard__model.safetensors.index.json",
        "Llama-3.2-3B-pertensor-reshard__config.json",
        "tied",
    ),
    "llama-3.2-3b-bin-finetune": Pair(
        "Codepy-Deepthink-3B_Llama-3.2-3B-Instruct-finetune__pytorch_model.bin.index.json",
        "Llama-3.2-3B__config.json",  # the repo has no config; its base model's
        "tied",
    ),
    "qwen3-1.7b-mlx": Pair(
        "Qwen3-1.7B-MLX-bf16__model.safetensors.index.json",
        "Qwen3-1.7B-MLX-bf16__config.json",
        "tied",
    ),
    "granite-3b-code": Pair(
        "granite-3b-code-instruct-128k__model.safetensors.index.json",
        "granite-3b-code-instruct-128k__config.json",
        "tied",
    ),
    "gemma-2b-it": Pair(
        "gemma-2b-it__model.safetensors.index.json", "gemma-2b-it__config.json", "tied"
    ),
    "gemma-2-2b-bin": Pair(
        "mithoon-2b_gemma-2-2b-finetune__pytorch_model.bin.index.json",
        "mithoon-2b_gemma-2-2b-finetune__config.json",
        "tied",
    ),
    "medgemma-27b": Pair(
        "medgemma-27b-it__model.safetensors.index.json", "medgemma-27b-it__config.json", "tied"
    ),
    "bloom-176b": Pair(
        "bloom-176b__model.safetensors.index.json", "bloom-176b__config.json", "tied"
    ),
    "mpt-7b": Pair(
        "MPT-7B-Instruct__pytorch_model.bin.index.json", "MPT-7B-Instruct__config.json", "tied"
    ),
    # untied, and a head in the index
    "llama-2-7b-bin": Pair(
        "Llama-2-7b-chat-hf__pytorch_model.bin.index.json",
        "Llama-2-7b-chat-hf__config.json",
        "untied",
    ),
    "llama-3-8b": Pair(
        "Meta-Llama-3-8B__model.safetensors.index.json", "Llama-3.1-8B__config.json", "untied"
    ),
    "llama-3.1-8b-bnb": Pair(
        "Llama-3.1-8B-Instruct-bnb__model.safetensors.index.json",
        "Llama-3.1-8B-Instruct-bnb__config.json",
        "untied",
    ),
    "llama-7b-legacy-bin": Pair(
        "llama-7b-hf-legacy__pytorch_model.bin.index.json",
        "llama-7b-hf-legacy__config.json",
        "untied",
    ),
    "mistral-7b": Pair(
        "Mistral-7B-v0.1__model.safetensors.index.json", "Mistral-7B-v0.1__config.json", "untied"
    ),
    "mistral-7b-bin": Pair(
        "Mistral-7B-v0.1__pytorch_model.bin.index.json", "Mistral-7B-v0.1__config.json", "untied"
    ),
    "devstral": Pair(
        "Devstral-Small-2507__model.safetensors.index.json",
        "Devstral-Small-2507__config.json",
        "untied",
    ),
    "qwen2-7b": Pair(
        "Qwen2-7B-Instruct__model.safetensors.index.json",
        "Qwen2-7B-Instruct__config.json",
        "untied",
    ),
    "olmocr-7b": Pair(
        "olmOCR-7B-0225-preview__model.safetensors.index.json",
        "olmOCR-7B-0225-preview__config.json",
        "untied",
    ),
    "qwen3-14b-mlx": Pair(
        "Qwen3-14B-MLX-4bit__model.safetensors.index.json",
        "Qwen3-14B-MLX-4bit__config.json",
        "untied",
    ),
    # declared tied, but a head is stored
    "locateanything-3b": Pair(
        "LocateAnything-3B__model.safetensors.index.json",
        "LocateAnything-3B__config.json",
        "inconsistent",
        {"TC102"},
    ),
    "falcon-40b-trained-head": Pair(
        "falcon-40b__pytorch_model.bin.index.json",
        "falcon-40b__config.json",
        "inconsistent",
        {"TC102"},
    ),
    "falcon-40b-copied-head": Pair(
        "falcon-40b__pytorch_model.bin.index.json",
        "falcon-40b__config.json",
        "tied",
        {"TC103"},
        head="identical",
    ),
    # untied, and no 'lm_head' key: legitimate
    "phi-2-mixformer-bin": Pair(
        "phi-2-legacy-mixformer__pytorch_model.bin.index.json",
        "phi-2-legacy-mixformer__config.json",
        "untied",
    ),
    "redpajama-7b-bin": Pair(
        "RedPajama-INCITE-7B-Base__pytorch_model.bin.index.json",
        "RedPajama-INCITE-7B-Base__config.json",
        "untied",
    ),
    "oasst-reward-model": Pair(
        "oasst-rm-2.1-pythia-1.4b__model.safetensors.index.json",
        "oasst-rm-2.1-pythia-1.4b__config.json",
        "not-applicable",
    ),
}


def synthesise(layouts: Path, pair: Pair, dest: Path) -> dict[str, np.ndarray]:
    """Write shards holding exactly the index's keys, the rewritten index and the config."""
    index_path = layouts / pair.index
    index = json.loads(index_path.read_text())
    rng = np.random.default_rng(len(index["weight_map"]))
    tensors: dict[str, np.ndarray] = {}
    embedding = None
    for key in sorted(index["weight_map"]):
        if EMBEDDING.search(key):
            tensors[key] = embedding = rng.standard_normal((V, H)).astype(np.float32)
    for key in sorted(index["weight_map"]):
        if key in tensors:
            continue
        if HEAD.search(key):
            if pair.head == "identical":
                assert embedding is not None
                tensors[key] = embedding.copy()
            else:
                tensors[key] = rng.standard_normal((V, H)).astype(np.float32)
        else:
            tensors[key] = rng.standard_normal(2).astype(np.float32)

    by_shard: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for key, shard in index["weight_map"].items():
        by_shard[shard][key] = tensors[key]
    dest.mkdir(parents=True)
    for shard, part in by_shard.items():
        if shard.endswith(".bin"):
            torch = pytest.importorskip("torch")
            torch.save({k: torch.from_numpy(v) for k, v in part.items()}, dest / shard)
        else:
            save_numpy(dest / shard, part)
    total = sum(t.nbytes for t in tensors.values())
    original = index["metadata"]["total_size"]
    index["metadata"]["total_size"] = float(total) if isinstance(original, float) else total
    (dest / index_path.name.split("__", 1)[1]).write_text(json.dumps(index, indent=2))
    if pair.config is not None:
        shutil.copyfile(layouts / pair.config, dest / "config.json")
    return tensors


@pytest.mark.parametrize("name", list(PAIRS))
def test_real_layout(real_layouts: Path, tmp_path: Path, name: str) -> None:
    pair = PAIRS[name]
    tensors = synthesise(real_layouts, pair, tmp_path / name)
    report = tiecheck.inspect(tmp_path / name)
    assert {t.name for t in report.checkpoint.tensors} == set(tensors)
    assert report.verdict.value == pair.verdict, report.findings
    assert serious(report) == pair.serious, report.findings
    assert "TC101" not in codes(report)
    assert "TC007" not in codes(report)


def test_locateanything_names_the_prefixed_pair(real_layouts: Path, tmp_path: Path) -> None:
    synthesise(real_layouts, PAIRS["locateanything-3b"], tmp_path / "m")
    report = tiecheck.inspect(tmp_path / "m")
    assert report.declared.source.endswith("text_config.tie_word_embeddings")
    (tc102,) = findings_with(report, "TC102")
    assert set(tc102.keys) == {
        "language_model.model.embed_tokens.weight",
        "language_model.lm_head.weight",
    }


def test_gemma_flag_absent_uses_the_class_default(real_layouts: Path, tmp_path: Path) -> None:
    for name in ("gemma-2b-it", "gemma-2-2b-bin", "medgemma-27b", "bloom-176b"):
        synthesise(real_layouts, PAIRS[name], tmp_path / name)
        report = tiecheck.inspect(tmp_path / name)
        assert report.declared.defaulted is True, name
        assert "TC106" in codes(report), name


def test_qwen3_mlx_head_sidecars(real_layouts: Path, tmp_path: Path) -> None:
    synthesise(real_layouts, PAIRS["qwen3-14b-mlx"], tmp_path / "m")
    report = tiecheck.inspect(tmp_path / "m")
    (group,) = [g for g in report.tie_groups if g.kind is GroupKind.HEAD]
    sidecars = {m.name: m.sidecars for m in group.group.members}
    assert sidecars == {
        "model.embed_tokens.weight": {
            ".scales": "model.embed_tokens.scales",
            ".biases": "model.embed_tokens.biases",
        },
        "lm_head.weight": {".scales": "lm_head.scales", ".biases": "lm_head.biases"},
    }


def test_phi2_head_is_the_legacy_linear_layer(real_layouts: Path, tmp_path: Path) -> None:
    synthesise(real_layouts, PAIRS["phi-2-mixformer-bin"], tmp_path / "m")
    report = tiecheck.inspect(tmp_path / "m")
    (group,) = [g for g in report.tie_groups if g.kind is GroupKind.HEAD]
    assert group.group.names == ("layers.0.wte.weight", "layers.33.linear.weight")
    assert group.stored_members == group.group.names


def test_redpajama_float_total_size_is_accepted_only_when_right(
    real_layouts: Path, tmp_path: Path
) -> None:
    pair = PAIRS["redpajama-7b-bin"]
    synthesise(real_layouts, pair, tmp_path / "m")
    index_path = tmp_path / "m" / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    assert isinstance(index["metadata"]["total_size"], float)
    report = tiecheck.inspect(tmp_path / "m")
    (group,) = [g for g in report.tie_groups if g.kind is GroupKind.HEAD]
    assert group.group.names == ("gpt_neox.embed_in.weight", "embed_out.weight")
    assert "TC007" not in codes(report)
    index["metadata"]["total_size"] += 2.0
    index_path.write_text(json.dumps(index))
    assert "TC007" in codes(tiecheck.inspect(tmp_path / "m"))


def test_falcon_shared_storage_in_one_shard_is_a_tie(real_layouts: Path, tmp_path: Path) -> None:
    # if both names were in one .bin as one storage (as torch.save writes a tied model), the
    # head is the embedding itself: TC109, not a copy
    torch = pytest.importorskip("torch")
    pair = PAIRS["falcon-40b-copied-head"]
    synthesise(real_layouts, pair, tmp_path / "m")
    index_path = tmp_path / "m" / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    first = tmp_path / "m" / index["weight_map"]["transformer.word_embeddings.weight"]
    last = tmp_path / "m" / index["weight_map"]["lm_head.weight"]
    sd = torch.load(first, weights_only=True)
    sd["lm_head.weight"] = sd["transformer.word_embeddings.weight"]
    torch.save(sd, first)
    rest = torch.load(last, weights_only=True)
    del rest["lm_head.weight"]
    torch.save(rest, last)
    index["weight_map"]["lm_head.weight"] = first.name
    index["metadata"]["total_size"] -= V * H * 4  # one storage, counted once
    index_path.write_text(json.dumps(index))
    report = tiecheck.inspect(tmp_path / "m")
    assert codes(report) == {"TC106", "TC109"}
    assert report.verdict.value == "tied"


def test_oasst_reward_model_has_no_lm_head_to_miss(real_layouts: Path, tmp_path: Path) -> None:
    synthesise(real_layouts, PAIRS["oasst-reward-model"], tmp_path / "m")
    report = tiecheck.inspect(tmp_path / "m")
    assert report.declared.has_lm_head is False
    assert "TC101" not in codes(report)


def test_bloom_merge_conflict_index_is_tc001(real_layouts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bloom"
    folder.mkdir()
    shutil.copyfile(
        real_layouts / "bloom-176b-MERGE-CONFLICT-ARTIFACT__model.safetensors.index.json",
        folder / "model.safetensors.index.json",
    )
    shutil.copyfile(real_layouts / "bloom-176b__config.json", folder / "config.json")
    report = tiecheck.inspect(folder)
    (tc001,) = findings_with(report, "TC001")
    assert tc001.file == "model.safetensors.index.json"
    assert "invalid JSON" in tc001.message
    assert report.checkpoint.tensors == ()
    assert "TC101" not in codes(report)


def test_the_copy_matches_the_shared_folder() -> None:
    """The repository's copy is the shared folder's, byte for byte, where that folder exists
    (a developer's machine); a new or changed shared file must be copied in."""
    from core_helpers import REAL_LAYOUTS, SHARED_LAYOUTS

    if not SHARED_LAYOUTS.is_dir():
        pytest.skip(f"{SHARED_LAYOUTS} is not on this machine (the copy is what CI tests)")
    shared = {p.name: p.read_bytes() for p in SHARED_LAYOUTS.iterdir() if p.is_file()}
    copied = {p.name: p.read_bytes() for p in REAL_LAYOUTS.iterdir() if p.is_file()}
    assert shared == copied
