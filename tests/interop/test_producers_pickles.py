"""Pickled checkpoints written by training code that is not transformers: nanoGPT, Meta's
original Llama format, Lingua (DCP and consolidated) and torchtune.

Each checkpoint is written the way its producer writes it (``producers.py`` says how, and
from which source file the layout was learned); each ``tiecheck fix`` output is loaded back by
that producer's own loading path, strictly, and must compute the same logits as the model the
user asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
torch = pytest.importorskip("torch")

from producers import (  # noqa: E402
    codes,
    fix_cli,
    head_groups,
    inspect_json,
    lingua_logits,
    lingua_model,
    logits,
    messages,
    meta_logits,
    meta_model,
    nanogpt_logits_of_checkpoint,
    nanogpt_model,
    nanogpt_state,
    read_safetensors_folder,
    report_names,
    torchtune_file,
    torchtune_logits,
    torchtune_state,
    write_lingua,
    write_meta_llama,
    write_nanogpt,
    write_torchtune,
)

PREFIX = "_orig_mod."
WTE, LM_HEAD = "transformer.wte.weight", "lm_head.weight"
TOK, OUTPUT = "tok_embeddings.weight", "output.weight"
LINGUA_TIED = "output.tied_module.weight"


def _bare(name: str) -> str:
    return name.removeprefix(PREFIX)


def _assert_inspect_passes(report: dict, code: int, expect: str) -> None:
    assert report["verdict"] == expect, (report["verdict"], messages(report))
    assert code == 0, messages(report)
    assert not messages(report, "error"), messages(report, "error")


# ---------------------------------------------------------------------------------------------
# nanoGPT


@pytest.fixture(scope="module")
def nanogpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nanogpt")
    return {
        "compiled": write_nanogpt(root / "compiled", compiled=True, seed=0),
        "plain": write_nanogpt(root / "plain", compiled=False, seed=1),
    }


def test_nanogpt_checkpoint_is_what_train_py_writes(nanogpt: dict[str, Path]) -> None:
    """The fixture itself: the keys, the prefix and the shared storage are nanoGPT's."""
    raw = torch.load(nanogpt["compiled"], weights_only=True)
    assert set(raw) == {"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"}
    assert all(k.startswith(PREFIX) for k in raw["model"])
    model = raw["model"]
    assert model[PREFIX + WTE].untyped_storage().data_ptr() == (
        model[PREFIX + LM_HEAD].untyped_storage().data_ptr()
    )
    exp_avg = [s["exp_avg"] for s in raw["optimizer"]["state"].values()]
    assert any(t.shape == model[PREFIX + WTE].shape for t in exp_avg)
    plain = torch.load(nanogpt["plain"], weights_only=True)["model"]
    assert not any(k.startswith(PREFIX) for k in plain)


@pytest.mark.parametrize("variant", ["compiled", "plain"])
def test_nanogpt_reads_the_model_entry_and_finds_the_tie(
    nanogpt: dict[str, Path], variant: str
) -> None:
    ckpt = nanogpt[variant]
    _, state = nanogpt_state(ckpt)
    code, report = inspect_json(ckpt)

    (file,) = report["source"]["files"]
    assert file["container"] == "model", file
    # The optimizer's exp_avg / exp_avg_sq (same shapes as the weights) and best_val_loss are
    # not weights: exactly the model's tensors are counted.
    assert report["tensors"] == len(state), report["tensors"]
    assert {_bare(n) for n in report_names(report)} <= set(state)
    assert "TC008" not in codes(report)
    assert report["verdict"] != "not-applicable"

    (group,) = head_groups(report)
    assert {_bare(m) for m in group["members"]} == {WTE, LM_HEAD}
    assert any({_bare(k) for k in s["keys"]} >= {WTE, LM_HEAD} for s in report["shared_storage"]), (
        report["shared_storage"]
    )
    _assert_inspect_passes(report, code, "tied")


