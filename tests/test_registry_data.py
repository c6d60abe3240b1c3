"""The packaged family registry (``tiecheck/data/registry.json``) through its loader, without
transformers: the file's format, the invariants every entry keeps, and facts of TYING.md
section 3 as the generated data records them.

The facts below were checked against transformers 5.24's source (``_tied_weights_keys``,
config class defaults, ``conversion_mapping.py``) and against the models instantiated on the
meta device; where transformers 5.24 differs from TYING.md (GPT-NeoX's head is ``lm_head`` in
memory and ``embed_out`` on disk), the test says so. ``tests/interop/test_registry_complete.py``
checks the whole file against the installed transformers.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from tiecheck.analysis import registry
from tiecheck.analysis.registry import HeadClass, Opposite, TieFlag, lookup

RAW_TEXT = resources.files("tiecheck").joinpath("data").joinpath("registry.json").read_text()
RAW = json.loads(RAW_TEXT)
TYPES = registry.model_types()


def head(model_type: str, class_name: str) -> HeadClass:
    entry = lookup(model_type)
    assert entry is not None, f"{model_type} missing from the registry"
    found = entry.head(class_name)
    assert found is not None, f"{class_name} missing from {model_type}"
    assert found.static_only is None, f"{class_name} is static-only: {found.static_only}"
    return found


# ---------------------------------------------------------------------------------------------
# the file


def test_file_is_in_the_generators_canonical_form() -> None:
    """Sorted keys, one-space indent, ASCII, final newline: what the generator writes, so a
    regeneration diff shows only real changes and a hand edit that breaks the form fails."""
    assert json.dumps(RAW, indent=1, sort_keys=True, ensure_ascii=True) + "\n" == RAW_TEXT


def test_environment_is_recorded() -> None:
    env = registry.environment()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", env.transformers)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", env.torch)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", env.date)
    assert env.peft and env.python
    assert {name for name, _ in env.optional} == {"pillow", "timm", "torchaudio"}
    assert RAW["generated_by"] == "scripts/generate_registry.py"


def test_model_types_are_sorted_and_many() -> None:
    assert list(TYPES) == sorted(RAW["model_types"])
    assert len(TYPES) > 300  # transformers 5.24 has ~380 with a head or a tie


# ---------------------------------------------------------------------------------------------
# the loader


def test_each_entry_read_alone_equals_the_whole_file_parsed() -> None:
    """The loader parses one entry per lookup out of the indexed text; every entry must come
    out exactly as ``json.loads`` of the whole file has it."""
    indexed = registry._indexed(RAW_TEXT)
    assert indexed is not None, "the packaged file is not in the form the index expects"
    assert set(indexed.spans) == set(RAW["model_types"])
    assert indexed.header["schema"] == RAW["schema"] == registry.SCHEMA_VERSION
    for model_type, expected in RAW["model_types"].items():
        assert registry._raw_entry(model_type) == expected, model_type


def test_a_file_not_in_canonical_form_is_not_indexed() -> None:
    """Compact JSON (or a hand edit) is parsed whole instead of sliced wrongly."""
    assert registry._indexed(json.dumps(RAW, sort_keys=True)) is None
    assert registry._indexed(json.dumps(RAW, indent=2, sort_keys=True)) is None


@pytest.mark.parametrize("value", ["no-such-model-type", "", None, 42, ["llama"], {"a": 1}])
def test_lookup_of_unknown_or_non_string_is_none(value: object) -> None:
    assert lookup(value) is None


def test_lookup_converts_once() -> None:
    assert lookup("llama") is lookup("llama")


def test_head_for_reads_architectures_as_found() -> None:
    entry = lookup("bert")
    assert entry is not None
    found = entry.head_for([42, "NoSuchClass", "BertForMaskedLM"])
    assert found is not None and found.name == "BertForMaskedLM"
    assert entry.head_for("BertForMaskedLM") is None  # not a list: ignored
    assert entry.head_for(None) is None


def test_primary_head_prefers_the_causal_lm_class() -> None:
    entry = lookup("bert")
    assert entry is not None
    primary = entry.primary_head()
    assert primary is not None and "causal-lm" in primary.kinds


@pytest.mark.parametrize(
    ("flag", "declared", "effective"),
    [
        (TieFlag("tie_word_embeddings", True, Opposite.KEPT), None, True),
        (TieFlag("tie_word_embeddings", True, Opposite.KEPT), False, False),
        (TieFlag("tie_word_embeddings", False, Opposite.KEPT), True, True),
        (TieFlag("tie_word_embeddings", True, Opposite.OVERRIDDEN), False, True),
        (TieFlag("tie_word_embeddings", False, Opposite.RAISES), True, None),
        (TieFlag("tie_word_embeddings", False, Opposite.RAISES), False, False),
        (TieFlag("tie_word_embeddings", None, Opposite.KEPT), None, False),
        (TieFlag("tie_word_embeddings", None, Opposite.KEPT), True, True),
    ],
)
def test_flag_effective_value(flag: TieFlag, declared: bool | None, effective: bool | None) -> None:
    assert flag.effective(declared) is effective


# ---------------------------------------------------------------------------------------------
# invariants of every entry


@pytest.mark.parametrize("model_type", TYPES)
def test_entry_invariants(model_type: str) -> None:
    entry = lookup(model_type)
    assert entry is not None and entry.model_type == model_type
    assert entry.heads, "an entry exists only for a head or a tie"
    sub_paths = {s.path for s in entry.sub_configs}
    for cls in entry.heads:
        problems = _head_problems(cls, sub_paths, entry.flag)
        assert not problems, f"{model_type} {cls.name}: {problems}"


def _head_problems(cls: HeadClass, sub_paths: set[str], flag: TieFlag) -> list[str]:
    problems = []
    if cls.static_only is not None:
        if cls.input_embedding or cls.output_embedding or any(p.saved_as for p in cls.params):
            problems.append("a static-only entry claims instantiated facts")
        return problems
    tied, untied = cls.ties(True), cls.ties(False)
    if tied is None and untied is None:
        problems.append("no tie map at all")
    if tied is not None and untied is not None:
        # transformers 5 only ties through the flag: with it false, what remains is what
        # the flag-true map has too (forced flags make the two maps equal)
        extra = {t: s for t, s in untied.items() if tied.get(t) != s}
        if extra:
            problems.append(f"ties only when untied: {extra}")
        if flag.forced and tied != untied:
            problems.append("forced flag but the maps differ")
    for tie in cls.ties_flag_true or ():
        if tie.flag_path is not None and tie.flag_path != "" and tie.flag_path not in sub_paths:
            problems.append(f"{tie.target} governed by unknown config {tie.flag_path}")
    named = {n for m in (tied or {}, untied or {}) for pair in m.items() for n in pair}
    named |= {n for n in (cls.input_embedding, cls.output_embedding, cls.output_bias) if n}
    for name in sorted(named):
        entry = cls.param(name)
        if entry is None or (entry.saved_as is None and len(entry.saved_split) < 2):
            problems.append(f"no on-disk name for {name}")
        elif entry.saved_as is None:
            continue
        elif cls.disk_names(name)[0] != entry.saved_as:
            problems.append(f"{name}: the saved name is not the first disk name")
    return problems


def test_some_entries_are_static_only_and_say_why() -> None:
    static = [h for t in TYPES for h in lookup(t).heads if h.static_only]  # type: ignore[union-attr]
    assert static, "expected a few classes transformers cannot build from defaults"
    assert all(h.static_only and len(h.static_only) > 10 for h in static)
    assert len(static) < 60


# ---------------------------------------------------------------------------------------------
# facts of TYING.md section 3, as the data records them


def test_llama_untied_by_default_and_ties_through_the_root_flag() -> None:
    entry = lookup("llama")
    assert entry is not None and entry.flag.default is False and not entry.flag.forced
    cls = head("llama", "LlamaForCausalLM")
    assert cls.input_embedding == "model.embed_tokens.weight"
    assert cls.output_embedding == "lm_head.weight"
    assert cls.ties(True) == {"lm_head.weight": "model.embed_tokens.weight"}
    assert cls.ties(False) == {}
    assert [t.flag_path for t in cls.ties_flag_true or ()] == [""]


def test_gpt_neox_head_is_lm_head_in_memory_and_embed_out_on_disk() -> None:
    """TYING.md names the head ``embed_out.weight``: that is the on-disk name; transformers 5.24
    renames it to ``lm_head.weight`` on load (conversion_mapping) and back on save."""
    entry = lookup("gpt_neox")
    assert entry is not None and entry.flag.default is False
    cls = head("gpt_neox", "GPTNeoXForCausalLM")
    assert cls.input_embedding == "gpt_neox.embed_in.weight"
    assert cls.output_embedding == "lm_head.weight"
    assert cls.saved_name("lm_head.weight") == "embed_out.weight"
    assert "embed_out.weight" in cls.disk_names("lm_head.weight")
    assert cls.ties(True) == {"lm_head.weight": "gpt_neox.embed_in.weight"}


def test_bert_mlm_ties_decoder_weight_and_bias() -> None:
    entry = lookup("bert")
    assert entry is not None and entry.flag.default is True
    cls = head("bert", "BertForMaskedLM")
    assert cls.input_embedding == "bert.embeddings.word_embeddings.weight"
    assert cls.output_embedding == "cls.predictions.decoder.weight"
    assert cls.output_bias == "cls.predictions.decoder.bias"
    assert cls.ties(True) == {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    assert cls.ties(False) == {}  # transformers 5 unties the bias with the flag too


def test_whisper_head_is_proj_out() -> None:
    entry = lookup("whisper")
    assert entry is not None and entry.flag.default is True
    cls = head("whisper", "WhisperForConditionalGeneration")
    assert cls.input_embedding == "model.decoder.embed_tokens.weight"
    assert cls.output_embedding == "proj_out.weight"
    assert cls.ties(True) == {"proj_out.weight": "model.decoder.embed_tokens.weight"}


def test_rwkv_head_is_head_weight() -> None:
    entry = lookup("rwkv")
    assert entry is not None and entry.flag.default is False
    cls = head("rwkv", "RwkvForCausalLM")
    assert cls.input_embedding == "rwkv.embeddings.weight"
    assert cls.output_embedding == "head.weight"
    assert cls.ties(True) == {"head.weight": "rwkv.embeddings.weight"}


def test_esm_mlm_head_is_lm_head_decoder() -> None:
    """EsmConfig's default vocab_size is None: the generator fills it in and says so."""
    cls = head("esm", "EsmForMaskedLM")
    assert cls.input_embedding == "esm.embeddings.word_embeddings.weight"
    assert cls.output_embedding == "lm_head.decoder.weight"
    assert cls.ties(True) == {"lm_head.decoder.weight": "esm.embeddings.word_embeddings.weight"}
    raw = RAW["model_types"]["esm"]["heads"]["EsmForMaskedLM"]
    assert raw["config_fill_ins"] == {"vocab_size": 1024}


