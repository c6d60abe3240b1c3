"""The physical limit of a headers-only inspection: what ``--no-data`` cannot do with less.

``python benchmarks/headers_only.py MODEL_FOLDER`` reads ``config.json`` and the safetensors
index with ``json``, opens every shard with ``safetensors.safe_open`` (the library's own header
parser, in Rust) and lists its tensor names, dtypes and shapes, then prints the count as JSON.
No analysis and no report: ``run.py`` times ``tiecheck inspect --no-data`` against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors import safe_open


def main(folder: Path) -> None:
    json.loads((folder / "config.json").read_text())
    index = json.loads(next(folder.glob("*.safetensors.index.json")).read_text())
    tensors = 0
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(folder / shard, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 - a safe_open handle is not iterable
                view = f.get_slice(name)
                view.get_dtype(), view.get_shape()
                tensors += 1
    print(json.dumps({"tensors": tensors}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
