"""What a configuration declares about the tie: explicit flags, class defaults (absent is not
false), nested levels and their disagreements, hf_olmo's weight_tying, heads that do not exist.

Expected defaults are the ones TYING.md (section 2) lists from the transformers sources; they
are written out here, not read from tiecheck's registry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tiecheck
from core_helpers import codes, decoder_arrays, findings_with, model_folder
from tiecheck.analysis.declared import declared_tie
from tiecheck.model import ConfigInfo


def declared(data: dict, records: dict | None = None):  # type: ignore[no-untyped-def]
    return declared_tie(ConfigInfo("config.json", Path("config.json"), data), records or {})


# TYING.md section 2: "Class defaults: False for Llama, Mistral, Mixtral, Qwen2, Qwen2-VL,
# Qwen2.5-VL, Qwen3, GPT-J, GPT-NeoX, Phi, Phi-3, OLMo (HF-native), OLMo-2, StableLM,
# DeepSeek-V3, mT5; True for GPT-2, OPT, BLOOM, Falcon, Gemma 1/2/3, Cohere, BART, BERT, RoBERTa,
# ELECTRA, Whisper, MPT, Mamba, T5, SmolLM3."
UNTIED_BY_DEFAULT = [
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3",
    "gptj",
    "gpt_neox",
    "phi",
    "phi3",
    "olmo",
    "olmo2",
    "stablelm",
    "deepseek_v3",
    "mt5",
]
TIED_BY_DEFAULT = [
    "gpt2",
    "opt",
    "bloom",
    "falcon",
    "gemma",
    "gemma2",
    "gemma3",
    "cohere",
    "bart",
    "bert",
    "roberta",
    "electra",
    "whisper",
    "mpt",
    "mamba",
    "t5",
    "smollm3",
]


@pytest.mark.parametrize(
    ("model_type", "tied"),
    [(t, False) for t in UNTIED_BY_DEFAULT] + [(t, True) for t in TIED_BY_DEFAULT],
)
def test_absent_flag_means_the_class_default(model_type: str, tied: bool) -> None:
    result, findings = declared({"model_type": model_type})
    assert result.tied is tied
    assert result.defaulted is True
    assert [f.code for f in findings] == ["TC106"]
    assert ("tied" if tied else "untied") in findings[0].message


@pytest.mark.parametrize("value", [True, False])
def test_explicit_flag_wins_over_the_default(value: bool) -> None:
    for model_type in ("gemma", "llama"):
        result, findings = declared({"model_type": model_type, "tie_word_embeddings": value})
        assert result.tied is value
        assert result.defaulted is False
        assert result.flags == {"tie_word_embeddings": value}
        assert findings == []


def test_unknown_model_type_uses_pretrained_config_default() -> None:
    result, findings = declared({"model_type": "my_new_arch"})
    assert result.tied is True
    (tc106,) = findings
    assert "my_new_arch" in tc106.message and "PretrainedConfig" in tc106.message


def test_mosaicml_mpt_ties_even_when_the_flag_says_false() -> None:
    # MPT-7B's config loads MosaicML's remote code (auto_map), which always ties wte
    auto_map = {"AutoConfig": "configuration_mpt.MPTConfig"}
    result, findings = declared(
        {"model_type": "mpt", "auto_map": auto_map, "tie_word_embeddings": False}
    )
    assert result.tied is True
    assert "always ties" in result.source
    assert findings == []


def test_text_config_flag_alone_is_used() -> None:
    # LocateAnything-3B: top level absent, text_config says tied
    result, findings = declared(
        {
            "model_type": "locateanything",
            "text_config": {"model_type": "qwen2", "tie_word_embeddings": True},
        }
    )
    assert result.tied is True
    assert result.source.endswith("text_config.tie_word_embeddings")
    assert result.flags == {"text_config.tie_word_embeddings": True}
    assert result.family is not None and "qwen2" in result.family.model_types
    assert findings == []


def test_nested_config_without_flags_uses_the_inner_class_default() -> None:
    # medgemma-27b: gemma3 with a gemma3_text text_config, no flag at either level
    result, findings = declared(
        {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text"}}
    )
    assert result.tied is True
    assert [f.code for f in findings] == ["TC106"]


@pytest.mark.parametrize("level", ["text_config", "decoder", "generator"])
def test_levels_that_disagree_give_tc107_and_the_top_level_is_read(level: str) -> None:
    result, findings = declared(
        {
            "model_type": "qwen3_vl_moe",
            "tie_word_embeddings": False,
            level: {"tie_word_embeddings": True},
        }
    )
    assert [f.code for f in findings] == ["TC107"]
    assert findings[0].severity.value == "warning"
    assert f"{level}.tie_word_embeddings=true" in findings[0].message
    assert result.tied is False  # transformers 5.x reads the outer key
    assert result.flags == {"tie_word_embeddings": False, f"{level}.tie_word_embeddings": True}


def test_levels_that_agree_give_no_finding() -> None:
    result, findings = declared(
        {
            "model_type": "qwen2_5_vl",
            "tie_word_embeddings": True,
            "text_config": {"tie_word_embeddings": True},
        }
    )
    assert result.tied is True and findings == []


@pytest.mark.parametrize("value", [True, False])
def test_hf_olmo_weight_tying(value: bool) -> None:
    result, findings = declared({"model_type": "hf_olmo", "weight_tying": value})
    assert result.tied is value
    assert result.source.endswith("weight_tying")
    assert findings == []


@pytest.mark.parametrize(
    ("architectures", "has_head"),
    [
        (["GPTNeoXRewardModel"], False),
        (["LlamaForSequenceClassification"], False),
        (["BertModel"], False),
        (["LlamaForCausalLM"], True),
        (["Qwen2VLForConditionalGeneration"], True),
        (["BertForMaskedLM"], True),
        (["GPT2LMHeadModel"], True),
        ([], True),
    ],
)
def test_architectures_without_an_lm_head(architectures: list[str], has_head: bool) -> None:
    result, _ = declared({"model_type": "llama", "architectures": architectures})
    assert result.has_lm_head is has_head


def test_reward_model_without_head_is_not_tc101(tmp_path: Path) -> None:
    tensors = decoder_arrays(0, head="score.weight")
    tensors["score.weight"] = tensors["score.weight"][:1]
    config = {
        "architectures": ["LlamaForSequenceClassification"],
        "model_type": "llama",
        "tie_word_embeddings": False,
    }
    report = tiecheck.inspect(model_folder(tmp_path, tensors, config))
    assert "TC101" not in codes(report)
    assert report.verdict.value == "not-applicable"
    # the same weights declared as a causal LM are missing their head
    config["architectures"] = ["LlamaForCausalLM"]
    model_folder(tmp_path, tensors, config)
    assert "TC101" in codes(tiecheck.inspect(tmp_path))


def test_no_config_and_no_alias_record_declares_nothing() -> None:
    result, findings = declared_tie(None, {})
    assert result.tied is None
    assert [f.code for f in findings] == ["TC111"]


def test_alias_records_declare_a_tie_without_config() -> None:
    result, findings = declared_tie(None, {"lm_head.weight": "model.embed_tokens.weight"})
    assert result.tied is True
    assert findings == []


def test_flag_absent_fixture_end_to_end(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "flag-absent-gemma")
    (tc106,) = findings_with(report, "TC106")
    assert tc106.severity.value == "info"
    assert report.declared.defaulted is True
    assert report.declared.tied is True
    assert report.verdict.value == "tied"
    assert codes(report) == {"TC106"}


def test_nested_fixture_end_to_end(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "nested-flags-disagree")
    assert codes(report) == {"TC107"}
    assert report.declared.flags == {
        "tie_word_embeddings": False,
        "text_config.tie_word_embeddings": True,
    }
    (group,) = report.tie_groups
    assert group.group.names == ("model.language_model.embed_tokens.weight", "lm_head.weight")
    assert group.state.value == "distinct"
    assert report.verdict.value == "untied"


def test_invalid_config_is_tc001_and_weights_still_read(tmp_path: Path) -> None:
    tensors = decoder_arrays(1)
    model_folder(tmp_path, tensors, None)
    (tmp_path / "config.json").write_text('{"model_type": "llama",')
    report = tiecheck.inspect(tmp_path)
    (tc001,) = findings_with(report, "TC001")
    assert tc001.file == "config.json"
    assert {t.name for t in report.checkpoint.tensors} == set(tensors)


@pytest.mark.parametrize("weight_tying", [True, False])
def test_hf_olmo_weight_tying_wins_over_tie_word_embeddings(weight_tying: bool) -> None:
    # hf_olmo builds ff_out from weight_tying; a tie_word_embeddings key beside it is not read
    result, findings = declared(
        {
            "model_type": "hf_olmo",
            "weight_tying": weight_tying,
            "tie_word_embeddings": not weight_tying,
        }
    )
    assert result.tied is weight_tying
    assert result.source.endswith("weight_tying")
    assert [f.code for f in findings] == ["TC107"]


# -- a flag that is not a boolean ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reading"),
    [("false", True), ("true", True), ("", False), (0, False), (1, True), (None, False)],
)
def test_a_flag_that_is_not_a_boolean_is_an_error_with_both_readings(
    value: object, reading: bool
) -> None:
    """transformers 5.x refuses such a config (its strict config dataclasses, checked against
    5.24 in tests/interop); 4.x reads the value's truthiness, so the string "false" ties."""
    result, findings = declared({"model_type": "llama", "tie_word_embeddings": value})
    assert result.tied is reading
    tc117 = [f for f in findings if f.code == "TC117"]
    assert len(tc117) == 1
    assert "transformers 5.x refuses to load this config" in tc117[0].message
    assert f"4.x reads it as {str(reading).lower()}" in tc117[0].message


def test_a_nested_flag_of_the_wrong_type_is_reported_too() -> None:
    _, findings = declared(
        {"model_type": "qwen2_vl", "text_config": {"tie_word_embeddings": "False"}}
    )
    assert [f.code for f in findings if f.code == "TC117"] == ["TC117"]
    assert "text_config.tie_word_embeddings" in findings_with_code(findings, "TC117")[0].message


def findings_with_code(findings: list, code: str) -> list:  # type: ignore[type-arg]
    return [f for f in findings if f.code == code]


def test_a_string_flag_makes_the_verdict_inconsistent(tmp_path: Path) -> None:
    folder = model_folder(
        tmp_path / "m",
        decoder_arrays(head=None),
        {"model_type": "qwen2", "tie_word_embeddings": "false"},
    )
    report = tiecheck.inspect(folder)
    assert "TC117" in codes(report)
    assert report.verdict.value == "inconsistent"