def test_deberta_v2_mlm_head_names_with_the_default_legacy_head() -> None:
    """DebertaV2Config defaults to ``legacy=True``, whose head is BERT-like; with
    ``legacy=False`` the class builds ``lm_predictions.lm_head.dense`` and ties nothing."""
    cls = head("deberta-v2", "DebertaV2ForMaskedLM")
    assert cls.input_embedding == "deberta.embeddings.word_embeddings.weight"
    assert cls.output_embedding == "cls.predictions.decoder.weight"
    assert cls.output_bias == "cls.predictions.decoder.bias"
    assert cls.ties(True) == {
        "cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }


@pytest.mark.parametrize(
    ("model_type", "class_name"),
    [
        ("idefics3", "Idefics3ForConditionalGeneration"),
        ("smolvlm", "SmolVLMForConditionalGeneration"),
    ],
)
def test_idefics3_and_smolvlm_keep_the_text_model_under_model(
    model_type: str, class_name: str
) -> None:
    entry = lookup(model_type)
    assert entry is not None and entry.flag.default is False
    cls = head(model_type, class_name)
    assert cls.input_embedding == "model.text_model.embed_tokens.weight"
    assert cls.output_embedding == "lm_head.weight"
    assert cls.ties(True) == {"lm_head.weight": "model.text_model.embed_tokens.weight"}
    assert cls.saved_name("model.text_model.embed_tokens.weight") == (
        "model.text_model.embed_tokens.weight"
    )


@pytest.mark.parametrize("model_type", ["t5", "mt5", "umt5"])
def test_t5_family_flag_is_forced_and_all_ties_structural(model_type: str) -> None:
    """transformers 5 forces ``tie_word_embeddings=True`` for the T5 family; the shared
    embedding, both stacks' embeddings and the head are tied whatever config.json says (a
    stored head that differs is kept on load, with a warning)."""
    entry = lookup(model_type)
    assert entry is not None
    assert entry.flag.default is True and entry.flag.forced
    assert entry.flag.opposite is Opposite.OVERRIDDEN
    cls = head(
        model_type,
        f"{'MT5' if model_type == 'mt5' else model_type.upper()}ForConditionalGeneration",
    )
    expected = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
        "lm_head.weight": "shared.weight",
    }
    assert cls.ties(True) == expected == cls.ties(False)
    assert cls.structural_ties() == expected and cls.flag_ties() == {}
    assert cls.input_embedding == "shared.weight"
    assert cls.output_embedding == "lm_head.weight"


