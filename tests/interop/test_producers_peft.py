"""A PEFT adapter whose ``base_model_name_or_path`` is relative, as PEFT records it when the
base was loaded by a relative path: relative to the adapter's folder here, while tiecheck
runs from somewhere else (a CI job's checkout root, a pre-commit hook).

The base is a tied Qwen2; the adapter trains ``modules_to_save=["embed_tokens", "lm_head"]``
apart, which is what TC201 is about, so finding the base decides whether the problem is
seen at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
pytest.importorskip("peft")
torch = pytest.importorskip("torch")

from producers import (  # noqa: E402
    AdapterLayout,
    codes,
    inspect_json,
    messages,
    read_safetensors_folder,
    write_peft_relative,
)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> AdapterLayout:
    return write_peft_relative(tmp_path_factory.mktemp("peft"))


def test_peft_records_the_relative_base(layout: AdapterLayout) -> None:
    """The fixture itself: PEFT wrote the name the base was loaded by, and two full copies
    that differ."""
    assert layout.recorded_base == "../base"
    assert (layout.adapter / layout.recorded_base / "config.json").is_file()
    stored = read_safetensors_folder(layout.adapter)
    emb = [k for k in stored if k.endswith("embed_tokens.weight")]
    head = [k for k in stored if k.endswith("lm_head.weight")]
    assert len(emb) == 1 and len(head) == 1, sorted(stored)
    assert not torch.equal(stored[emb[0]], stored[head[0]])


def test_relative_base_is_found_from_the_adapter_folder(
    layout: AdapterLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "ci-checkout"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not (Path.cwd() / layout.recorded_base).exists()

    _, report = inspect_json(layout.adapter)
    config = report["config"]
    assert config is not None and config["declared_tie"] is True, (config, report["notes"])
    assert "TC201" in codes(report), messages(report)
    assert not [n for n in report["notes"] if "base model" in n], report["notes"]


def test_unfound_base_is_a_warning_finding(
    layout: AdapterLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An adapter copied away from its base: tiecheck cannot judge the tie, and says so as a
    finding a CI gate sees (``--fail-on warning`` fails), not as a note in verbose output."""
    lonely = tmp_path / "shared" / "adapter"
    shutil.copytree(layout.adapter, lonely)
    monkeypatch.chdir(tmp_path)

    code, report = inspect_json(lonely, "--fail-on", "warning")
    warnings = [f for f in report["findings"] if f["severity"] == "warning"]
    assert any(layout.recorded_base in f["message"] for f in warnings), messages(report)
    assert code == 1
