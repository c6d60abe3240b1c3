"""tiecheck's family registry against the installed transformers: every model type it lists
that transformers knows is built tiny, saved, reloaded, and inspected.

This is what replaces importing transformers in tiecheck, so it is checked against the real
thing: the class default of the tie flag, where the embedding and head land on disk (which can
differ from the in-memory names: GPT-NeoX's ``embed_out``, Gemma 3's ``language_model.``), and
whether the loaded model is tied.
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import tiecheck  # noqa: E402
from tiecheck.analysis.families import family_for  # noqa: E402

from .helpers import (  # noqa: E402
    TF5,
    TF_VERSION,
    assert_members_match_files,
    codes,
    errors,
    lm_class_for,
    load_model,
    tied_in_memory,
    tiny_of_type,
)

TYING_FAMILIES = (
    # the families TYING.md section 3 names; tests/interop/test_registry_complete.py covers
    # every registry entry by its recorded facts, this sweep saves and loads real models
    *("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "phi"),
    *("phi3", "phimoe", "olmo", "olmo2", "olmoe", "stablelm", "deepseek_v2", "deepseek_v3"),
    *("granite", "granitemoe", "granitemoeshared", "nemotron", "jamba", "ministral", "glm"),
    *("glm4", "helium", "exaone4", "seed_oss", "gemma", "gemma2", "gemma3", "gemma3_text"),
    *("cohere", "cohere2", "smollm3", "starcoder2", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"),
    *("qwen3_vl_moe", "gpt2", "gpt_bigcode", "gptj", "gpt_neox", "opt", "bloom", "falcon"),
    *("mpt", "t5", "longt5", "umt5", "switch_transformers", "mt5", "led", "bert", "roberta"),
    *("xlm-roberta", "camembert", "xlm-roberta-xl", "distilbert", "electra", "whisper"),
    *("mamba", "falcon_mamba", "mamba2", "bart"),
)
KNOWN = sorted(t for t in TYING_FAMILIES if t in transformers.CONFIG_MAPPING)
assert all(family_for(t) is not None for t in KNOWN)
WITH_HEAD = [t for t in KNOWN if lm_class_for(t) is not None]


def _flag(model_type: str, **kwargs: bool) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.CONFIG_MAPPING[model_type](**kwargs)
    return config.tie_word_embeddings


def _default_flag(model_type: str) -> bool:
    return _flag(model_type)


@pytest.mark.parametrize("model_type", KNOWN)
def test_class_default_matches(model_type: str) -> None:
    """An absent flag means the class default; tiecheck must assume the same one."""
    family = family_for(model_type)
    assert family is not None
    default = _default_flag(model_type)
    if _flag(model_type, tie_word_embeddings=not default) == default:
        # transformers 5 forces the flag for the T5 family (mt5, umt5, longt5): there is no
        # default to compare with, and the registry may follow transformers 4.x.
        pytest.skip(f"transformers {TF_VERSION} forces tie_word_embeddings for {model_type}")
    assert family.default_tied == _default_flag(model_type), (
        f"{model_type}: tiecheck assumes tie_word_embeddings={family.default_tied} when the "
        f"flag is absent; transformers {TF_VERSION} defaults to {_default_flag(model_type)}"
    )


def _sweep_cases() -> list[object]:
    cases = []
    for model_type in WITH_HEAD:
        for tie in (True, False):
            label = f"{model_type}-{'tied' if tie else 'untied'}"
            cases.append(pytest.param(model_type, tie, id=label))
    return cases


@pytest.mark.parametrize(("model_type", "tie"), _sweep_cases())
def test_tiny_save_agrees_with_transformers(model_type: str, tie: bool, tmp_path: Path) -> None:
    model = tiny_of_type(model_type, tie)
    folder = tmp_path / model_type
    model.save_pretrained(folder)

    loaded, info = load_model(folder, lm_class_for(model_type))
    assert not info["missing_keys"], info
    expected = "tied" if tied_in_memory(loaded) else "untied"

    report = tiecheck.inspect(folder)
    assert not errors(report), errors(report)
    # warnings may be legitimate (TC107 on VLM configs whose levels disagree), tie-state
    # findings are not: a clean save is neither missing, diverged nor duplicated
    assert not {"TC101", "TC102", "TC103", "TC104"} & set(codes(report)), codes(report)
    assert report.verdict.value == expected, (
        f"transformers {TF_VERSION} loads this {model_type} save {expected}; tiecheck says "
        f"{report.verdict.value} ({codes(report)})"
    )
    files = assert_members_match_files(report, folder)

    if TF5:  # the names transformers ties that are stored under those names are grouped
        tie_map = loaded.get_expanded_tied_weights_keys(all_submodels=True)
        tied_names = (set(tie_map) | set(tie_map.values())) & set(files)
        grouped = {n for g in report.tie_groups for n in g.group.all_names()}
        assert tied_names <= grouped, f"transformers ties {tied_names - grouped}; not grouped"
