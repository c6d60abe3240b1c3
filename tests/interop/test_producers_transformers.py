"""Safetensors written by accelerate's and safetensors' own savers (no config, alias records),
and transformers families the hand-written registry mishandled (DeBERTa-v2, ESM, RWKV,
Idefics3, SmolVLM), each saved by the real library in both tie states.

Every ``tiecheck fix`` output is loaded by real clients: the installed transformers (5.x) and,
when ``TIECHECK_TF4_PYTHON`` names an interpreter with transformers 4.57, that one too
(``external.py``). A client must report no missing, unexpected or mismatched key, hold the tie
state that was asked for, and compute the logits of the model the user asked for.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop
pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from producers import (  # noqa: E402
    FAMILIES,
    INPUT_IDS,
    codes,
    family_model,
    fix_cli,
    gpt2,
    head_groups,
    inspect_json,
    intended_logits,
    intended_model,
    load_pretrained,
    logits,
    messages,
    quiet,
    qwen2,
    read_safetensors_folder,
    safetensors_metadata,
    save_pretrained,
    tied_in_memory,
    write_accelerate,
    write_save_model,
)

from .external import load_with_tf4  # noqa: E402

CLIENTS = ["transformers", "transformers-4.57"]
TF4 = "transformers-4.57"


def _case(*values: Any, id: str) -> Any:
    """A parameter set; the transformers 4.57 client starts a process per load (~5 s): slow."""
    return pytest.param(*values, id=id, marks=[pytest.mark.slow] if TF4 in values else [])


TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
"""between transformers 4.57 in another process and 5.x here (same torch, same CPU); within
one process the comparison is exact."""


@dataclass(frozen=True)
class Loaded:
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    tied: bool
    flag: bool | None
    logits: Any


def _with_config(folder: Path, config: Any, tmp: Path) -> Path:
    """A copy of a fix output with ``config`` saved beside the weights, as a user must put one
    there before transformers can load a checkpoint that came without (transformers 5.24
    cannot load a folder with neither config.json nor generation_config.json even when
    given the config: it opens ``None``)."""
    target = tmp / "with-config"
    shutil.copytree(folder, target)
    config.save_pretrained(target)
    return target


def _load(client: str, folder: Path) -> Loaded:
    """Load ``folder`` (with its config.json) with ``client``."""
    if client == "transformers":
        model, info = load_pretrained(folder)
        return Loaded(
            sorted(info["missing_keys"]),
            sorted(info["unexpected_keys"]),
            sorted(str(k) for k in info.get("mismatched_keys", [])),
            tied_in_memory(model),
            getattr(model.config, "tie_word_embeddings", None),
            logits(model),
        )
    out = load_with_tf4(folder, INPUT_IDS)
    return Loaded(
        out["missing"],
        out["unexpected"],
        out["mismatched"],
        out["tied"],
        out["tie_word_embeddings"],
        torch.tensor(out["logits"]),
    )


def _assert_loads_as(client: str, loaded: Loaded, to: str, expected: Any) -> None:
    assert loaded.missing == [], f"{client}: missing {loaded.missing}"
    assert loaded.unexpected == [], f"{client}: unexpected {loaded.unexpected}"
    assert loaded.mismatched == [], f"{client}: mismatched {loaded.mismatched}"
    assert loaded.tied is (to == "tied"), f"{client}: tied in memory is {loaded.tied}"
    if client == "transformers":
        assert torch.equal(loaded.logits, expected)
    else:
        assert torch.allclose(loaded.logits, expected, **TOLERANCE), (
            (loaded.logits - expected).abs().max()
        )


def _config_for(model: Any, tie: bool) -> Any:
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.tie_word_embeddings = tie
    return config


def _param_names(model: Any, param: Any) -> set[str]:
    return {n for n, p in model.named_parameters(remove_duplicate=False) if p is param}


# ---------------------------------------------------------------------------------------------
# accelerate and safetensors.torch.save_model


@dataclass(frozen=True)
class Saved:
    source: Path
    """what tiecheck is given: the folder (accelerate) or the file (save_model)."""
    model: Any


@pytest.fixture(scope="module")
def savers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    root = tmp_path_factory.mktemp("savers")
    q, g = qwen2(tie=True, seed=0), gpt2(seed=1)
    return {
        "accelerate-qwen2": Saved(write_accelerate(q, root / "acc-qwen2"), q),
        "accelerate-gpt2": Saved(write_accelerate(g, root / "acc-gpt2"), g),
        "save_model-qwen2": Saved(write_save_model(q, root / "sm-qwen2" / "model.safetensors"), q),
        "save_model-gpt2": Saved(write_save_model(g, root / "sm-gpt2" / "model.safetensors"), g),
    }


def _file(saved: Saved) -> Path:
    return saved.source if saved.source.is_file() else saved.source / "model.safetensors"


def _tie_names(model: Any) -> set[str]:
    return _param_names(model, model.get_input_embeddings().weight)


@pytest.mark.parametrize("name", ["save_model-qwen2", "save_model-gpt2"])
def test_save_model_alias_record_names_the_pair(savers: dict[str, Saved], name: str) -> None:
    saved = savers[name]
    records = {k: v for k, v in safetensors_metadata(_file(saved)).items() if k != "format"}
    # the producer's behaviour: the alphabetically first name (lm_head.weight) is kept
    assert records and set(records.values()) == {"lm_head.weight"}, records
    (dropped,) = records

    code, report = inspect_json(saved.source)
    (group,) = head_groups(report)
    assert set(group["members"]) == {dropped, "lm_head.weight"}, group  # from the record
    assert group["stored_members"] == ["lm_head.weight"]
    assert "alias-record" in group["evidence"], group
    # the embedding itself is not stored: transformers 5 swaps source and target and loads it,
    # 4.57 fails to load it (checked against the real client in test_tf4_fails_on_save_model):
    # TC104, naming the record's name, never another family's
    assert "TC101" not in codes(report), messages(report)
    (tc104,) = [f for f in report["findings"] if f["code"] == "TC104"]
    assert tc104["keys"] == [dropped, "lm_head.weight"], tc104
    assert report["verdict"] == "inconsistent" and code == 1


@pytest.mark.parametrize("name", ["accelerate-qwen2", "accelerate-gpt2"])
def test_accelerate_save_model_is_a_deduplicated_tie(savers: dict[str, Saved], name: str) -> None:
    saved = savers[name]
    stored = set(read_safetensors_folder(saved.source))
    tie = _tie_names(saved.model)
    kept = tie & stored
    assert len(kept) == 1, (tie, kept)  # the producer kept one name of the tie

    code, report = inspect_json(saved.source)
    (group,) = head_groups(report)
    assert set(group["members"]) == tie, group
    assert group["stored_members"] == sorted(kept)
    assert "TC101" not in codes(report) and "TC104" not in codes(report), messages(report)
    assert report["verdict"] == "tied"
    assert not messages(report, "error") and code == 0, messages(report)


SAVER_CASES = [
    _case(n, to, c, id=f"{n}-to-{to}-{c}")
    for n in ("accelerate-qwen2", "save_model-gpt2", "save_model-qwen2")
    for to in ("tied", "untied")
    for c in CLIENTS
]


@pytest.mark.parametrize(("name", "to", "client"), SAVER_CASES)
def test_saver_fix_outputs_load_in_transformers(
    savers: dict[str, Saved], tmp_path: Path, name: str, to: str, client: str
) -> None:
    """No config in the source: the requested state is the declaration, so the output must
    pass tiecheck's own verification (no TC112) and load with a config saying the same."""
    saved = savers[name]
    out = tmp_path / "out"
    result = fix_cli(saved.source, to, out)
    assert result.exit_code == 0, result.stdout + result.stderr
    code, report = inspect_json(out, "--expect", to)
    assert "TC112" not in codes(report), messages(report)
    assert code == 0, messages(report)

    config = _config_for(saved.model, to == "tied")
    loaded = _load(client, _with_config(out, config, tmp_path))
    _assert_loads_as(client, loaded, to, intended_logits(saved.model, to))


