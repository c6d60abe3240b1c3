"""Real saves broken the way real-world bugs break them (TYING.md section 6), and transformers
loading each one: tiecheck's claim must be what the loader actually does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

import torch  # noqa: E402

import tiecheck  # noqa: E402
from tiecheck import GroupState, Severity  # noqa: E402

from .helpers import (  # noqa: E402
    TF5,
    assert_members_match_files,
    codes,
    edit_safetensors,
    errors,
    head_group,
    load_model,
    load_pickle,
    read_tensor,
    save_bin,
    stored_tensors,
    tied_in_memory,
    transformers_log,
)

EMBED = "model.embed_tokens.weight"
HEAD = "lm_head.weight"


def _only(report, code: str):
    found = [f for f in report.findings if f.code == code]
    assert len(found) == 1, (code, codes(report))
    return found[0]


def test_untied_head_missing_tc101(copied) -> None:
    """Declared untied, lm_head.weight dropped (Ministral-3 / Qwen3-VL-Embedding style)."""
    folder = copied("llama-untied")
    edit_safetensors(folder, lambda state: state.pop(HEAD))

    report = tiecheck.inspect(folder)
    tc101 = _only(report, "TC101")
    assert tc101.severity is Severity.ERROR
    assert tc101.keys[0] == HEAD
    assert report.verdict.value == "inconsistent"
    assert_members_match_files(report, folder)

    # the loader agrees: that exact key is missing and gets initialised at random
    model, info = load_model(folder)
    assert info["missing_keys"] == {tc101.keys[0]}
    assert not tied_in_memory(model)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_tied_but_diverged_tc102(copied, tmp_path: Path, dtype: torch.dtype) -> None:
    """Declared tied, a different (trained) head stored next to the embedding."""
    folder = copied("qwen2-tied")
    if dtype is not torch.float32:  # a real save in that dtype, as most checkpoints are
        model, _ = load_model(folder)
        model.to(dtype).save_pretrained(folder)
    trained = torch.randn(64, 16, generator=torch.Generator().manual_seed(7)).to(dtype)
    edit_safetensors(folder, lambda state: state.__setitem__(HEAD, trained.clone()))
    embedding = read_tensor(folder, EMBED)
    assert embedding.dtype is dtype

    report = tiecheck.inspect(folder)
    tc102 = _only(report, "TC102")
    assert tc102.severity is Severity.ERROR
    assert set(tc102.keys) == {EMBED, HEAD}
    assert report.verdict.value == "inconsistent"
    group = head_group(report)
    assert group.state is GroupState.DISTINCT
    expected_diff = (trained.double() - embedding.double()).abs().max().item()
    assert group.max_abs_diff == pytest.approx(expected_diff, rel=1e-6)
    assert group.differing_fraction == pytest.approx((trained != embedding).float().mean().item())

    with transformers_log() as log:
        model, info = load_model(folder)
    assert not info["missing_keys"]
    if TF5:
        # transformers 5 (observed 5.23): config.tie_word_embeddings stays True, but finding
        # both tensors stored with different values it does NOT tie them and logs a warning;
        # the trained head is kept as stored and the embedding is untouched. (4.x re-ties and
        # overwrites the head with the embedding; vLLM ignores the stored head.)
        assert model.config.tie_word_embeddings is True
        assert not tied_in_memory(model)
        assert torch.equal(model.lm_head.weight.detach(), trained)
        assert torch.equal(model.model.embed_tokens.weight.detach(), embedding)
        assert any("NOT" in m and "tie" in m for m in log), log

        # and saving that model again keeps the contradiction on disk
        model.save_pretrained(tmp_path / "resaved")
        assert json.loads((tmp_path / "resaved" / "config.json").read_text())["tie_word_embeddings"]
        assert {EMBED, HEAD} <= set(stored_tensors(tmp_path / "resaved"))
        assert "TC102" in codes(tiecheck.inspect(tmp_path / "resaved"))
    else:
        assert tied_in_memory(model)


def test_tied_duplicate_copy_tc103(copied) -> None:
    """Declared tied, the head stored as an identical copy (FSDP / zero_to_fp32 style)."""
    folder = copied("qwen2-tied")
    edit_safetensors(folder, lambda state: state.__setitem__(HEAD, state[EMBED].clone()))

    report = tiecheck.inspect(folder)
    tc103 = _only(report, "TC103")
    assert tc103.severity is Severity.WARNING
    assert tc103.details["wasted_bytes"] == 64 * 16 * 4
    assert report.verdict.value == "tied"
    assert not errors(report)
    assert head_group(report).state is GroupState.DUPLICATE

    with transformers_log() as log:
        model, info = load_model(folder)
    assert not info["missing_keys"]
    assert tied_in_memory(model)  # equal values: transformers ties them, silently
    assert not any("NOT" in m and "tie" in m for m in log), log


def test_embedding_missing_tc104_tied(copied) -> None:
    """Declared tied, only the head stored (the embedding was the name deduplication dropped,
    safetensors #265 / transformers #34759 style)."""
    folder = copied("qwen2-tied")
    edit_safetensors(folder, lambda state: state.__setitem__(HEAD, state.pop(EMBED)))
    stored_head = read_tensor(folder, HEAD)

    report = tiecheck.inspect(folder)
    tc104 = _only(report, "TC104")
    assert tc104.keys == (EMBED, HEAD)
    assert report.verdict.value == "inconsistent"
    assert_members_match_files(report, folder)

    model, info = load_model(folder)
    if TF5:
        # transformers 5 swaps source and target of the tie and ties the embedding to the
        # stored head: nothing is missing (observed 5.23); 4.x initialises the embedding.
        assert not info["missing_keys"]
        assert tied_in_memory(model)
        assert torch.equal(model.model.embed_tokens.weight.detach(), stored_head)
    else:
        assert EMBED in info["missing_keys"]


def test_embedding_missing_tc104_untied(copied) -> None:
    folder = copied("llama-untied")
    edit_safetensors(folder, lambda state: state.pop(EMBED))

    report = tiecheck.inspect(folder)
    tc104 = _only(report, "TC104")
    assert tc104.keys == (EMBED, HEAD)
    assert report.verdict.value == "inconsistent"

    _, info = load_model(folder)
    assert info["missing_keys"] == {EMBED}  # no tie to fall back on: random embedding


def test_pickle_shared_storage_tc109(saved, tmp_path: Path) -> None:
    """A ``.bin`` of a loaded tied model: embedding and head are one storage in the pickle."""
    model, _ = load_model(saved("qwen2-tied"))
    folder = tmp_path / "bin"
    save_bin(model, folder)
    shutil.copy(saved("qwen2-tied") / "config.json", folder / "config.json")

    state = load_pickle(folder / "pytorch_model.bin")  # torch's own view of the file
    assert state[EMBED].untyped_storage().data_ptr() == state[HEAD].untyped_storage().data_ptr()

    report = tiecheck.inspect(folder)
    tc109 = _only(report, "TC109")
    assert set(tc109.keys) == {EMBED, HEAD}
    assert tc109.severity is Severity.INFO
    assert report.verdict.value == "tied"
    assert not errors(report)
    assert head_group(report).state is GroupState.SHARED
    assert_members_match_files(report, folder)

    reloaded, info = load_model(folder)
    assert tied_in_memory(reloaded) and not info["missing_keys"]


def test_pickle_with_separate_head_storage(saved, tmp_path: Path) -> None:
    """A ``.bin`` written after cloning the head (tied config): the tie is lost in the file
    but the values are equal, so TC103 (duplicate) and no TC109."""
    model, _ = load_model(saved("qwen2-tied"))
    folder = tmp_path / "bin"
    folder.mkdir()
    state = model.state_dict()
    state[HEAD] = state[HEAD].clone()
    torch.save(state, folder / "pytorch_model.bin")
    shutil.copy(saved("qwen2-tied") / "config.json", folder / "config.json")

    report = tiecheck.inspect(folder)
    assert "TC109" not in codes(report)
    assert "TC103" in codes(report)
    assert head_group(report).state is GroupState.DUPLICATE
    assert report.verdict.value == "tied"
