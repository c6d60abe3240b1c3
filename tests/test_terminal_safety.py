"""Text from a checkpoint never drives the terminal: control characters in tensor names, file
names, ``model_type`` and metadata reach the table, GitHub annotations, Markdown, the fix plan
and stderr as visible escapes; JSON keeps them exact."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core_helpers import run_cli, save_numpy, write_config, write_index

TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
C1 = "\x9b31m"  # an 8-bit CSI
RLO = "\u202e"  # right-to-left override
EVIL = f"model.embed{TITLE}{CLEAR}{C1}{RLO}_tokens.weight"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _hostile_model(folder: Path) -> Path:
    """A sharded model whose tensor names, shard name, model_type and alias record carry
    escape sequences; its head is missing under an untied flag (so findings name them)."""
    r = np.random.default_rng(0)
    shard = f"model{CLEAR}-00001-of-00001.safetensors"
    tensors = {
        EVIL: r.standard_normal((8, 4)).astype(np.float32),
        f"norm{TITLE}.weight": np.ones(4, np.float32),
    }
    save_numpy(folder / shard, tensors)
    write_index(
        folder,
        dict.fromkeys(tensors, shard) | {f"missing{RLO}{CLEAR}.weight": shard},
        sum(a.nbytes for a in tensors.values()),
        **{f"lm_head{TITLE}.weight": EVIL},
    )
    write_config(folder, model_type=f"llama{TITLE}", tie_word_embeddings=False)
    return folder


@pytest.mark.parametrize("fmt", ["table", "github", "markdown"])
def test_text_formats_show_control_characters_as_escapes(tmp_path: Path, fmt: str) -> None:
    model = _hostile_model(tmp_path / f"m{TITLE}")
    run = run_cli("inspect", model, "--format", fmt, "-v")
    assert run.code == 1, run.stderr
    assert not RAW.search(run.stdout), repr(RAW.search(run.stdout))
    assert not RAW.search(run.stderr)
    assert "\\x1b]0;pwned\\x07" in run.stdout  # shown, not acted on
    assert "\\u202e" in run.stdout


def test_json_keeps_names_exact(tmp_path: Path) -> None:
    model = _hostile_model(tmp_path / "m")
    run = run_cli("inspect", model, "--format", "json")
    assert not RAW.search(run.stdout)  # JSON escapes them itself
    keys = (
        {k for f in run.json()["findings"] for k in f["keys"]}
        if "findings" in run.json()
        else set()
    )
    if not keys:
        keys = {k for r in run.json()["reports"] for f in r["findings"] for k in f["keys"]}
    assert EVIL in keys or f"missing{RLO}{CLEAR}.weight" in keys


def test_fix_plan_and_errors_on_stderr_are_escaped(tmp_path: Path) -> None:
    model = _hostile_model(tmp_path / "m")
    run = run_cli("fix", model, "--to", "untied", "--dry-run")
    assert not RAW.search(run.stdout) and not RAW.search(run.stderr)
    run = run_cli("inspect", tmp_path / f"nothing{TITLE}here")
    assert run.code == 2
    assert not RAW.search(run.stderr)
    assert "\\x1b]0;pwned\\x07" in run.stderr
    assert run.stderr.count("\n") <= 2


def test_a_name_with_a_newline_cannot_forge_a_line(tmp_path: Path) -> None:
    forged = "w\n::error file=README.md::forged"
    save_numpy(tmp_path / "m" / "model.safetensors", {forged: np.ones(4, np.float32)})
    write_config(tmp_path / "m", model_type="llama", tie_word_embeddings=False)
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "model.safetensors")
    for fmt in ("github", "markdown", "table"):
        run = run_cli("inspect", tmp_path / "m", "--format", fmt, "-v")
        assert not any(
            line.startswith("::error file=README.md") for line in run.stdout.splitlines()
        )
    json.loads(run_cli("inspect", tmp_path / "m", "--json").stdout)
