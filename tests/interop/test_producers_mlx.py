"""mlx-lm as producer and client: ``mlx_lm.convert`` of a tiny transformers Llama (tied and
untied, full precision and 4-bit with ``.scales``/``.biases`` side-cars), and ``mlx_lm.load``
(strict: a stored weight the model lacks, or a parameter not stored, is an error) of what
``tiecheck fix`` writes.

mlx-lm is the consumer that drops a stored head whenever the config says tied and quantises a
layer only when its ``.scales`` are stored (TYING.md section 7), so a fix must move the
side-cars with the head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
pytest.importorskip("transformers")
pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")
np = pytest.importorskip("numpy")

from producers import (  # noqa: E402
    codes,
    fix_cli,
    head_groups,
    inspect_json,
    messages,
    mlx_convert,
    mlx_logits,
    write_hf_llama_for_mlx,
)

EMB, HEAD = "model.embed_tokens", "lm_head"
CASES = [(tie, q) for tie in (True, False) for q in (False, True)]
IDS = [f"{'tied' if tie else 'untied'}-{'q4' if q else 'fp'}" for tie, q in CASES]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[bool, bool], Path]:
    root = tmp_path_factory.mktemp("mlx")
    out = {}
    for tie in (True, False):
        hf = write_hf_llama_for_mlx(root / f"hf-{tie}", tie=tie, seed=int(tie))
        for q in (False, True):
            out[(tie, q)] = mlx_convert(hf, root / f"mlx-{tie}-{q}", quantize=q)
    return out


def _stored(folder: Path) -> dict[str, object]:
    import mlx.core as mx

    state: dict[str, object] = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(mx.load(str(path)))
    return state


@pytest.mark.parametrize(("tie", "q"), CASES, ids=IDS)
def test_mlx_convert_output_is_read_as_saved(
    converted: dict[tuple[bool, bool], Path], tie: bool, q: bool
) -> None:
    folder = converted[(tie, q)]
    stored = _stored(folder)
    assert (f"{HEAD}.weight" in stored) is not tie  # mlx-lm drops a tied head when saving
    assert (f"{EMB}.scales" in stored) is q
    mlx_logits(folder)  # mlx_lm.load accepts it

    code, report = inspect_json(folder)
    (group,) = head_groups(report)
    assert set(group["members"]) == {f"{EMB}.weight", f"{HEAD}.weight"}, group
    assert report["verdict"] == ("tied" if tie else "untied")
    assert not messages(report, "error") and not messages(report, "warning"), messages(report)
    assert code == 0


@pytest.mark.parametrize("q", [False, True], ids=["fp", "q4"])
def test_mlx_fix_untied_loads_in_mlx_lm(
    converted: dict[tuple[bool, bool], Path], tmp_path: Path, q: bool
) -> None:
    source = converted[(True, q)]
    out = tmp_path / "out"
    result = fix_cli(source, "untied", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
    stored = _stored(out)
    suffixes = ("weight", "scales", "biases") if q else ("weight",)
    for suffix in suffixes:  # the head's side-cars travel with it
        assert np.array_equal(
            np.array(stored[f"{HEAD}.{suffix}"]), np.array(stored[f"{EMB}.{suffix}"])
        ), suffix
    assert np.array_equal(mlx_logits(out), mlx_logits(source))
    code, report = inspect_json(out, "--expect", "untied")
    assert "TC112" not in codes(report) and code == 0, messages(report)


def _intended_tied(source: Path, target: Path) -> Path:
    """The untied model with its head replaced by the embedding (side-cars included), written
    by mlx itself: what ``--to tied --keep embedding`` must compute."""
    import mlx.core as mx

    shutil.copytree(source, target)
    for path in sorted(target.glob("*.safetensors")):
        weights = dict(mx.load(str(path)))
        for name in [k for k in weights if k.startswith(f"{HEAD}.")]:
            weights[name] = weights[f"{EMB}.{name.split('.')[-1]}"]
        mx.save_safetensors(str(path), weights, metadata={"format": "mlx"})
    return target


@pytest.mark.parametrize("q", [False, True], ids=["fp", "q4"])
def test_mlx_fix_tied_refuses_then_keeps_the_embedding(
    converted: dict[tuple[bool, bool], Path], tmp_path: Path, q: bool
) -> None:
    source = converted[(False, q)]
    refused = fix_cli(source, "tied", tmp_path / "refused")
    assert refused.exit_code == 2, refused.stdout + refused.stderr
    assert "--keep" in refused.stderr

    out = tmp_path / "out"
    result = fix_cli(source, "tied", out, "--keep", "embedding")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    stored = _stored(out)
    assert not [k for k in stored if k.startswith(f"{HEAD}.")], sorted(stored)  # no orphans
    expected = mlx_logits(_intended_tied(source, tmp_path / "intended"))
    assert np.allclose(mlx_logits(out), expected, atol=1e-6, rtol=0)
    code, report = inspect_json(out, "--expect", "tied")
    assert "TC112" not in codes(report) and code == 0, messages(report)
