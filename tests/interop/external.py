"""Real clients that cannot live in the test environment, run by subprocess from their own.

- transformers 4.57 (the last 4.x; it ties and unties differently from 5.x, TYING.md section
  7): ``TIECHECK_TF4_PYTHON``, running ``tf4_loader.py``. By hand: ``python3 -m venv
  /work/venv-tf4 && /work/venv-tf4/bin/pip install torch==2.13.0 transformers==4.57.6
  safetensors``.
- torchtune 0.6.1: ``TIECHECK_TORCHTUNE_PYTHON``, running ``torchtune_client.py``. It needs
  torchao <= 0.15, which makes PEFT 0.21 refuse to load. By hand: ``python3 -m venv
  /work/venv-torchtune && /work/venv-torchtune/bin/pip install torch==2.13.0
  torchtune==0.6.1 torchao==0.15.0``.

Unset, the tests that need one skip and say which variable to set; set to a path that does
not exist, they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

TF4_ENV = "TIECHECK_TF4_PYTHON"
TORCHTUNE_ENV = "TIECHECK_TORCHTUNE_PYTHON"
HERE = Path(__file__).parent


def external_python(variable: str) -> str:
    """The interpreter named by ``variable``, or skip the calling test."""
    python = os.environ.get(variable)
    if not python:
        pytest.skip(f"{variable} is not set (see tests/interop/external.py)")
    if not Path(python).is_file():
        pytest.fail(f"{variable}={python} does not exist")
    return python


def run_json(variable: str, script: str, *args: str | Path) -> tuple[int, Any, str]:
    """Run ``script`` (next to this file) with the interpreter ``variable`` names, offline;
    returns the exit code, the JSON on the last line of stdout (None if there is none) and
    stderr."""
    python = external_python(variable)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [python, str(HERE / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    document = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    return done.returncode, document, done.stderr


def load_with_tf4(folder: Path, ids: list[list[int]]) -> dict[str, Any]:
    """``from_pretrained(folder, output_loading_info=True)`` in transformers 4.57: missing /
    unexpected / mismatched keys, tie state in memory, the config's flag and the logits."""
    code, result, stderr = run_json(TF4_ENV, "tf4_loader.py", folder, "--ids", json.dumps(ids))
    assert code == 0, f"transformers 4.57 could not load {folder}:\n{stderr[-3000:]}"
    assert result["transformers"].startswith("4."), result["transformers"]
    return result


def torchtune_write(root: Path, *, tied: bool, seed: int) -> Path:
    """A checkpoint written by torchtune's FullModelTorchTuneCheckpointer; the epoch folder."""
    tie = "--tied" if tied else "--untied"
    code, result, stderr = run_json(
        TORCHTUNE_ENV, "torchtune_client.py", "write", root, tie, "--seed", str(seed)
    )
    assert code == 0, f"torchtune could not write {root}:\n{stderr[-3000:]}"
    return Path(result["epoch_dir"])


def torchtune_logits(path: Path, *, tied: bool) -> Any:
    """Logits of torchtune's builder after a strict load of ``path`` (a .bin or a
    .safetensors file); a strict-load failure fails the test with torchtune's message."""
    import torch

    tie = "--tied" if tied else "--untied"
    code, result, stderr = run_json(TORCHTUNE_ENV, "torchtune_client.py", "logits", path, tie)
    assert code == 0, f"torchtune's strict load of {path} failed:\n{stderr[-3000:]}"
    return torch.tensor(result["logits"])
