"""transformers 4.57 as a second real client, in its own environment, by subprocess.

Set ``TIECHECK_TF4_PYTHON`` to that environment's interpreter (``.ci/run`` creates one; by
hand: ``python3 -m venv /work/venv-tf4 && /work/venv-tf4/bin/pip install torch==2.13.0
transformers==4.57.6 safetensors``). Unset, the tests that need it skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ENV = "TIECHECK_TF4_PYTHON"
LOADER = Path(__file__).with_name("tf4_loader.py")


def tf4_python() -> str:
    """The interpreter, or skip the calling test."""
    python = os.environ.get(ENV)
    if not python:
        pytest.skip(f"{ENV} is not set (an interpreter with transformers 4.57)")
    if not Path(python).is_file():
        pytest.fail(f"{ENV}={python} does not exist")
    return python


def load_with_tf4(folder: Path, ids: list[list[int]], config: Path | None = None) -> dict[str, Any]:
    """``from_pretrained(folder, output_loading_info=True)`` in transformers 4.57: the loader
    script's JSON (keys, tie state, logits). Offline: nothing may come from the Hub."""
    python = tf4_python()
    command = [python, str(LOADER), str(folder), "--ids", json.dumps(ids)]
    if config is not None:
        command += ["--config", str(config)]
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, (
        f"transformers 4.57 could not load {folder}:\n{done.stderr[-3000:]}"
    )
    result = json.loads(done.stdout)
    assert result["transformers"].startswith("4."), result["transformers"]
    return result
