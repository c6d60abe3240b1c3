"""The obvious way to fix a tie without tiecheck: load every shard, edit, save every shard.

``python benchmarks/naive_fix.py SOURCE_FOLDER OUT_FOLDER tied|untied``

* ``tied``: ``safetensors.torch.load_file`` of every shard; if ``lm_head.weight`` equals the
  embedding (``torch.equal``), drop it; set ``tie_word_embeddings: true``.
* ``untied``: the same loads; store ``lm_head.weight`` as a copy (``clone``) of the embedding in
  the embedding's shard; set ``tie_word_embeddings: false``.

Then ``save_file`` of each shard into ``OUT_FOLDER`` (shard names kept) and a new
``model.safetensors.index.json``. The whole checkpoint is in memory at once (a tie spans shards:
the embedding is in the first, the head in the last), so peak RSS is about the checkpoint's
size. This is the baseline ``bench_fix.py`` times ``tiecheck fix`` against.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

INDEX = "model.safetensors.index.json"
EMBEDDING = "model.embed_tokens.weight"
HEAD = "lm_head.weight"


def main() -> None:
    source, out, to = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    index = json.loads((source / INDEX).read_text())
    shards = {
        name: load_file(source / name) for name in dict.fromkeys(index["weight_map"].values())
    }
    where = {key: name for name, tensors in shards.items() for key in tensors}
    embedding = shards[where[EMBEDDING]][EMBEDDING]
    if to == "tied":
        if HEAD in where:
            if not torch.equal(shards[where[HEAD]][HEAD], embedding):
                sys.exit("lm_head differs from the embedding; not tying")
            del shards[where[HEAD]][HEAD]
    elif to == "untied":
        if HEAD not in where:
            shards[where[EMBEDDING]][HEAD] = embedding.clone()
    else:
        sys.exit(f"unknown target {to!r}")

    out.mkdir(parents=True)
    weight_map, total = {}, 0
    for name, tensors in shards.items():
        save_file(tensors, out / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        total += sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    config = json.loads((source / "config.json").read_text())
    config["tie_word_embeddings"] = to == "tied"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