# ---------------------------------------------------------------------------------------------
# transformers families


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Saved]:
    root = tmp_path_factory.mktemp("families")
    out = {}
    for i, name in enumerate(FAMILIES):
        for tie in (True, False):
            model = family_model(name, tie, seed=i)
            assert tied_in_memory(model) is tie, f"{name}: the config did not take tie={tie}"
            out[(name, tie)] = Saved(save_pretrained(model, root / f"{name}-{tie}"), model)
    return out


FAMILY_CASES = [(n, t) for n in FAMILIES for t in (True, False)]
FAMILY_IDS = [f"{n}-{'tied' if t else 'untied'}" for n, t in FAMILY_CASES]


@pytest.mark.parametrize(("name", "tie"), FAMILY_CASES, ids=FAMILY_IDS)
def test_healthy_family_save_is_not_blamed(
    families: dict[tuple[str, bool], Saved], name: str, tie: bool
) -> None:
    saved = families[(name, tie)]
    model = saved.model
    emb_names = _param_names(model, model.get_input_embeddings().weight)
    head_names = _param_names(model, model.get_output_embeddings().weight)

    code, report = inspect_json(saved.source)
    assert "TC101" not in codes(report) and "TC104" not in codes(report), messages(report)
    assert report["verdict"] == ("tied" if tie else "untied"), messages(report)
    (group,) = head_groups(report)
    assert set(group["members"]) >= emb_names | head_names, group
    assert not messages(report, "error") and code == 0, messages(report)


