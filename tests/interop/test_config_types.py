"""What transformers really does with a tie flag that is not a boolean, so TC117's message is
checked against the installed client rather than remembered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

import tiecheck  # noqa: E402

from .helpers import TF5  # noqa: E402


@pytest.mark.parametrize("value", ["false", 0, None])
def test_transformers_refuses_or_reads_truthiness_as_tc117_says(
    tmp_path: Path, value: object
) -> None:
    config = {
        "model_type": "llama",
        "tie_word_embeddings": value,
        "vocab_size": 64,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    _, findings = tiecheck.analysis.declared.declared_tie(
        tiecheck.model.ConfigInfo("config.json", tmp_path / "config.json", config), {}
    )
    message = next(f.message for f in findings if f.code == "TC117")
    if TF5:
        with pytest.raises(Exception, match="tie_word_embeddings"):
            transformers.AutoConfig.from_pretrained(tmp_path)
        assert "transformers 5.x refuses to load this config" in message
    else:
        loaded = transformers.AutoConfig.from_pretrained(tmp_path)
        assert f"4.x reads it as {str(bool(loaded.tie_word_embeddings)).lower()}" in message
