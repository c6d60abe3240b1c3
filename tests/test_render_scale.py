"""Output that grows with what an input repeats stays readable and linear: tens of thousands
of stale alias records are listed in full by the machine formats and counted by the table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from core_helpers import run_cli, save_numpy

pytestmark = pytest.mark.slow
RECORDS = 20_000


def _many_stale_records(folder: Path) -> Path:
    records = {f"model.layers.{i}.mlp.weight": f"model.missing.{i}.weight" for i in range(RECORDS)}
    return save_numpy(
        folder / "model.safetensors", {"model.embed_tokens.weight": np.ones((8, 4))}, **records
    )


def test_twenty_thousand_alias_records_in_every_format(tmp_path: Path) -> None:
    model = _many_stale_records(tmp_path / "m")
    started = time.monotonic()
    table = run_cli("inspect", model)
    concise = run_cli("inspect", model, "--format", "concise")
    document = run_cli("inspect", model, "--json")
    github = run_cli("inspect", model, "--format", "github")
    markdown = run_cli("inspect", model, "--format", "markdown")
    assert time.monotonic() - started < 60  # the table alone took 11 s before it was capped
    assert f"and {RECORDS - 20:,} more TC108 findings" in table.stdout
    assert table.stdout.count("alias record says") == 20
    assert concise.stdout.count(": TC108 warning alias record says") == RECORDS
    (report,) = json.loads(document.stdout)["reports"]
    assert len(report["findings"]) == RECORDS
    assert github.stdout.count("::warning ") == RECORDS
    assert markdown.stdout.count("**TC108**") == RECORDS