def test_bart_shared_embeddings_follow_the_flag() -> None:
    cls = head("bart", "BartForConditionalGeneration")
    assert cls.ties(False) == {}
    assert cls.ties(True) == {
        "model.encoder.embed_tokens.weight": "model.shared.weight",
        "model.decoder.embed_tokens.weight": "model.shared.weight",
        "lm_head.weight": "model.shared.weight",
    }


def test_gemma3_saves_its_legacy_layout() -> None:
    """save_pretrained in transformers 5.24 reverses the conversion mapping: a Gemma 3 is
    written as ``language_model.model.*`` although it lives at ``model.language_model.*``."""
    cls = head("gemma3", "Gemma3ForConditionalGeneration")
    assert cls.input_embedding == "model.language_model.embed_tokens.weight"
    assert cls.saved_name(cls.input_embedding) == "language_model.model.embed_tokens.weight"
    assert cls.saved_name("lm_head.weight") == "language_model.lm_head.weight"
    disk = cls.disk_names("model.language_model.embed_tokens.weight")
    assert "model.language_model.embed_tokens.weight" in disk


def test_qwen2_vl_lifts_an_inner_true_flag_to_the_root() -> None:
    entry = lookup("qwen2_vl")
    assert entry is not None and entry.flag.default is False
    text = entry.sub_config("text_config")
    assert text is not None and text.lifts_to_root
    cls = head("qwen2_vl", "Qwen2VLForConditionalGeneration")
    assert cls.saved_name("model.language_model.embed_tokens.weight") == "model.embed_tokens.weight"


def test_blip2_tie_is_governed_by_the_text_config() -> None:
    """Blip2Config has no flag of its own: the OPT text model ties through ``text_config``."""
    entry = lookup("blip-2")
    assert entry is not None and entry.flag.default is None
    cls = head("blip-2", "Blip2ForConditionalGeneration")
    tie = next(iter(cls.ties_flag_true or ()))
    assert (tie.target, tie.source, tie.flag_path) == (
        "language_model.lm_head.weight",
        "language_model.model.decoder.embed_tokens.weight",
        "text_config",
    )


def test_lfm2_reads_tie_embedding_as_the_flag() -> None:
    entry = lookup("lfm2")
    assert entry is not None and entry.flag.aliases == ("tie_embedding",)


def test_dbrx_refuses_a_true_flag() -> None:
    entry = lookup("dbrx")
    assert entry is not None
    assert entry.flag.default is False and entry.flag.opposite is Opposite.RAISES
    assert entry.flag.effective(True) is None
