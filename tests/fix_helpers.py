"""Writers of small real model folders for the ``fix`` tests, and ways to compare folders.

Shared by ``test_fix_safety``, ``test_fix_hostile_folders`` and the fault tests; everything is
written with the safetensors library or ``torch.save``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

EMB = "model.embed_tokens.weight"
HEAD = "lm_head.weight"


def tree_hashes(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root`` (not following links): kind and content hash or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", str(path.readlink()))
        elif path.is_file():
            out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            out[rel] = ("dir", "")
    return out


def tensors(seed: int = 0, head: str = "copy", vocab: int = 64, hidden: int = 16) -> dict:
    r = np.random.default_rng(seed)
    emb = r.standard_normal((vocab, hidden)).astype(np.float32)
    out = {
        EMB: emb,
        "model.layers.0.mlp.up_proj.weight": r.standard_normal((32, hidden)).astype(np.float16),
        "model.norm.weight": np.ones(hidden, dtype=np.float32),
    }
    if head == "copy":
        out[HEAD] = emb.copy()
    elif head == "diverged":
        out[HEAD] = emb * np.float32(0.5)
    return out


def write_model(
    folder: Path, weights: dict, *, tied: bool, shards: int = 1, extra: bool = True
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "tie_word_embeddings": tied})
    )
    if extra:
        (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    names = sorted(weights)
    if shards == 1:
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder
    weight_map = {}
    for i in range(shards):
        part = names[i::shards]
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: weights[k] for k in part}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {
        "metadata": {"total_size": sum(a.nbytes for a in weights.values())},
        "weight_map": weight_map,
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def write_pickle_model(folder: Path, *, sharded: bool) -> Path:
    torch = pytest.importorskip("torch")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    emb = torch.randn(64, 16)
    state = {EMB: emb, HEAD: emb, "model.norm.weight": torch.ones(16)}
    if not sharded:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        torch.save({EMB: emb, HEAD: emb}, folder / "pytorch_model-00001-of-00002.bin")
        torch.save(
            {"model.norm.weight": state["model.norm.weight"]},
            folder / "pytorch_model-00002-of-00002.bin",
        )
        weight_map = {
            EMB: "pytorch_model-00001-of-00002.bin",
            HEAD: "pytorch_model-00001-of-00002.bin",
            "model.norm.weight": "pytorch_model-00002-of-00002.bin",
        }
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": 64 * 16 * 4 + 64}, "weight_map": weight_map})
        )
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "tie_word_embeddings": True})
    )
    return folder


def final_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
