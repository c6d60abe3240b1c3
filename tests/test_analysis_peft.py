"""PEFT adapters on tied base models (TC201): modules_to_save copies that train apart."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

import tiecheck
from core_helpers import codes, findings_with, run_cli, write_config
from tiecheck.model import SourceKind

A_EMB = "base_model.model.model.embed_tokens.weight"
A_HEAD = "base_model.model.lm_head.weight"


def copy_case(fixtures_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(fixtures_dir / "peft-adapter", tmp_path / "case")
    return tmp_path / "case" / "adapter", tmp_path / "case" / "base"


def set_adapter_config(adapter: Path, **changes: object) -> None:
    path = adapter / "adapter_config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_fixture_copies_really_differ(fixtures_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    with safe_open(str(fixtures_dir / "peft-adapter/adapter/adapter_model.safetensors"), "pt") as f:
        emb, head = f.get_tensor(A_EMB), f.get_tensor(A_HEAD)
    assert emb.dtype == head.dtype == torch.bfloat16
    assert emb.shape == head.shape
    assert not torch.equal(emb, head)
    config = json.loads((fixtures_dir / "peft-adapter/base/config.json").read_text())
    assert config["tie_word_embeddings"] is True
    adapter = json.loads((fixtures_dir / "peft-adapter/adapter/adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["embed_tokens", "lm_head"]
    assert adapter["ensure_weight_tying"] is False


def test_relative_base_path_resolves_from_the_working_directory(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # base_model_name_or_path is "../base": like PEFT, it is a path from where you run
    monkeypatch.chdir(fixtures_dir / "peft-adapter" / "adapter")
    report = tiecheck.inspect(".")
    assert report.checkpoint.kind is SourceKind.PEFT_ADAPTER
    assert report.declared.tied is True
    (tc201,) = findings_with(report, "TC201")
    assert tc201.severity.value == "error"  # the copies already differ
    assert tc201.keys == (A_EMB, A_HEAD)
    assert report.verdict.value == "inconsistent"
    assert codes(report) == {"TC201"}


def test_explicit_base_argument(fixtures_dir: Path) -> None:
    adapter = fixtures_dir / "peft-adapter" / "adapter"
    report = tiecheck.inspect(adapter, base=fixtures_dir / "peft-adapter" / "base")
    assert codes(report) == {"TC201"}
    by_config = tiecheck.inspect(adapter, base=fixtures_dir / "peft-adapter/base/config.json")
    assert codes(by_config) == {"TC201"}


def test_absolute_base_path_in_adapter_config(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter, base = copy_case(fixtures_dir, tmp_path)
    set_adapter_config(adapter, base_model_name_or_path=str(base.resolve()))
    assert codes(tiecheck.inspect(adapter)) == {"TC201"}


def test_base_not_found_says_so_and_does_not_guess(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter, _ = copy_case(fixtures_dir, tmp_path)
    set_adapter_config(adapter, base_model_name_or_path=str(tmp_path / "nowhere"))
    report = tiecheck.inspect(adapter)
    assert codes(report) == {"TC202"}  # a visible warning, not a guess and not a verbose note
    (tc202,) = findings_with(report, "TC202")
    assert "nowhere" in tc202.message and "--base PATH" in tc202.message


def test_a_relative_base_is_found_from_the_adapter_folder_too(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PEFT resolves a relative base_model_name_or_path from the working folder; an adapter
    shipped beside its base names it relative to itself. Both are tried."""
    adapter, base = copy_case(fixtures_dir, tmp_path)
    relative = os.path.relpath(base, adapter)
    set_adapter_config(adapter, base_model_name_or_path=relative)
    monkeypatch.chdir(tmp_path.parent)  # a working folder from which the path means nothing
    assert not (Path(relative) / "config.json").exists()
    assert codes(tiecheck.inspect(adapter)) == {"TC201"}


def test_ensure_weight_tying_silences_tc201(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter, base = copy_case(fixtures_dir, tmp_path)
    set_adapter_config(adapter, ensure_weight_tying=True)
    assert "TC201" not in codes(tiecheck.inspect(adapter, base=base))


def test_identical_copies_are_a_warning(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter, base = copy_case(fixtures_dir, tmp_path)
    pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    path = adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    tensors[A_HEAD] = tensors[A_EMB].clone()
    save_file(tensors, path, metadata={"format": "pt"})
    (tc201,) = findings_with(tiecheck.inspect(adapter, base=base), "TC201")
    assert tc201.severity.value == "warning"
    assert "identical so far" in tc201.message


def test_untied_base_needs_no_tie(fixtures_dir: Path, tmp_path: Path) -> None:
    adapter, base = copy_case(fixtures_dir, tmp_path)
    write_config(base, model_type="llama", tie_word_embeddings=False)
    report = tiecheck.inspect(adapter, base=base)
    assert "TC201" not in codes(report)
    assert report.declared.tied is False


def test_cli_with_relative_base(fixtures_dir: Path) -> None:
    adapter = fixtures_dir / "peft-adapter" / "adapter"
    result = run_cli("inspect", ".", "--json", "--no-config", cwd=adapter)
    assert result.code == 1
    doc = result.report()
    assert doc["source"]["format"] == "peft-adapter"
    assert [f["code"] for f in doc["findings"]] == ["TC201"]
