"""tiecheck on what transformers' own ``save_pretrained`` writes, checked three ways: against the
files (read with safetensors / torch, not tiecheck), against the model transformers loads back,
and against the tie map transformers declares for the class.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

import torch  # noqa: E402

import tiecheck  # noqa: E402
from tiecheck import GroupState  # noqa: E402

from .helpers import (  # noqa: E402
    TF5,
    TF_VERSION,
    assert_members_match_files,
    codes,
    edit_safetensors,
    errors,
    head_group,
    load_model,
    load_pickle,
    read_tensor,
    stored_tensors,
    tied_in_memory,
    tiny_of_type,
    transformers_log,
)

# What each tiny model is, as transformers defines it (checked against the loaded model below).
EXPECTED = {
    "qwen2-tied": "tied",
    "llama-untied": "untied",
    "gpt2": "tied",  # tied by class default; transformers 5 writes the flag into config.json
    "t5-v1.0": "tied",
    # transformers 5 forces T5Config.tie_word_embeddings to True and keeps the old flag only as
    # scale_decoder_outputs=False, so a model built from a Flan-T5 config is tied in memory and
    # saved deduplicated (observed on 5.23).
    "t5-flag-false": "tied",
    "bart": "tied",
    "bert-mlm": "tied",
    "whisper": "tied",
}

CASES = [(name, "safetensors") for name in EXPECTED]
CASES += [(name, "sharded") for name in EXPECTED]
CASES += [(name, "bin") for name in ("qwen2-tied", "llama-untied", "gpt2", "t5-v1.0", "bert-mlm")]
CASES += [(name, "sharded-bin") for name in ("qwen2-tied", "bert-mlm")]


def _sharing_sets(folder: Path) -> set[frozenset[str]]:
    """Names that are one tensor in a pickle (same storage, offset, shape, stride), per torch."""
    views: dict[tuple[object, ...], list[str]] = defaultdict(list)
    for path in sorted(folder.glob("*.bin")):
        for name, t in load_pickle(path).items():
            key = (path.name, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape)
            views[(*key, t.stride())].append(name)
    return {frozenset(names) for names in views.values() if len(names) > 1}


@pytest.mark.parametrize(("name", "layout"), CASES, ids=[f"{n}-{lay}" for n, lay in CASES])
def test_save_pretrained_output(saved, name: str, layout: str) -> None:
    folder = saved(name, layout)
    expected = EXPECTED[name]

    # transformers, the client: loads everything and ties exactly as expected
    model, info = load_model(folder)
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert tied_in_memory(model) == (expected == "tied"), "transformers disagrees with EXPECTED"
    assert model.config.tie_word_embeddings == (expected == "tied")

    report = tiecheck.inspect(folder)
    assert not errors(report), errors(report)
    assert report.verdict.value == expected, (report.verdict, codes(report))

    files = assert_members_match_files(report, folder)
    pickled = layout.endswith("bin")
    if expected == "tied":
        want = GroupState.SHARED if pickled else GroupState.DEDUPLICATED
        assert {g.state for g in report.tie_groups} == {want}, report.tie_groups
    else:
        assert head_group(report).state is GroupState.DISTINCT
        assert len(head_group(report).stored_members) == 2

    if TF5:  # every stored name transformers ties is in one of tiecheck's groups
        tie_map = model.get_expanded_tied_weights_keys(all_submodels=True)
        tied_names = (set(tie_map) | set(tie_map.values())) & set(files)
        grouped = {n for g in report.tie_groups for n in g.group.all_names()}
        assert tied_names <= grouped, f"transformers ties {tied_names - grouped}; tiecheck misses"

    if pickled:  # TC109 names exactly the sets torch sees on one storage
        tc109 = {frozenset(f.keys) for f in report.findings if f.code == "TC109"}
        assert tc109 == _sharing_sets(folder)
        assert bool(tc109) == (expected == "tied")

    # pointing at the index or the single weight file instead of the folder changes nothing
    entry = {
        "safetensors": "model.safetensors",
        "sharded": "model.safetensors.index.json",
        "bin": "pytorch_model.bin",
        "sharded-bin": "pytorch_model.bin.index.json",
    }[layout]
    direct = tiecheck.inspect(folder / entry)
    assert direct.verdict is report.verdict
    assert sorted(codes(direct)) == sorted(codes(report))

    quick = tiecheck.inspect(folder, no_data=True)
    assert quick.verdict is report.verdict
    assert not errors(quick), errors(quick)
    assert quick.bytes_read == 0


def test_gpt2_config_records_the_flag(saved) -> None:
    """transformers 4.x dropped default-valued keys (so GPT-2 configs often lack the flag);
    transformers 5 writes it. Either way tiecheck must say tied, and TC106 exactly when absent."""
    config = json.loads((saved("gpt2") / "config.json").read_text())
    report = tiecheck.inspect(saved("gpt2"))
    if TF5:
        assert config.get("tie_word_embeddings") is True, config
    assert ("TC106" in codes(report)) == ("tie_word_embeddings" not in config)


def test_gpt2_config_without_the_flag(copied) -> None:
    """A 4.x-style GPT-2 config (flag omitted): transformers ties by class default, tiecheck
    says tied and notes the default (TC106)."""
    folder = copied("gpt2")
    config = json.loads((folder / "config.json").read_text())
    config.pop("tie_word_embeddings", None)
    (folder / "config.json").write_text(json.dumps(config))

    model, info = load_model(folder)
    assert tied_in_memory(model) and not info["missing_keys"]
    report = tiecheck.inspect(folder)
    assert report.verdict.value == "tied"
    assert "TC106" in codes(report) and not errors(report)


def test_gpt2_hub_layout_without_prefix(copied) -> None:
    """openai-community/gpt2 stores ``wte.weight``, ``h.0.*`` without ``transformer.``;
    transformers adds the prefix on load and ties, tiecheck groups the bare names."""
    folder = copied("gpt2")
    edit_safetensors(
        folder,
        lambda state: state.update(
            {k.removeprefix("transformer."): state.pop(k) for k in list(state)}
        ),
    )
    assert "wte.weight" in stored_tensors(folder)

    model, info = load_model(folder)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert tied_in_memory(model)
    report = tiecheck.inspect(folder)
    assert report.verdict.value == "tied" and not errors(report), codes(report)
    assert head_group(report).group.names == ("wte.weight", "lm_head.weight")
    assert head_group(report).stored_members == ("wte.weight",)


def test_bert_bias_tie_is_a_group(saved) -> None:
    report = tiecheck.inspect(saved("bert-mlm"))
    bias = [g for g in report.tie_groups if g.kind.value == "bias"]
    assert len(bias) == 1
    assert bias[0].group.names == ("cls.predictions.bias", "cls.predictions.decoder.bias")
    assert bias[0].stored_members == ("cls.predictions.bias",)


# ---------------------------------------------------------------------------------------------
# Flan-T5: a real untied head under a flag transformers 5 no longer honours


def _flan_t5_hub_layout(folder: Path) -> torch.Tensor:
    """Turn a T5 save into what Flan-T5 repos hold (written by transformers 4.x): flag false,
    no scale_decoder_outputs key, a trained lm_head.weight next to shared.weight."""
    head = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    edit_safetensors(folder, lambda state: state.__setitem__("lm_head.weight", head.clone()))
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    config.pop("scale_decoder_outputs", None)
    (folder / "config.json").write_text(json.dumps(config))
    return head


def test_flan_t5_hub_layout(copied) -> None:
    folder = copied("t5-flag-false")
    head = _flan_t5_hub_layout(folder)

    report = tiecheck.inspect(folder)
    assert report.verdict.value == "untied", codes(report)
    assert not errors(report), errors(report)
    assert head_group(report).state is GroupState.DISTINCT
    assert_members_match_files(report, folder)

    with transformers_log() as log:
        model, info = load_model(folder)
    assert not info["missing_keys"]
    assert not tied_in_memory(model)
    assert torch.equal(model.lm_head.weight.detach(), head)
    if TF5:
        # transformers 5 (observed 5.23): T5Config forces tie_word_embeddings=True, keeps the
        # old flag as scale_decoder_outputs=False, finds both tensors stored with different
        # values and leaves them untied with a warning.
        assert model.config.tie_word_embeddings is True
        assert model.config.scale_decoder_outputs is False
        assert any("NOT" in m and "tie" in m for m in log), log


@pytest.mark.skipif(not TF5, reason="transformers 5 rewrites the T5 flag on save")
def test_flan_t5_resaved_by_transformers5(copied, tmp_path: Path) -> None:
    """Loading a Flan-T5 checkpoint in transformers 5 and saving it again writes
    ``tie_word_embeddings: true`` (forced) next to ``scale_decoder_outputs: false`` and both
    stored tensors. transformers 5 reloads it fine (untied), but the file now declares a tie its
    weights contradict: transformers 4.x would re-tie (discarding the trained head) and scale the
    output. tiecheck reports that as TC102 (observed with transformers 5.23)."""
    folder = copied("t5-flag-false")
    head = _flan_t5_hub_layout(folder)
    model, _ = load_model(folder)
    resaved = tmp_path / "resaved"
    model.save_pretrained(resaved)

    config = json.loads((resaved / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    assert config["scale_decoder_outputs"] is False
    assert torch.equal(read_tensor(resaved, "lm_head.weight"), head)
    assert not torch.equal(read_tensor(resaved, "shared.weight"), head)

    reloaded, info = load_model(resaved)
    assert not tied_in_memory(reloaded) and not info["missing_keys"]

    report = tiecheck.inspect(resaved)
    assert "TC102" in codes(report), codes(report)
    assert report.verdict.value == "inconsistent"


# ---------------------------------------------------------------------------------------------
# architecture aliases under tie_word_embeddings=false


@pytest.mark.skipif(not TF5, reason="transformers 4.x always shares these by construction")
@pytest.mark.parametrize("model_type", ["bart", "bert"])
def test_untied_save_of_alias_family(model_type: str, tmp_path: Path) -> None:
    """transformers 5 gates *every* tie of these classes on tie_word_embeddings: with the flag
    false, BART's encoder/decoder embed_tokens are separate from model.shared, and BERT's
    cls.predictions.decoder.bias is separate from cls.predictions.bias. Those are real
    transformers 5 checkpoints that load untied; tiecheck should not call them inconsistent.

    Known to fail: tiecheck treats them as architecture aliases that are always tied (true for
    transformers 4.x, which built them as one module) and reports TC102/TC103 on them.
    """
    model = tiny_of_type(model_type, tie=False)
    if model_type == "bert":  # as after training: the two bias copies drift apart
        with torch.no_grad():
            model.cls.predictions.decoder.bias.add_(0.1)
    folder = tmp_path / model_type
    model.save_pretrained(folder)

    loaded, info = load_model(folder)
    assert not tied_in_memory(loaded) and not info["missing_keys"]
    if model_type == "bart":
        assert loaded.model.encoder.embed_tokens.weight is not loaded.model.shared.weight
    else:
        assert loaded.cls.predictions.decoder.bias is not loaded.cls.predictions.bias
    report = tiecheck.inspect(folder)
    alias_codes = [c for c in codes(report) if c in ("TC102", "TC103")]
    assert report.verdict.value == "untied" and not alias_codes, (
        f"transformers {TF_VERSION} saved and reloads this {model_type} untied "
        f"(tie_word_embeddings=false unties the encoder/decoder embeddings and the decoder "
        f"bias too), but tiecheck reports verdict {report.verdict.value} with "
        f"{[f.code + ' ' + ','.join(f.keys) for f in report.findings if f.code in alias_codes]}"
    )
