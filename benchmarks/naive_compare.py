"""The obvious way to check a tie without tiecheck: load every shard, compare embedding and head.

``python benchmarks/naive_compare.py MODEL_FOLDER`` loads each shard with
``safetensors.torch.load_file`` into one state dict, then runs ``torch.equal`` on every
same-shape (embedding, head) pair and prints the result as JSON. This is the baseline
``run.py`` times tiecheck's full inspection against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
HEADS = ("lm_head.weight", "embed_out.weight", "output.weight")


def shards(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    return [folder / "model.safetensors"]


def main() -> None:
    folder = Path(sys.argv[1])
    state: dict[str, torch.Tensor] = {}
    for shard in shards(folder):
        state.update(load_file(shard))
    embeds = [k for k in state if k.endswith(EMBEDDINGS)]
    heads = [k for k in state if k.endswith(HEADS)]
    pairs = {
        f"{e} == {h}": torch.equal(state[e], state[h])
        for e in embeds
        for h in heads
        if state[e].shape == state[h].shape
    }
    print(json.dumps({"tensors": len(state), "identical": pairs}))


if __name__ == "__main__":
    main()
