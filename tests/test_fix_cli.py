"""The ``tiecheck fix`` command: arguments, exit codes, output formats and error messages.

Most cases run the Typer app in-process (fast); the ones about the process as a whole
(``python -m tiecheck`` exit codes, error handling in ``main``) run a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file
from typer.testing import CliRunner

from tiecheck.cli import app

EMB = "model.embed_tokens.weight"
HEAD = "lm_head.weight"


def make_model(folder: Path, *, head: str, tied: bool | None, model_type: str = "llama") -> Path:
    """A tiny checkpoint folder. head: copy | diverged | none."""
    r = np.random.default_rng(0)
    emb = r.standard_normal((32, 8)).astype(np.float32)
    tensors = {EMB: emb, "model.norm.weight": np.ones(8, dtype=np.float32)}
    if head == "copy":
        tensors[HEAD] = emb.copy()
    elif head == "diverged":
        tensors[HEAD] = emb * 1.5
    if model_type == "t5":
        tensors = {"shared.weight": emb, "decoder.final_layer_norm.weight": np.ones(8, "f4")}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    cfg: dict = {"model_type": model_type}
    if tied is not None:
        cfg["tie_word_embeddings"] = tied
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_fix_then_inspect_exit_0_as_a_real_process(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    done = run_process("fix", src, "--to", "tied", "-o", tmp_path / "out", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # -q: no progress, no noise, and one line of result
    out = tmp_path / "out"
    assert done.stdout == f"{src} -> tied: wrote 2 files to {out}, verified; output tied\n"
    again = run_process("fix", src, "--to", "tied", "-o", tmp_path / "plan", "--dry-run")
    assert "drop    lm_head.weight (alias of model.embed_tokens.weight)" in again.stdout
    check = run_process("inspect", tmp_path / "out", "--expect", "tied", "-q")
    assert check.returncode == 0, check.stdout
    check = run_process("inspect", tmp_path / "out", "--expect", "untied", "-q")
    assert check.returncode == 1 and "TC112" in check.stdout


def test_json_result_describes_plan_and_inspected_output(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="none", tied=True)
    code, out, _ = run("fix", src, "--to", "untied", "-o", tmp_path / "out", "--format", "json")
    assert code == 0
    result = json.loads(out)
    assert result["to"] == "untied" and result["dry_run"] is False
    assert result["copied"] == [{"name": HEAD, "from": EMB}]
    assert result["config_edits"] == ["tie_word_embeddings: true -> false"]
    assert sorted(result["written"]) == ["config.json", "model.safetensors"]
    assert result["after"]["verdict"] == "untied"
    assert result["bytes_after"] - result["bytes_before"] == 32 * 8 * 4
    assert Path(result["target"]) == tmp_path / "out"


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    code, out, _ = run("fix", src, "--to", "tied", "-o", tmp_path / "out", "--dry-run")
    assert code == 0
    assert "drop    lm_head.weight" in out and "nothing written" in out
    assert not (tmp_path / "out").exists()
    code, out, _ = run("fix", src, "--to", "tied", "--dry-run", "-f", "json")
    assert code == 0
    result = json.loads(out)
    assert result["dry_run"] is True and result["written"] == [] and result["after"] is None
    assert result["dropped"] == [{"name": HEAD, "alias_of": EMB}]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


@pytest.mark.parametrize(
    "args",
    [
        ["--to", "tied"],  # neither -o nor --in-place
        ["--to", "tied", "-o", "OUT", "--in-place"],  # both
        ["--to", "sideways", "-o", "OUT"],
        ["--to", "tied", "-o", "OUT", "--max-shard-size", "huge"],
        ["--to", "tied", "-o", "OUT", "--max-shard-size", "0"],
        ["--to", "tied", "-o", "OUT", "--max-shard-size", "0.1"],
        ["--to", "tied", "-o", "OUT", "--keep", "both"],
    ],
)
def test_usage_errors_exit_2_and_write_nothing(tmp_path: Path, args: list[str]) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    out = tmp_path / "out"
    code, _, err = run("fix", src, *[str(out) if a == "OUT" else a for a in args])
    assert code == 2
    assert err.strip()
    assert not out.exists()


def test_missing_source_exits_2(tmp_path: Path) -> None:
    code, _, err = run("fix", tmp_path / "nope", "--to", "tied", "-o", tmp_path / "out")
    assert code == 2 and "no such file" in err
    assert not (tmp_path / "out").exists()


def test_diverged_head_is_refused_unless_keep(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="diverged", tied=True)
    code, out, err = run("fix", src, "--to", "tied", "-o", tmp_path / "out")
    assert code == 2 and out == ""
    assert "--keep" in err and HEAD in err and "different values" in err
    assert not (tmp_path / "out").exists()
    code, _, err = run("fix", src, "--to", "tied", "-o", tmp_path / "out", "--keep", "head")
    assert code == 0, err
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "np") as f:
        assert f.keys() == [EMB, "model.norm.weight"]
        assert np.array_equal(f.get_tensor(EMB), _emb() * np.float32(1.5))


def _emb() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((32, 8)).astype(np.float32)


def test_t5_untie_is_refused(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="none", tied=None, model_type="t5")
    code, _, err = run("fix", src, "--to", "untied", "-o", tmp_path / "out")
    assert code == 2 and "rescales" in err
    assert not (tmp_path / "out").exists()


def test_non_empty_output_needs_overwrite(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run("fix", src, "--to", "tied", "-o", out)
    assert code == 2 and "not empty" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    code, _, err = run("fix", src, "--to", "tied", "-o", out, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "model.safetensors").is_file()


def test_an_empty_existing_output_folder_is_fine(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    (tmp_path / "out").mkdir()
    code, _, err = run("fix", src, "--to", "tied", "-o", tmp_path / "out")
    assert code == 0, err


def test_output_that_is_a_file_exits_2(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    (tmp_path / "out").write_text("x")
    code, _, err = run("fix", src, "--to", "tied", "-o", tmp_path / "out")
    assert code == 2 and "not a folder" in err


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty folder no one can write into. As root, permissions are not enforced, so a
    read-only tmpfs is mounted instead."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("sub", ["", "new-sub-folder"])
def test_read_only_output_is_a_clear_error(tmp_path: Path, read_only_dir: Path, sub: str) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = read_only_dir / sub if sub else read_only_dir
    done = run_process("fix", src, "--to", "tied", "-o", out, "-q")
    assert done.returncode == 2
    assert "internal error" not in done.stderr
    assert done.stderr.startswith("tiecheck: error:")
    assert "read-only" in done.stderr.lower() or "permission denied" in done.stderr.lower()
    assert str(read_only_dir) in done.stderr
    assert list(read_only_dir.iterdir()) == []
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_in_place_rewrites_the_source_folder(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="none", tied=True)
    (src / "tokenizer.json").write_text("{}")
    code, out, err = run("fix", src, "--to", "untied", "--in-place")
    assert code == 0, err
    assert "verdict   untied" in out
    with safe_open(str(src / "model.safetensors"), "np") as f:
        assert sorted(f.keys()) == [HEAD, EMB, "model.norm.weight"]
        assert np.array_equal(f.get_tensor(HEAD), _emb())
    assert json.loads((src / "config.json").read_text())["tie_word_embeddings"] is False
    assert sorted(p.name for p in src.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    # Already untied: a second run changes nothing and says so.
    code, out, _ = run("fix", src, "--to", "untied", "--in-place")
    assert code == 0 and "nothing needed changing" in out


def test_max_shard_size_on_the_command_line(tmp_path: Path) -> None:
    src = make_model(tmp_path / "src", head="copy", tied=True)
    code, _, err = run(
        "fix", src, "--to", "untied", "-o", tmp_path / "out", "--max-shard-size", "1KB"
    )
    assert code == 0, err
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == {EMB, HEAD, "model.norm.weight"}
    assert len(set(index["weight_map"].values())) == 3  # 1 KiB tensors: one per shard
    for name, shard in index["weight_map"].items():
        with safe_open(str(tmp_path / "out" / shard), "np") as f:
            assert f.keys() == [name]


def test_untied_without_a_config_says_loaders_cannot_tell(tmp_path: Path) -> None:
    """With no config only the weights change: the output stores the head (untied on disk,
    so inspecting it with --expect untied passes) and the plan says loaders cannot know."""
    src = make_model(tmp_path / "src", head="none", tied=True)
    (src / "config.json").unlink()
    code, out, _ = run("fix", src / "model.safetensors", "--to", "untied", "-o", tmp_path / "out")
    assert code == 0, out
    assert "loaders cannot know" in out and "TC112" not in out
    assert not (tmp_path / "out" / "config.json").exists()
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "np") as f:
        assert HEAD in set(f.keys())
