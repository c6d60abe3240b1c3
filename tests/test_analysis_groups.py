"""Tie groups for each family in TYING.md section 3, under the prefixes real checkpoints use.

Each case writes a real safetensors file holding the family's names (plus a couple of ordinary
weights) and inspects it without reading data; the expected members are the table's names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import HIDDEN, VOCAB, codes, randn, save_numpy, write_config
from tiecheck.analysis.groups import GroupKind


def write(folder: Path, names: list[str], config: dict | None, extra: dict | None = None) -> Path:
    tensors = {n: randn(i, VOCAB, HIDDEN) for i, n in enumerate(names)}
    tensors["some.layers.0.mlp.weight"] = randn(99, HIDDEN, HIDDEN)
    tensors.update(extra or {})
    save_numpy(folder / "model.safetensors", tensors)
    if config is not None:
        write_config(folder, **config)
    return folder


def head_groups(report):  # type: ignore[no-untyped-def]
    return [g for g in report.tie_groups if g.kind is GroupKind.HEAD]


CASES = {
    # name: (stored names, config, expected group members in order)
    "llama": (
        ["model.embed_tokens.weight", "lm_head.weight"],
        {"model_type": "llama"},
        ("model.embed_tokens.weight", "lm_head.weight"),
    ),
    "qwen2-tied-no-head": (
        ["model.embed_tokens.weight"],
        {"model_type": "qwen2", "tie_word_embeddings": True},
        ("model.embed_tokens.weight", "lm_head.weight"),
    ),
    "qwen2-vl-new-layout": (
        ["model.language_model.embed_tokens.weight"],
        {"model_type": "qwen2_5_vl", "tie_word_embeddings": True},
        ("model.language_model.embed_tokens.weight", "lm_head.weight"),
    ),
    "gemma3-multimodal-on-disk": (
        ["language_model.model.embed_tokens.weight"],
        {"model_type": "gemma3"},
        ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"),
    ),
    "locateanything-prefix": (
        ["language_model.model.embed_tokens.weight", "language_model.lm_head.weight"],
        {"model_type": "locateanything", "text_config": {"model_type": "qwen2"}},
        ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"),
    ),
    "peft-prefix": (
        ["base_model.model.model.embed_tokens.weight", "base_model.model.lm_head.weight"],
        {"model_type": "qwen2"},
        ("base_model.model.model.embed_tokens.weight", "base_model.model.lm_head.weight"),
    ),
    "gpt2": (
        ["transformer.wte.weight"],
        {"model_type": "gpt2"},
        ("transformer.wte.weight", "lm_head.weight"),
    ),
    "gpt2-on-disk-no-prefix": (
        ["wte.weight"],
        {"model_type": "gpt2"},
        ("wte.weight", "lm_head.weight"),
    ),
    "gptj": (
        ["transformer.wte.weight", "lm_head.weight"],
        {"model_type": "gptj"},
        ("transformer.wte.weight", "lm_head.weight"),
    ),
    "gpt-neox": (
        ["gpt_neox.embed_in.weight", "embed_out.weight"],
        {"model_type": "gpt_neox"},
        ("gpt_neox.embed_in.weight", "embed_out.weight"),
    ),
    "opt": (
        ["model.decoder.embed_tokens.weight"],
        {"model_type": "opt"},
        ("model.decoder.embed_tokens.weight", "lm_head.weight"),
    ),
    "bloom-no-prefix": (
        ["word_embeddings.weight"],
        {"model_type": "bloom"},
        ("word_embeddings.weight", "lm_head.weight"),
    ),
    "falcon": (
        ["transformer.word_embeddings.weight", "lm_head.weight"],
        {"model_type": "falcon"},
        ("transformer.word_embeddings.weight", "lm_head.weight"),
    ),
    "mpt": (
        ["transformer.wte.weight"],
        {"model_type": "mpt"},
        ("transformer.wte.weight", "lm_head.weight"),
    ),
    "hf_olmo": (
        ["model.transformer.wte.weight", "model.transformer.ff_out.weight"],
        {"model_type": "hf_olmo", "weight_tying": False},
        ("model.transformer.wte.weight", "model.transformer.ff_out.weight"),
    ),
    "t5": (
        ["shared.weight", "lm_head.weight"],
        {"model_type": "t5", "tie_word_embeddings": False},
        (
            "shared.weight",
            "decoder.embed_tokens.weight",
            "encoder.embed_tokens.weight",
            "lm_head.weight",
        ),
    ),
    "bart": (
        ["model.shared.weight", "model.encoder.embed_tokens.weight"],
        {"model_type": "bart"},
        (
            "model.shared.weight",
            "model.decoder.embed_tokens.weight",
            "model.encoder.embed_tokens.weight",
            "lm_head.weight",
        ),
    ),
    "bert": (
        ["bert.embeddings.word_embeddings.weight"],
        {"model_type": "bert"},
        ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"),
    ),
    "roberta": (
        ["roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"],
        {"model_type": "roberta"},
        ("roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"),
    ),
    "electra": (
        ["electra.embeddings.word_embeddings.weight", "generator_lm_head.weight"],
        {"model_type": "electra"},
        ("electra.embeddings.word_embeddings.weight", "generator_lm_head.weight"),
    ),
    "whisper-without-config": (
        ["model.decoder.embed_tokens.weight", "proj_out.weight"],
        None,
        ("model.decoder.embed_tokens.weight", "proj_out.weight"),
    ),
    "mamba": (
        ["backbone.embeddings.weight"],
        {"model_type": "mamba"},
        ("backbone.embeddings.weight", "lm_head.weight"),
    ),
    "meta-original-without-config": (
        ["tok_embeddings.weight", "output.weight"],
        None,
        ("tok_embeddings.weight", "output.weight"),
    ),
    "torchtune-tied-without-config": (
        ["tok_embeddings.weight"],
        None,
        ("tok_embeddings.weight", "output.weight"),
    ),
    "internlm2": (
        ["model.tok_embeddings.weight", "output.weight"],
        {"model_type": "internlm2"},
        ("model.tok_embeddings.weight", "output.weight"),
    ),
    "chatglm": (
        ["transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"],
        {"model_type": "chatglm"},
        ("transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"),
    ),
    "gguf-names": (
        ["token_embd.weight", "output.weight"],
        None,
        ("token_embd.weight", "output.weight"),
    ),
    "phi2-mixformer": (
        ["layers.0.wte.weight", "layers.33.linear.weight"],
        {"model_type": "phi-msft"},
        ("layers.0.wte.weight", "layers.33.linear.weight"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_family_groups(tmp_path: Path, case: str) -> None:
    names, config, members = CASES[case]
    report = tiecheck.inspect(write(tmp_path, names, config), no_data=True)
    (group,) = head_groups(report)
    assert group.group.names == members
    assert group.stored_members == tuple(m for m in members if m in names)
    assert report.bytes_read == 0


def test_prefix_is_not_misread_inside_a_longer_name(tmp_path: Path) -> None:
    # 'transformer.wte.weight' is the GPT-2 layout itself, not prefix 'transformer.' + 'wte.weight'
    report = tiecheck.inspect(write(tmp_path, ["transformer.wte.weight"], None), no_data=True)
    (group,) = head_groups(report)
    assert group.group.names == ("transformer.wte.weight", "lm_head.weight")


def test_two_towers_give_two_groups(tmp_path: Path) -> None:
    names = [
        "model.embed_tokens.weight",
        "lm_head.weight",
        "mtp.model.embed_tokens.weight",
        "mtp.lm_head.weight",
    ]
    report = tiecheck.inspect(write(tmp_path, names, {"model_type": "llama"}), no_data=True)
    assert sorted(g.group.names for g in head_groups(report)) == [
        ("model.embed_tokens.weight", "lm_head.weight"),
        ("mtp.model.embed_tokens.weight", "mtp.lm_head.weight"),
    ]


def test_embedding_missing_names_the_layout_the_weights_use(fixtures_dir: Path) -> None:
    # Qwen2 has two layouts sharing 'lm_head.weight'; the stored 'model.layers.*' names pick
    # the text layout, so the missing embedding is model.embed_tokens.weight
    report = tiecheck.inspect(fixtures_dir / "embedding-missing")
    (group,) = report.tie_groups
    assert group.group.names == ("model.embed_tokens.weight", "lm_head.weight")
    (tc104,) = [f for f in report.findings if f.code == "TC104"]
    assert tc104.keys == ("model.embed_tokens.weight", "lm_head.weight")


def test_embedding_missing_in_a_vlm_layout(tmp_path: Path) -> None:
    names = ["lm_head.weight"]
    extra = {"model.language_model.layers.0.mlp.weight": randn(5, HIDDEN, HIDDEN)}
    folder = write(
        tmp_path, names, {"model_type": "qwen2_5_vl", "tie_word_embeddings": True}, extra
    )
    (group,) = head_groups(tiecheck.inspect(folder, no_data=True))
    assert group.group.names == ("model.language_model.embed_tokens.weight", "lm_head.weight")


def test_bias_groups_bert_and_roberta(tmp_path: Path) -> None:
    bias = randn(7, VOCAB)
    bert = write(
        tmp_path / "bert",
        ["bert.embeddings.word_embeddings.weight"],
        {"model_type": "bert"},
        {"cls.predictions.bias": bias, "cls.predictions.decoder.bias": bias.copy()},
    )
    roberta = write(
        tmp_path / "roberta",
        ["roberta.embeddings.word_embeddings.weight"],
        {"model_type": "roberta"},
        {"lm_head.bias": bias},
    )
    for folder, members, stored in (
        (bert, ("cls.predictions.bias", "cls.predictions.decoder.bias"), 2),
        (roberta, ("lm_head.bias", "lm_head.decoder.bias"), 1),
    ):
        report = tiecheck.inspect(folder)
        (bias_group,) = [g for g in report.tie_groups if g.kind is GroupKind.BIAS]
        assert bias_group.group.names == members
        assert len(bias_group.stored_members) == stored
        assert bias_group.declared is True
    assert "TC103" in codes(tiecheck.inspect(bert))


def test_mlx_sidecars_belong_to_their_member(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "mlx-quantized")
    (group,) = report.tie_groups
    by_name = {m.name: m for m in group.group.members}
    assert by_name["model.embed_tokens.weight"].sidecars == {
        ".scales": "model.embed_tokens.scales",
        ".biases": "model.embed_tokens.biases",
    }
    assert by_name["lm_head.weight"].sidecars == {
        ".scales": "lm_head.scales",
        ".biases": "lm_head.biases",
    }
    # a member's bytes include its side-cars (packed 4-bit weight + fp16 scales and biases)
    expected = VOCAB * (128 // 8) * 4 + 2 * VOCAB * (128 // 64) * 2
    assert {m.name: m.nbytes for m in group.members} == {
        "model.embed_tokens.weight": expected,
        "lm_head.weight": expected,
    }
    assert report.verdict.value == "untied"
    assert codes(report) == set()


def test_bitsandbytes_sidecars(tmp_path: Path) -> None:
    extra = {
        "lm_head.SCB": np.ones(VOCAB, dtype=np.float32),
        "lm_head.weight_format": np.array([0], dtype=np.uint8),
        "model.embed_tokens.SCB": np.ones(VOCAB, dtype=np.float32),
    }
    folder = write(
        tmp_path,
        ["model.embed_tokens.weight", "lm_head.weight"],
        {"model_type": "llama", "tie_word_embeddings": False},
        extra,
    )
    (group,) = tiecheck.inspect(folder, no_data=True).tie_groups
    by_name = {m.name: m for m in group.group.members}
    assert by_name["lm_head.weight"].sidecars == {
        ".SCB": "lm_head.SCB",
        ".weight_format": "lm_head.weight_format",
    }
    assert by_name["model.embed_tokens.weight"].sidecars == {".SCB": "model.embed_tokens.SCB"}


def test_unknown_family_falls_back_to_a_shape_heuristic(tmp_path: Path) -> None:
    tensors = {
        "net.tok.embed.weight": randn(1, VOCAB, HIDDEN),
        "net.unembed.weight": randn(2, VOCAB, HIDDEN),
        "net.pos_embed.weight": randn(3, 8, HIDDEN),
        "net.block.0.weight": randn(4, HIDDEN, HIDDEN),
    }
    save_numpy(tmp_path / "model.safetensors", tensors)
    (group,) = tiecheck.inspect(tmp_path).tie_groups
    assert group.group.layout == "heuristic"
    assert group.group.names == ("net.tok.embed.weight", "net.unembed.weight")


def test_no_embedding_no_head_no_group(tmp_path: Path) -> None:
    save_numpy(tmp_path / "model.safetensors", {"encoder.layer.0.weight": randn(0, 4, 4)})
    report = tiecheck.inspect(tmp_path)
    assert report.tie_groups == []
    assert report.verdict.value == "not-applicable"
