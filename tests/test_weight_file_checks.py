"""A weight file that holds no tensors is a finding (TC008), not a pass: files written by the
real producers (torch.save, safetensors) with nothing in them, and a training-state file that
is not weights at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import codes, run_cli


def _torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("empty.bin", lambda t, p: t.save({}, p)),
        ("values.pt", lambda t, p: t.save({"epoch": 3, "best_val_loss": 1.5}, p)),
        ("nested-empty.ckpt", lambda t, p: t.save({"state_dict": {}, "epoch": 1}, p)),
    ],
)
def test_pickles_without_tensors_are_tc008(tmp_path: Path, name: str, write) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    write(_torch(), path)
    report = tiecheck.inspect(path)
    assert "TC008" in codes(report)
    run = run_cli("inspect", path)
    assert run.code == 1


def test_an_empty_safetensors_file_is_tc008(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({}, str(tmp_path / "model.safetensors"))
    report = tiecheck.inspect(tmp_path / "model.safetensors")
    assert [f.code for f in report.findings if f.code == "TC008"] == ["TC008"]
    assert report.findings[0].file == "model.safetensors"


def test_one_empty_file_among_several_is_named(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"a.weight": np.ones((2, 2), np.float32)}, str(tmp_path / "a.safetensors"))
    save_file({}, str(tmp_path / "b.safetensors"))
    report = tiecheck.inspect(tmp_path)
    tc008 = [f for f in report.findings if f.code == "TC008"]
    assert [f.file for f in tc008] == ["b.safetensors"]


def test_training_state_is_noted_not_failed(tmp_path: Path) -> None:
    torch = _torch()
    torch.save({"state": {}, "param_groups": []}, tmp_path / "optimizer.pt")
    report = tiecheck.inspect(tmp_path / "optimizer.pt")
    assert "TC008" not in codes(report)
    assert any("training state, not model weights" in n for n in report.notes)
