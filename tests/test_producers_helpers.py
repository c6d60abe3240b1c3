"""The producer helpers stay cheap to import: the core suite imports ``producers`` without
paying for torch, transformers or the producers (they load inside the builders)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
HEAVY = ("torch", "transformers", "safetensors.torch", "accelerate", "peft", "mlx", "mlx_lm")


def test_importing_producers_loads_no_heavy_library() -> None:
    code = (
        "import json, sys; import producers; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent / "src")])
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