FIX_CASES = [
    _case(
        n,
        tie,
        to,
        keep,
        c,
        id=f"{n}-{'tied' if tie else 'untied'}-to-{to}"
        + (f"-keep-{keep}" if keep else "")
        + f"-{c}",
    )
    for n in FAMILIES
    for tie, to, keep in (
        (True, "untied", None),
        (True, "tied", None),
        (False, "untied", None),
        (False, "tied", "embedding"),
        (False, "tied", "head"),
    )
    for c in CLIENTS
]


@pytest.mark.parametrize(("name", "tie", "to", "keep", "client"), FIX_CASES)
def test_family_fix_outputs_load_as_asked(
    families: dict[tuple[str, bool], Saved],
    tmp_path: Path,
    name: str,
    tie: bool,
    to: str,
    keep: str | None,
    client: str,
) -> None:
    saved = families[(name, tie)]
    out = tmp_path / "out"
    result = fix_cli(saved.source, to, out, *(("--keep", keep) if keep else ()))
    assert result.exit_code == 0, result.stdout + result.stderr
    loaded = _load(client, out)
    assert loaded.flag is (to == "tied"), f"{client}: tie_word_embeddings is {loaded.flag}"
    intended = intended_model(saved.model, to, keep)
    if client == "transformers":
        expected = logits(intended)
    else:
        # transformers 4.57 computes some families differently from 5.x (DeBERTa-v2's
        # attention): compare with what it computes from 5.x's own save of the intended model
        with quiet():
            intended.save_pretrained(tmp_path / "intended")
        expected = _load(client, tmp_path / "intended").logits
    _assert_loads_as(client, loaded, to, expected)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_fix_tied_refuses_a_different_head_without_keep(
    families: dict[tuple[str, bool], Saved], tmp_path: Path, name: str
) -> None:
    """Never store the trained head as the embedding (or drop it) unless asked: the untied
    save's head differs from its embedding, so ``--to tied`` needs ``--keep``."""
    saved = families[(name, False)]
    model = saved.model
    assert not torch.equal(
        model.get_input_embeddings().weight, model.get_output_embeddings().weight
    )
    out = tmp_path / "out"
    result = fix_cli(saved.source, "tied", out)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "--keep" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_family_keep_head_really_moves_the_head(
    families: dict[tuple[str, bool], Saved], tmp_path: Path
) -> None:
    """--keep head stores the head's values under the embedding's name (so the two keeps give
    different models): the logits comparison above can tell them apart."""
    saved = families[("smolvlm", False)]
    stored = read_safetensors_folder(saved.source)
    emb, head = "model.text_model.embed_tokens.weight", "lm_head.weight"
    for keep in ("embedding", "head"):
        out = tmp_path / keep
        result = fix_cli(saved.source, "tied", out, "--keep", keep)
        assert result.exit_code == 0, result.stdout + result.stderr
        written = read_safetensors_folder(out)
        assert set(written) == set(stored) - {head}
        assert torch.equal(written[emb], stored[head if keep == "head" else emb])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["save_model-gpt2", "save_model-qwen2"])
def test_tf4_fails_on_save_model_output_as_tc104_says(
    savers: dict[str, Saved], tmp_path: Path, name: str
) -> None:
    """TC104's claim, held to the real client: a head stored without its embedding (what
    save_model writes) does not load in transformers 4.57, even with the config beside it and
    the 'format' metadata 4.x insists on."""
    from safetensors.torch import load_file, save_file

    from .external import run_json

    saved = savers[name]
    source = saved.source if saved.source.is_dir() else saved.source.parent
    folder = _with_config(source, _config_for(saved.model, True), tmp_path)
    (file,) = folder.glob("*.safetensors")
    metadata = {**safetensors_metadata(file), "format": "pt"}
    save_file(load_file(str(file)), str(file), metadata=metadata)
    code, _, _ = run_json("TIECHECK_TF4_PYTHON", "tf4_loader.py", folder, "--ids", "[[1, 2]]")
    assert code != 0, "transformers 4.57 loaded a checkpoint whose embedding is missing"
    _, report = inspect_json(folder)
    assert "TC104" in codes(report)
