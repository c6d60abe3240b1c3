"""Write Llama-like safetensors checkpoints for the benchmarks, without torch.

Run as a script (``python benchmarks/checkpoints.py SPEC_JSON``) so that the memory used while
generating data is charged to a throw-away process, never to ``run.py``: a child's peak RSS
as seen by ``wait4`` starts from its parent's high-water mark (the child is vforked from it),
so the benchmark driver has to stay small.

Headers are written by hand: an 8-byte little-endian length, the JSON header padded with
spaces to a multiple of 8, then the data buffer, which the ``data_offsets`` tile exactly.
``sparse`` checkpoints are only ``truncate()``d to their full size, so their data is a hole:
gigabytes on ``ls``, a few KiB on ``du``. Real checkpoints hold random-ish bf16 values (every
tensor its own seed, so no two tensors share bytes by accident) and an ``lm_head.weight`` that is
a byte-identical copy of ``model.embed_tokens.weight``.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

BF16 = 2  # bytes per element
WRITE_CHUNK = 32 << 20


@dataclass(frozen=True)
class Spec:
    """A Llama-shaped model: ``layers`` x 9 tensors + embedding, final norm and lm_head."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_dim: int | None = None
    """k/v projection rows (grouped-query attention); ``hidden`` when None."""
    shards: int = 1
    tied: bool = False
    """``tie_word_embeddings`` in config.json."""
    sparse: bool = True
    """True: data is a hole (header only); False: random bf16 data, head = copy of embedding."""


def tensors(spec: Spec) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes in the order transformers saves a LlamaForCausalLM."""
    h, i, v = spec.hidden, spec.intermediate, spec.vocab
    kv = spec.kv_dim or h
    out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (v, h))]
    for n in range(spec.layers):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", (h,)),
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "post_attention_layernorm.weight", (h,)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
        ]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (v, h))]
    return out


def nbytes(shape: tuple[int, ...]) -> int:
    n = BF16
    for d in shape:
        n *= d
    return n


def total_bytes(spec: Spec) -> int:
    return sum(nbytes(s) for _, s in tensors(spec))


def split(items: list[tuple[str, tuple[int, ...]]], shards: int) -> list[list]:
    """Consecutive runs of tensors of about equal bytes, as ``save_pretrained`` shards."""
    total = sum(nbytes(s) for _, s in items)
    out: list[list] = [[] for _ in range(shards)]
    done = 0
    for name, shape in items:
        out[min(shards - 1, done * shards // total)].append((name, shape))
        done += nbytes(shape)
    if not all(out):
        raise ValueError(f"{shards} shards is too many for {len(items)} tensors of these sizes")
    return out


def header_bytes(items: list[tuple[str, tuple[int, ...]]]) -> tuple[bytes, int]:
    """The length prefix + padded JSON header, and the size of the data buffer."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in items:
        end = offset + nbytes(shape)
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def _fill(f, name: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """Random-ish finite bf16 values; the head reuses the embedding's seed, so its bytes match."""
    import zlib

    import numpy as np

    seed_name = "model.embed_tokens.weight" if name == "lm_head.weight" else name
    rng = np.random.default_rng(zlib.crc32(seed_name.encode()))
    left = size
    while left:
        n = min(WRITE_CHUNK, left)
        words = np.frombuffer(rng.bytes(n), dtype="<u2") & 0xBFFF  # exponent < 128: |x| < 2
        f.write(words.tobytes())
        left -= n


def write_shard(path: Path, items: list[tuple[str, tuple[int, ...]]], sparse: bool) -> int:
    head, data_size = header_bytes(items)
    with path.open("wb") as f:
        f.write(head)
        if sparse:
            f.truncate(len(head) + data_size)
        else:
            for name, shape in items:
                _fill(f, name, nbytes(shape))
    return len(head) + data_size


def config(spec: Spec) -> dict[str, object]:
    kv = spec.kv_dim or spec.hidden
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.hidden // 64,
        "num_key_value_heads": kv // 64,
        "vocab_size": spec.vocab,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": spec.tied,
        "torch_dtype": "bfloat16",
    }


def write_checkpoint(folder: Path, spec: Spec) -> dict[str, object]:
    """Write config.json plus one model.safetensors or N shards and their index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config(spec), indent=2) + "\n")
    items = tensors(spec)
    if spec.shards == 1:
        write_shard(folder / "model.safetensors", items, spec.sparse)
    else:
        weight_map = {}
        for k, part in enumerate(split(items, spec.shards)):
            name = f"model-{k + 1:05d}-of-{spec.shards:05d}.safetensors"
            write_shard(folder / name, part, spec.sparse)
            weight_map.update(dict.fromkeys((n for n, _ in part), name))
        index = {"metadata": {"total_size": total_bytes(spec)}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    files = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    return {
        "path": str(folder),
        "tensors": len(items),
        "files": len(files),
        "apparent_bytes": sum(p.stat().st_size for p in files),
        "allocated_bytes": sum(p.stat().st_blocks * 512 for p in files),
    }


def main() -> None:
    folder, fields = Path(sys.argv[1]), json.loads(sys.argv[2])
    print(json.dumps(write_checkpoint(folder, Spec(**fields))))


if __name__ == "__main__":
    main()
