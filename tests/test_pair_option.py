"""``--pair EMBEDDING=HEAD``: the user confirms a tie group only the look of the names suggests.

``fix`` refuses to rewrite on a name heuristic (evidence, not guesses); the refusal names the
``--pair`` that would confirm it, and with it the rewrite runs and is verified.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import tiecheck
from test_fix_cli import run
from tiecheck.options import parse_pair

EMB, HEAD = "net.embed.weight", "net.out.weight"


def unknown_model(folder: Path, *, head: bool) -> Path:
    """A model type no registry knows, names only a heuristic recognises."""
    r = np.random.default_rng(1)
    emb = r.standard_normal((16, 4)).astype(np.float32)
    tensors = {EMB: emb, "net.norm.weight": np.ones(4, np.float32)}
    if head:
        tensors[HEAD] = emb.copy()
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({"model_type": "my_own_arch"}))
    return folder


def test_heuristic_group_names_its_evidence(tmp_path: Path) -> None:
    report = tiecheck.inspect(unknown_model(tmp_path / "m", head=True))
    (group,) = report.tie_groups
    assert group.group.names == (EMB, HEAD)
    assert [e.value for e in group.evidence] == ["name-heuristic", "byte-identity"]


def test_fix_refuses_a_heuristic_pair_and_says_how_to_confirm(tmp_path: Path) -> None:
    src = unknown_model(tmp_path / "m", head=True)
    code, _, err = run("fix", src, "--to", "tied", "-o", tmp_path / "out")
    assert code == 2
    assert f"--pair {EMB}={HEAD}" in err
    assert not (tmp_path / "out").exists()


def test_fix_with_pair_dedupes_and_verifies(tmp_path: Path) -> None:
    src = unknown_model(tmp_path / "m", head=True)
    code, out, err = run(
        "fix", src, "--to", "tied", "-o", tmp_path / "out", "--pair", f"{EMB}={HEAD}"
    )
    assert code == 0, out + err
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "np") as f:
        assert set(f.keys()) == {EMB, "net.norm.weight"}
    after = tiecheck.inspect(tmp_path / "out", pair=(EMB, HEAD))
    (group,) = after.tie_groups
    assert [e.value for e in group.evidence] == ["pair-option"]
    assert after.verdict.value == "tied"


def test_inspect_pair_replaces_the_heuristic(tmp_path: Path) -> None:
    src = unknown_model(tmp_path / "m", head=False)
    code, out, _ = run("inspect", src, "--pair", f"{EMB}=net.unembed.weight", "-f", "json")
    assert code == 0
    (group,) = json.loads(out)["reports"][0]["tie_groups"]
    assert group["evidence"] == ["pair-option"]
    assert group["members"] == [EMB, "net.unembed.weight"]


def test_pair_naming_an_absent_embedding_is_a_one_line_error(tmp_path: Path) -> None:
    src = unknown_model(tmp_path / "m", head=True)
    code, out, err = run("inspect", src, "--pair", f"nope.weight={HEAD}")
    assert code == 2
    assert "'nope.weight'" in err and "Traceback" not in err + out


@pytest.mark.parametrize("text", ["a.weight", "=b", "a=", "a=a", ""])
def test_malformed_pair_is_a_usage_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_pair(text)
    code, _, err = run("inspect", unknown_model(tmp_path / "m", head=True), "--pair", text)
    assert code == 2 and err.startswith("tiecheck: error: --pair:")


def test_names_with_equals_signs_split_at_the_last() -> None:
    assert parse_pair("a=b.weight=c.weight") == ("a=b.weight", "c.weight")
