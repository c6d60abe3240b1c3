"""Tie states, the findings each state earns under each declaration (TYING.md section 4), and
the numbers reported for diverged copies, recomputed here with numpy/torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import (
    HIDDEN,
    LLAMA,
    QWEN2,
    VOCAB,
    codes,
    decoder_arrays,
    findings_with,
    model_folder,
    save_numpy,
    serious,
)
from tiecheck.analysis.ties import GroupState, Verdict

EMB, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def folder_with(tmp_path: Path, *, tied: bool, head: str, embedding: bool = True) -> Path:
    """head: 'absent', 'identical' or 'diverged'."""
    tensors = decoder_arrays(3, head=None)
    if head == "identical":
        tensors[HEAD] = tensors[EMB].copy()
    elif head == "diverged":
        tensors[HEAD] = tensors[EMB].copy()
        tensors[HEAD][:4] += 0.5
    if not embedding:
        del tensors[EMB]
    config = {**(QWEN2 if tied else LLAMA), "tie_word_embeddings": tied}
    return model_folder(tmp_path, tensors, config)


# TYING.md section 4 rows, as (declared tied?, head on disk) -> (state, codes, verdict)
MATRIX = [
    (True, "absent", GroupState.DEDUPLICATED, set(), Verdict.TIED),
    (True, "identical", GroupState.DUPLICATE, {"TC103"}, Verdict.TIED),
    (True, "diverged", GroupState.DISTINCT, {"TC102"}, Verdict.INCONSISTENT),
    (False, "absent", GroupState.DEDUPLICATED, {"TC101"}, Verdict.INCONSISTENT),
    (False, "identical", GroupState.DUPLICATE, {"TC105"}, Verdict.UNTIED),
    (False, "diverged", GroupState.DISTINCT, set(), Verdict.UNTIED),
]


@pytest.mark.parametrize(("tied", "head", "state", "expected", "verdict"), MATRIX)
def test_state_matrix(
    tmp_path: Path,
    tied: bool,
    head: str,
    state: GroupState,
    expected: set[str],
    verdict: Verdict,
) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=tied, head=head))
    (group,) = report.tie_groups
    assert group.state is state
    assert group.declared is tied
    assert codes(report) == expected
    assert report.verdict is verdict


def test_severities_follow_the_damage() -> None:
    from tiecheck.rules import RULES

    # silent data loss or random weights are errors; waste is a warning; harmless is info
    assert {c: RULES[c].severity.value for c in ("TC101", "TC102", "TC104")} == dict.fromkeys(
        ("TC101", "TC102", "TC104"), "error"
    )
    assert RULES["TC103"].severity.value == "warning"
    assert RULES["TC105"].severity.value == "info"


@pytest.mark.parametrize("tied", [True, False])
def test_embedding_missing_head_present_is_tc104(tmp_path: Path, tied: bool) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=tied, head="diverged", embedding=False))
    (tc104,) = findings_with(report, "TC104")
    assert tc104.keys == (EMB, HEAD)
    assert report.verdict is Verdict.INCONSISTENT
    assert "TC101" not in codes(report)


def test_duplicate_reports_the_wasted_bytes(tmp_path: Path) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=True, head="identical"))
    (tc103,) = findings_with(report, "TC103")
    assert tc103.details["wasted_bytes"] == VOCAB * HIDDEN * 4
    (group,) = report.tie_groups
    assert group.nbytes == 2 * VOCAB * HIDDEN * 4


# -- numbers for diverged copies -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_diverged_stats_match_an_independent_computation(tmp_path: Path, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(11)
    emb = (torch.randn(VOCAB, HIDDEN, generator=g) * 0.02).to(getattr(torch, dtype))
    head = emb.clone()
    head[3:9] = (head[3:9].float() + 0.0625).to(head.dtype)  # a fine-tuned band of rows
    head[40, 7] = (head[40, 7].float() - 1.5).to(head.dtype)  # one large change
    head[50, 0] = (head[50, 0].float() * 1.001).to(head.dtype)  # may round to no change
    save_file(
        {EMB: emb, HEAD: head, "model.norm.weight": torch.ones(HIDDEN)},
        str(tmp_path / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "tie_word_embeddings": true}')

    int_view = torch.int16 if emb.element_size() == 2 else torch.int32
    bits_differ = emb.view(int_view) != head.view(int_view)
    expected_fraction = bits_differ.double().mean().item()
    expected_max = (head.double() - emb.double()).abs().max().item()
    assert 0 < expected_fraction < 1 and expected_max >= 1.4

    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    assert group.state is GroupState.DISTINCT
    assert group.max_abs_diff == expected_max
    assert group.differing_fraction == pytest.approx(expected_fraction, abs=0)
    (tc102,) = findings_with(report, "TC102")
    differing = int(bits_differ.sum())
    assert f"{differing:,} of {bits_differ.numel():,} elements differ" in tc102.message
    assert f"max |diff| {expected_max:.4g}" in tc102.message


@pytest.mark.parametrize("candidates", [2, 3], ids=["pairwise", "by-digest"])
def test_identical_samples_but_different_bytes_are_not_a_duplicate(
    tmp_path: Path, candidates: int
) -> None:
    # 64 KiB tensors equal in their first, middle and last 4 KiB, different elsewhere
    emb = np.linspace(-1, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    head = emb.copy()
    head.reshape(-1)[5000] += 0.25  # byte 20000: outside every sampled window
    tensors = {EMB: emb, HEAD: head}
    if candidates == 3:
        third = emb.copy()
        third.reshape(-1)[12000] -= 0.5  # byte 48000: outside every sampled window
        tensors["model.other_embed.weight"] = third
    model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    assert group.state is GroupState.DISTINCT
    assert group.differing_fraction == pytest.approx(1 / emb.size)
    assert group.max_abs_diff == pytest.approx(0.25)
    assert report.duplicates == []
    assert "TC103" not in codes(report) and "TC114" not in codes(report)


def test_three_identical_copies_outside_a_tie_are_tc114(tmp_path: Path) -> None:
    tensors = decoder_arrays(4)
    w = tensors["model.layers.0.self_attn.q_proj.weight"]
    tensors["model.layers.1.self_attn.q_proj.weight"] = w.copy()
    tensors["model.extra.weight"] = w.copy()
    model_folder(tmp_path, tensors, {**LLAMA, "tie_word_embeddings": False})
    report = tiecheck.inspect(tmp_path)
    (tc114,) = findings_with(report, "TC114")
    assert set(tc114.keys) == {
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.extra.weight",
    }
    assert tc114.details["wasted_bytes"] == 2 * w.nbytes
    assert [sorted(d.keys) for d in report.duplicates] == [sorted(tc114.keys)]


# -- side-cars of quantised heads follow the tie ---------------------------------------------------


def mlx_member(seed: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "weight": g.integers(0, 2**32, size=(VOCAB, 16), dtype=np.uint32),
        "scales": g.standard_normal((VOCAB, 2)).astype(np.float16),
        "biases": g.standard_normal((VOCAB, 2)).astype(np.float16),
    }


@pytest.mark.parametrize(
    ("differs", "state", "code"),
    [
        (None, GroupState.DUPLICATE, "TC103"),
        ("scales", GroupState.DISTINCT, "TC102"),
        ("weight", GroupState.DISTINCT, "TC102"),
    ],
)
def test_quantised_tie_compares_weight_and_sidecars(
    tmp_path: Path, differs: str | None, state: GroupState, code: str
) -> None:
    emb = mlx_member(1)
    head = {k: v.copy() for k, v in emb.items()}
    if differs is not None:
        head[differs][0, 0] += 1
    tensors = {f"model.embed_tokens.{k}": v for k, v in emb.items()}
    tensors |= {f"lm_head.{k}": v for k, v in head.items()}
    model_folder(tmp_path, tensors, {"model_type": "qwen3", "tie_word_embeddings": True})
    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    assert group.state is state
    assert serious(report) == {code}


# -- --no-data, --expect ---------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["identical", "diverged"])
def test_no_data_reads_no_tensor_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head: str
) -> None:
    folder = folder_with(tmp_path, tied=True, head=head)
    full = tiecheck.inspect(folder)
    assert full.bytes_read > 0

    def no_reads(*_args: object) -> bytes:
        raise OSError("tensor data was read")

    monkeypatch.setattr(os, "pread", no_reads)
    monkeypatch.setattr(np, "memmap", no_reads)
    report = tiecheck.inspect(folder, no_data=True)
    assert report.bytes_read == 0
    assert report.duplicates is None
    (group,) = report.tie_groups
    assert group.state is GroupState.NOT_COMPARED
    assert codes(report) == {"TC113"}
    assert report.verdict is Verdict.TIED
    # the same patch does stop a run that compares values: proof the patch bites
    assert "TC001" in codes(tiecheck.inspect(folder))


def test_no_data_on_an_untied_model_with_two_copies(tmp_path: Path) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=False, head="identical"), no_data=True)
    (group,) = report.tie_groups
    assert group.state is GroupState.NOT_COMPARED
    assert codes(report) == set()  # TC105 needs the values
    assert report.verdict is Verdict.UNTIED


def test_no_data_still_sees_shared_pickle_storage(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    emb = torch.randn(VOCAB, HIDDEN)
    torch.save({EMB: emb, HEAD: emb}, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "tie_word_embeddings": true}')
    report = tiecheck.inspect(tmp_path, no_data=True)
    assert report.bytes_read == 0
    (group,) = report.tie_groups
    assert group.state is GroupState.SHARED
    assert codes(report) == {"TC109"}


@pytest.mark.parametrize(
    ("head", "expect", "mismatch"),
    [
        ("absent", "tied", False),
        ("absent", "untied", True),
        ("diverged", "untied", True),
    ],
)
def test_expect(tmp_path: Path, head: str, expect: str, mismatch: bool) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=True, head=head), expect=expect)
    tc112 = findings_with(report, "TC112")
    assert bool(tc112) is mismatch
    if mismatch:
        assert tc112[0].severity.value == "error"
        assert expect in tc112[0].message and report.verdict.value in tc112[0].message


def test_no_config_verdict_is_inferred_from_storage(tmp_path: Path) -> None:
    separate = decoder_arrays(5)
    model_folder(tmp_path / "separate", separate, None)
    one = decoder_arrays(6, head=None)
    model_folder(tmp_path / "one", one, None)
    assert tiecheck.inspect(tmp_path / "separate").verdict is Verdict.UNTIED
    assert tiecheck.inspect(tmp_path / "one").verdict is Verdict.TIED
    for name in ("separate", "one"):
        assert codes(tiecheck.inspect(tmp_path / name)) == {"TC111"}


def test_t5_fixture_aliases_are_tied_whatever_the_flag(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "t5-shared")
    (group,) = report.tie_groups
    relations = {m.name: m.relation.value for m in group.members}
    assert relations == {
        "shared.weight": "reference",
        "encoder.embed_tokens.weight": "duplicate",
        "decoder.embed_tokens.weight": "duplicate",
        "lm_head.weight": "distinct",
    }
    tc103 = findings_with(report, "TC103")
    assert sorted(f.keys[1] for f in tc103) == [
        "decoder.embed_tokens.weight",
        "encoder.embed_tokens.weight",
    ]
    assert "TC102" not in codes(report)  # the head is declared untied (Flan-T5)
    assert report.verdict is Verdict.UNTIED


def test_one_shard_holding_a_shared_head_as_a_float_copy(tmp_path: Path) -> None:
    # dtype differs between the copies: never called identical
    tensors = decoder_arrays(7, head=None)
    tensors[HEAD] = tensors[EMB].astype(np.float16)
    save_numpy(tmp_path / "model.safetensors", tensors)
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "tie_word_embeddings": true}')
    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    assert group.state is GroupState.DISTINCT
    assert "TC103" not in codes(report)
    assert "TC102" in codes(report)


@pytest.mark.parametrize("writer", ["safetensors.save_model", "huggingface_hub"])
def test_writers_that_keep_the_alphabetically_first_name(tmp_path: Path, writer: str) -> None:
    # TYING.md section 1: these writers keep lm_head.weight and drop the embedding, leaving an
    # alias record {dropped: kept}; loaders that do not read the record miss the embedding
    torch = pytest.importorskip("torch")
    emb = torch.randn(VOCAB, HIDDEN)
    if writer == "huggingface_hub":
        from huggingface_hub import save_torch_state_dict

        state = {EMB: emb, HEAD: emb, "model.norm.weight": torch.randn(HIDDEN)}
        save_torch_state_dict(state, tmp_path)
    else:
        from safetensors.torch import save_model

        model = torch.nn.Module()
        model.model = torch.nn.Module()
        model.model.embed_tokens = torch.nn.Embedding(VOCAB, HIDDEN)
        model.model.norm = torch.nn.LayerNorm(HIDDEN)
        model.lm_head = torch.nn.Linear(HIDDEN, VOCAB, bias=False)
        model.lm_head.weight = model.model.embed_tokens.weight
        save_model(model, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text('{"model_type": "qwen2", "tie_word_embeddings": true}')

    report = tiecheck.inspect(tmp_path)
    stored = {t.name for t in report.checkpoint.tensors}
    assert HEAD in stored and EMB not in stored
    assert report.checkpoint.files["model.safetensors"].metadata[EMB] == HEAD
    assert serious(report) == {"TC104"}  # the record itself is accurate: no TC108
    assert report.verdict is Verdict.INCONSISTENT


# -- exact counts, tolerance, constant tensors, unknown members ----------------------------


def test_a_head_one_element_off_is_counted_exactly_and_tolerance_decides(tmp_path: Path) -> None:
    tensors = decoder_arrays(5, head=None)
    head = tensors[EMB].copy()
    head[7, 3] += np.float32(1e-6)
    tensors[HEAD] = head
    folder = model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    strict = tiecheck.inspect(folder)  # default rtol 1e-5 of a ~0.02 value: 2e-7 allowed
    (tc102,) = findings_with(strict, "TC102")
    assert f"1 of {head.size:,} elements differ" in tc102.message
    assert "0.0%" not in tc102.message
    loose = tiecheck.inspect(folder, rtol=1e-3)
    (group,) = loose.tie_groups
    assert group.state is GroupState.CLOSE
    assert serious(loose) == {"TC103"}
    (tc103,) = findings_with(loose, "TC103")
    assert "numerically identical copy (1 of" in tc103.message
    assert loose.verdict is Verdict.TIED


def test_integer_tensors_get_no_tolerance(tmp_path: Path) -> None:
    """A packed quantised weight one unit off is another value, whatever --rtol says."""
    tensors = decoder_arrays(6, head=None)
    emb = (np.arange(VOCAB * HIDDEN, dtype=np.int32) * 1000).reshape(VOCAB, HIDDEN)
    head = emb.copy()
    head[0, 1] += 1
    tensors[EMB], tensors[HEAD] = emb, head
    folder = model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    report = tiecheck.inspect(folder, rtol=0.5)
    assert report.tie_groups[0].state is GroupState.DISTINCT
    assert "TC102" in codes(report)


def test_constant_tensors_are_not_reported_as_stored_twice(tmp_path: Path) -> None:
    """Every freshly initialised model has norms of ones and zero biases: equal by construction."""
    tensors = decoder_arrays(7, head=None)
    for i in range(2):
        tensors[f"model.layers.{i}.input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
        tensors[f"model.layers.{i}.mlp.bias"] = np.zeros(HIDDEN, np.float32)
    same = np.random.default_rng(1).standard_normal(HIDDEN).astype(np.float32)
    tensors["model.layers.0.extra.weight"] = same
    tensors["model.layers.1.extra.weight"] = same.copy()
    folder = model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    report = tiecheck.inspect(folder)
    assert report.duplicates is not None and len(report.duplicates) == 3  # all found equal
    (tc114,) = findings_with(report, "TC114")  # only the non-constant pair is reported
    assert set(tc114.keys) == {"model.layers.0.extra.weight", "model.layers.1.extra.weight"}


def test_a_healthy_untied_head_is_in_neutral_words(tmp_path: Path) -> None:
    report = tiecheck.inspect(folder_with(tmp_path, tied=False, head="diverged"))
    (group,) = report.tie_groups
    assert group.state is GroupState.DISTINCT
    from core_helpers import run_cli

    table = run_cli("inspect", tmp_path)
    assert "(own values)" in table.stdout
    assert "diverged" not in table.stdout and "differs" not in table.stdout


def test_a_head_in_a_missing_shard_is_unknown_not_deduplicated(tmp_path: Path) -> None:
    from core_helpers import write_config, write_index

    tensors = decoder_arrays(8, head=None)
    tensors[HEAD] = tensors[EMB] * 2
    save_numpy(tmp_path / "model-00001-of-00002.safetensors", {EMB: tensors.pop(EMB)})
    weight_map = {EMB: "model-00001-of-00002.safetensors", HEAD: "model-00002-of-00002.safetensors"}
    write_index(tmp_path, weight_map, 0)
    write_config(tmp_path, **LLAMA, tie_word_embeddings=False)
    report = tiecheck.inspect(tmp_path)
    (group,) = report.tie_groups
    assert group.state is GroupState.UNKNOWN
    head = next(m for m in group.members if m.name == HEAD)
    assert head.relation.value == "unavailable"
    assert "TC003" in codes(report) and "TC101" not in codes(report)
