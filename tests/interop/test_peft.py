"""PEFT as the writer: ``modules_to_save`` on a tied base stores separate embedding and head
copies (TC201), ``ensure_weight_tying`` keeps them one, and what merging does with either."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytestmark = pytest.mark.interop

import inspect as pyinspect  # noqa: E402

import torch  # noqa: E402

import tiecheck  # noqa: E402
from tiecheck import Severity  # noqa: E402

from .helpers import (  # noqa: E402
    codes,
    errors,
    head_group,
    load_model,
    read_tensor,
    stored_tensors,
    tied_in_memory,
)

# What PEFT writes for Llama-style models (observed with PEFT 0.21.2): the wrapper prefix
# base_model.model. and the module path, with the modules_to_save.<adapter> part removed.
ADAPTER_EMBED = "base_model.model.model.embed_tokens.weight"
ADAPTER_HEAD = "base_model.model.lm_head.weight"

HAS_ENSURE = "ensure_weight_tying" in pyinspect.signature(peft.LoraConfig).parameters


def _adapter(base: Path, folder: Path, *, train: bool, ensure: bool | None = None) -> list[str]:
    """Wrap the saved base with LoRA + modules_to_save=[embed_tokens, lm_head], optionally
    take one SGD step, save the adapter; returns the warnings PEFT raised."""
    model, _ = load_model(base)  # from the folder, so base_model_name_or_path is the folder
    extra = {} if ensure is None else {"ensure_weight_tying": ensure}
    config = peft.LoraConfig(
        r=2,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["embed_tokens", "lm_head"],
        **extra,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = peft.get_peft_model(model, config)
    if train:
        torch.manual_seed(0)
        trainable = [p for p in wrapped.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=0.5)
        ids = torch.randint(0, 64, (2, 8))
        wrapped(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    wrapped.save_pretrained(folder)
    return [str(w.message) for w in caught]


@pytest.fixture
def base(saved) -> Path:
    return saved("qwen2-tied")


def test_adapter_with_diverged_copies_tc201(base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    caught = _adapter(base, folder, train=True, ensure=False if HAS_ENSURE else None)
    if HAS_ENSURE:  # PEFT itself warns about this exact situation
        assert any("ensure_weight_tying" in m for m in caught), caught

    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert Path(adapter_config["base_model_name_or_path"]) == base
    assert adapter_config["modules_to_save"] == ["embed_tokens", "lm_head"]
    stored = stored_tensors(folder)
    assert {ADAPTER_EMBED, ADAPTER_HEAD} <= set(stored), sorted(stored)
    assert not torch.equal(read_tensor(folder, ADAPTER_EMBED), read_tensor(folder, ADAPTER_HEAD))

    # base config found through base_model_name_or_path, then again through base=
    for report in (tiecheck.inspect(folder), tiecheck.inspect(folder, base=base)):
        tc201 = [f for f in report.findings if f.code == "TC201"]
        assert len(tc201) == 1, codes(report)
        assert tc201[0].severity is Severity.ERROR
        assert set(tc201[0].keys) == {ADAPTER_EMBED, ADAPTER_HEAD}
        assert report.verdict.value == "inconsistent"
        assert set(head_group(report).stored_members) == {ADAPTER_EMBED, ADAPTER_HEAD}


def test_adapter_with_identical_copies_warns(base: Path, tmp_path: Path) -> None:
    """Copies saved before any training are still identical: TC201 as a warning."""
    folder = tmp_path / "adapter"
    _adapter(base, folder, train=False, ensure=False if HAS_ENSURE else None)
    assert torch.equal(read_tensor(folder, ADAPTER_EMBED), read_tensor(folder, ADAPTER_HEAD))

    report = tiecheck.inspect(folder)
    tc201 = [f for f in report.findings if f.code == "TC201"]
    assert len(tc201) == 1 and tc201[0].severity is Severity.WARNING, codes(report)
    assert not errors(report)


def test_adapter_for_untied_base_is_fine(saved, tmp_path: Path) -> None:
    """The same adapter on an untied base is two independent modules: nothing to report."""
    folder = tmp_path / "adapter"
    _adapter(saved("llama-untied"), folder, train=True)
    report = tiecheck.inspect(folder)
    assert "TC201" not in codes(report)
    assert not errors(report)


@pytest.mark.skipif(not HAS_ENSURE, reason="this PEFT has no ensure_weight_tying")
def test_adapter_with_ensure_weight_tying(base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    caught = _adapter(base, folder, train=True, ensure=True)
    assert not any("ensure_weight_tying" in m for m in caught), caught

    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["ensure_weight_tying"] is True
    # PEFT 0.21.2 rewrites modules_to_save to the embedding alone (lm_head follows it) ...
    assert "lm_head" not in adapter_config["modules_to_save"], adapter_config["modules_to_save"]
    # ... but still writes both names, with equal values.
    assert {ADAPTER_EMBED, ADAPTER_HEAD} <= set(stored_tensors(folder))
    assert torch.equal(read_tensor(folder, ADAPTER_EMBED), read_tensor(folder, ADAPTER_HEAD))

    report = tiecheck.inspect(folder)
    assert "TC201" not in codes(report), codes(report)
    assert not errors(report)
    assert report.verdict.value == "tied"


@pytest.mark.parametrize("ensure", [False, True], ids=["untied-copies", "ensure-tying"])
def test_merged_adapter_model(base: Path, tmp_path: Path, ensure: bool) -> None:
    """Load the adapter on its base with PEFT, merge_and_unload, save_pretrained: tiecheck must
    agree with how transformers loads the merged model back.

    Observed with PEFT 0.21.2 + transformers 5.23: merging diverged copies sets
    tie_word_embeddings=false on the merged config, so the merged save is a consistent untied
    model (TYING.md's "merged models keep tie_word_embeddings: true" is older PEFT behaviour);
    with ensure_weight_tying the merged model stays tied and is saved deduplicated.
    """
    if ensure and not HAS_ENSURE:
        pytest.skip("this PEFT has no ensure_weight_tying")
    adapter = tmp_path / "adapter"
    _adapter(base, adapter, train=True, ensure=ensure if HAS_ENSURE else None)
    model, _ = load_model(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = peft.PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged_folder = tmp_path / "merged"
    merged.save_pretrained(merged_folder)

    reloaded, info = load_model(merged_folder)
    assert not info["missing_keys"]
    assert torch.equal(reloaded.lm_head.weight, merged.lm_head.weight)
    assert torch.equal(reloaded.model.embed_tokens.weight, merged.model.embed_tokens.weight)
    report = tiecheck.inspect(merged_folder)
    assert not errors(report), errors(report)
    assert report.verdict.value == ("tied" if tied_in_memory(reloaded) else "untied")
    assert tied_in_memory(reloaded) == ensure
