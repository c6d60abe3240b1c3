"""The command line on real transformers saves: exit codes a CI job would act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

from .helpers import edit_safetensors  # noqa: E402


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", "inspect", *map(str, args), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_expect_tied_on_a_tied_save(saved) -> None:
    result = _run(saved("qwen2-tied"), "--expect", "tied")
    assert result.returncode == 0, result.stdout + result.stderr


def test_expect_tied_on_a_sharded_tied_save(saved) -> None:
    result = _run(saved("qwen2-tied", "sharded"), "--expect", "tied")
    assert result.returncode == 0, result.stdout + result.stderr


def test_expect_tied_on_an_untied_save_fails(saved) -> None:
    result = _run(saved("llama-untied"), "--expect", "tied")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TC112" in result.stdout


def test_expect_untied_on_an_untied_save(saved) -> None:
    result = _run(saved("llama-untied"), "--expect", "untied")
    assert result.returncode == 0, result.stdout + result.stderr


def test_head_missing_fails(copied) -> None:
    folder = copied("llama-untied")
    edit_safetensors(folder, lambda state: state.pop("lm_head.weight"))
    result = _run(folder, "--expect", "tied")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TC101" in result.stdout


def test_head_missing_fails_without_expect(copied) -> None:
    folder = copied("llama-untied")
    edit_safetensors(folder, lambda state: state.pop("lm_head.weight"))
    result = _run(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TC101" in result.stdout