@pytest.mark.parametrize("variant", ["compiled", "plain"])
def test_nanogpt_fix_outputs_load_into_gpt_strictly(
    nanogpt: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    """``--to tied`` then ``--to untied`` (and ``--to untied`` straight from ckpt.pt): each
    output loads strictly into nanoGPT's GPT (tied as nanoGPT ties it, or its untied twin)
    and gives the logits of the original checkpoint, bit for bit."""
    ckpt = nanogpt[variant]
    model_args, state = nanogpt_state(ckpt)
    expected = nanogpt_logits_of_checkpoint(ckpt)

    tied = tmp_path / "tied"
    result = fix_cli(ckpt, "tied", tied)
    assert result.exit_code == 0, result.stdout + result.stderr
    stored = read_safetensors_folder(tied)
    # one name of the tie dropped; nothing of the optimizer written
    assert set(stored) < set(state) and len(state) - len(stored) == 1, sorted(stored)
    model = nanogpt_model(model_args, tie=True)
    from safetensors.torch import load_model

    (file,) = tied.glob("*.safetensors")
    load_model(model, str(file), strict=True)
    assert torch.equal(logits(model), expected)

    for name, source in (("untied-from-tied", tied), ("untied-from-ckpt", ckpt)):
        out = tmp_path / name
        result = fix_cli(source, "untied", out)
        assert result.exit_code == 0, result.stdout + result.stderr
        stored = read_safetensors_folder(out)
        assert set(stored) == set(state), name
        model = nanogpt_model(model_args, tie=False)
        model.load_state_dict(stored, strict=True)
        assert model.lm_head.weight is not model.transformer.wte.weight
        assert torch.equal(logits(model), expected), name
        code, report = inspect_json(out, "--expect", "untied")
        assert "TC112" not in codes(report), messages(report)
        assert code == 0, messages(report)


# ---------------------------------------------------------------------------------------------
# Meta's original format


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("meta")
    return {head: write_meta_llama(root / head, head=head) for head in ("own", "copy", "missing")}


def test_meta_checkpoint_loads_in_the_reference_model(meta: dict[str, Path]) -> None:
    """The fixture itself: llama-models' strict load accepts it (and refuses the one without
    ``output.weight``, which is why TC101 matters for this format)."""
    meta_logits(meta["own"])
    with pytest.raises(RuntimeError, match=r"output\.weight"):
        meta_logits(meta["missing"])


@pytest.mark.parametrize("head", ["own", "copy"])
def test_meta_is_declared_untied_by_params_json(meta: dict[str, Path], head: str) -> None:
    code, report = inspect_json(meta[head])
    config = report["config"]
    assert config is not None, "params.json was not read"
    assert config["path"] == "params.json", config
    assert config["declared_tie"] is False, config
    assert "params.json" in config["declared_from"], config
    assert "TC111" not in codes(report)
    (group,) = head_groups(report)
    assert set(group["members"]) == {TOK, OUTPUT}
    assert set(group["stored_members"]) == {TOK, OUTPUT}
    _assert_inspect_passes(report, code, "untied")


def test_meta_without_output_is_tc101(meta: dict[str, Path]) -> None:
    code, report = inspect_json(meta["missing"])
    assert "TC101" in codes(report), messages(report)
    (tc101,) = [f for f in report["findings"] if f["code"] == "TC101"]
    assert OUTPUT in tc101["message"], tc101
    assert code == 1


def test_meta_fix_untied_restores_a_strictly_loadable_head(
    meta: dict[str, Path], tmp_path: Path
) -> None:
    """TC101 repaired: the output loads strictly in the reference model; its head is the
    embedding (the only values there are)."""
    out = tmp_path / "out"
    result = fix_cli(meta["missing"], "untied", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((out / "params.json").read_text()) == json.loads(
        (meta["missing"] / "params.json").read_text()
    )
    state = torch.load(meta["missing"] / "consolidated.00.pth", weights_only=True)
    state[OUTPUT] = state[TOK].clone()
    model = meta_model(json.loads((meta["missing"] / "params.json").read_text()))
    model = model.to(torch.bfloat16)
    model.load_state_dict(state, strict=True)
    assert torch.equal(meta_logits(out), logits(model))


# ---------------------------------------------------------------------------------------------
# Lingua


@pytest.fixture(scope="module")
def lingua(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, object]:
    root = tmp_path_factory.mktemp("lingua")
    return {
        True: write_lingua(root / "tied", weight_tying=True, seed=0),
        False: write_lingua(root / "untied", weight_tying=False, seed=1),
    }


def test_lingua_checkpoints_are_what_lingua_writes(lingua: dict) -> None:
    """The fixture itself: DCP files and a consolidated pickle with model and optim entries;
    a tied model stores its head as output.tied_module.weight."""
    for tied, dirs in lingua.items():
        assert (dirs.step / ".metadata").is_file() and (dirs.step / "__0_0.distcp").is_file()
        raw = torch.load(dirs.consolidated / "consolidated.pth", weights_only=True)
        assert set(raw) == {"model", "optim"}
        assert (LINGUA_TIED in raw["model"]) is tied
        assert (OUTPUT in raw["model"]) is not tied
        lingua_logits(dirs.consolidated)  # Lingua's strict load accepts it


# Lingua's DCP training folders (.metadata + __0_0.distcp) are not read yet (DCP is a later
# capability); the consolidated checkpoint carries the same params.json
@pytest.mark.parametrize("where", ["consolidated"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_lingua_declaration_comes_from_params_json(lingua: dict, tied: bool, where: str) -> None:
    dirs = lingua[tied]
    folder = dirs.consolidated if where == "consolidated" else dirs.step
    code, report = inspect_json(folder)

    config = report["config"]
    assert config is not None, "params.json was not read"
    assert config["path"] == "params.json", config
    assert config["declared_tie"] is tied, config
    assert "model.weight_tying" in config["declared_from"], config
    assert "TC111" not in codes(report)

    expected_model = lingua_model(json.loads((folder / "params.json").read_text())).state_dict()
    assert report["tensors"] == len(expected_model), report["tensors"]  # no optimizer state
    (group,) = head_groups(report)
    assert set(group["members"]) == {TOK, LINGUA_TIED if tied else OUTPUT}, group
    _assert_inspect_passes(report, code, "tied" if tied else "untied")


def test_lingua_fix_untied_loads_in_lingua(lingua: dict, tmp_path: Path) -> None:
    """A tied Lingua model made untied: Lingua builds the model from params.json, so the flag
    there must follow the weights, and the head must be stored under the untied model's name
    (output.weight, not the TiedLinear's output.tied_module.weight)."""
    source = lingua[True].consolidated
    out = tmp_path / "out"
    result = fix_cli(source, "untied", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    params = json.loads((out / "params.json").read_text())
    assert params["model"]["weight_tying"] is False
    assert OUTPUT in read_safetensors_folder(out)
    assert torch.equal(lingua_logits(out), lingua_logits(source))


def test_lingua_fix_tied_loads_in_lingua(lingua: dict, tmp_path: Path) -> None:
    """An untied Lingua model tied with --keep embedding: Lingua's tied model loads it and
    computes with the embedding as head."""
    source = lingua[False].consolidated
    refused = fix_cli(source, "tied", tmp_path / "refused")
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "--keep" in refused.stderr

    out = tmp_path / "out"
    result = fix_cli(source, "tied", out, "--keep", "embedding")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((out / "params.json").read_text())["model"]["weight_tying"] is True

    params = json.loads((source / "params.json").read_text())
    params["model"]["weight_tying"] = True
    intended = lingua_model(params)
    state = torch.load(source / "consolidated.pth", weights_only=True)["model"]
    del state[OUTPUT]
    state[LINGUA_TIED] = state[TOK]  # TiedLinear computes with the embedding
    intended.load_state_dict(state, strict=True)
    assert torch.equal(lingua_logits(out), logits(intended))


# ---------------------------------------------------------------------------------------------
# torchtune (in its own environment: TIECHECK_TORCHTUNE_PYTHON, see interop/external.py; a
# process per build or load, ~5 s each: slow)


@pytest.fixture(scope="module")
def torchtune(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    root = tmp_path_factory.mktemp("torchtune")
    return {
        True: write_torchtune(root / "tied", tied=True, seed=0),
        False: write_torchtune(root / "untied", tied=False, seed=1),
    }


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_torchtune_checkpointer_output(torchtune: dict[bool, Path], tied: bool) -> None:
    folder = torchtune[tied]
    state = torchtune_state(folder)
    assert (OUTPUT in state) is not tied  # TiedLinear is no module: nothing stored for it
    torchtune_logits(torchtune_file(folder), tied=tied)  # torchtune's strict load accepts it
    code, report = inspect_json(folder)
    (group,) = head_groups(report)
    assert set(group["members"]) == {TOK, OUTPUT}, group
    assert set(group["stored_members"]) == ({TOK} if tied else {TOK, OUTPUT})
    assert "TC101" not in codes(report) and "TC104" not in codes(report)
    _assert_inspect_passes(report, code, "tied" if tied else "untied")


@pytest.mark.slow
def test_torchtune_fix_untied_loads_in_the_untied_builder(
    torchtune: dict[bool, Path], tmp_path: Path
) -> None:
    source = torchtune[True]
    out = tmp_path / "out"
    result = fix_cli(source, "untied", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    expected = torchtune_logits(torchtune_file(source), tied=True)
    assert torch.equal(torchtune_logits(torchtune_file(out), tied=False), expected)
    code, report = inspect_json(out, "--expect", "untied")
    assert "TC112" not in codes(report), messages(report)
    assert code == 0, messages(report)


@pytest.mark.slow
def test_torchtune_fix_tied_refuses_then_keeps_the_embedding(
    torchtune: dict[bool, Path], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    source = torchtune[False]
    refused = fix_cli(source, "tied", tmp_path / "refused")
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "--keep" in refused.stderr
    assert not any((tmp_path / "refused").glob("*.safetensors"))

    out = tmp_path / "out"
    result = fix_cli(source, "tied", out, "--keep", "embedding")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert OUTPUT not in read_safetensors_folder(out)
    intended = {k: v.clone() for k, v in torchtune_state(source).items()}
    intended[OUTPUT] = intended[TOK].clone()
    save_file(intended, str(tmp_path / "intended.safetensors"))
    expected = torchtune_logits(tmp_path / "intended.safetensors", tied=False)
    assert torch.equal(torchtune_logits(torchtune_file(out), tied=True), expected)
    code, report = inspect_json(out, "--expect", "tied")
    assert "TC112" not in codes(report), messages(report)
    assert code == 0, messages(report)
