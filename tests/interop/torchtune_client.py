"""torchtune as producer and client, run in its own environment by ``external.py``.

torchtune 0.6.1 needs torchao <= 0.15 (0.16 dropped ``int4_weight_only``), and PEFT 0.21
refuses to work at all when a torchao older than 0.16 is installed, so torchtune cannot share
the test environment with PEFT. Standalone: imports nothing from tiecheck or the tests.

    python torchtune_client.py write ROOT --tied|--untied [--seed N]
        build a tiny Qwen2 with torchtune's component builder (TiedLinear when tied), write it
        as model.pt (torchtune's own format), read it back and save it with
        FullModelTorchTuneCheckpointer as a recipe does at the end of an epoch; prints
        {"epoch_dir": ..., "keys": [...]}
    python torchtune_client.py logits FILE --tied|--untied
        build the model, load FILE (.bin/.pt by torch.load, .safetensors by safetensors)
        with a strict load_state_dict, print {"logits": ...}; exit 3 with the loader's
        message when the strict load fails
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

ARGS = {
    "vocab_size": 64,
    "num_layers": 1,
    "num_heads": 2,
    "num_kv_heads": 1,
    "embed_dim": 16,
    "intermediate_dim": 32,
    "max_seq_len": 32,
}
INPUT_IDS = [[3, 9, 4, 7, 12, 8, 11, 6]]


def _model(tied: bool):  # type: ignore[no-untyped-def]
    from torchtune.models.qwen2 import qwen2

    return qwen2(**ARGS, tie_word_embeddings=tied).eval()


def _write(root: Path, tied: bool, seed: int) -> dict:
    import torch
    from torchtune.training import FullModelTorchTuneCheckpointer

    torch.manual_seed(seed)
    model = _model(tied)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-looking values: norms are not all ones
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    ckpt_dir, out_dir = root / "base", root / "finetuned"
    ckpt_dir.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt_dir / "model.pt")
    checkpointer = FullModelTorchTuneCheckpointer(
        checkpoint_dir=str(ckpt_dir),
        checkpoint_files=["model.pt"],
        model_type="QWEN2",
        output_dir=str(out_dir),
    )
    state = checkpointer.load_checkpoint()
    model.load_state_dict(state["model"], strict=True)
    checkpointer.save_checkpoint({"model": model.state_dict()}, epoch=0)
    epoch = out_dir / "epoch_0"
    (written,) = epoch.glob("*.bin")
    keys = sorted(torch.load(written, weights_only=True))
    return {"epoch_dir": str(epoch), "file": written.name, "keys": keys}


def _logits(path: Path, tied: bool) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, weights_only=True)
    model = _model(tied)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        sys.exit(3)
    with torch.no_grad():
        logits = model(torch.tensor(INPUT_IDS))
    return {"logits": logits.float().tolist()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["write", "logits"])
    parser.add_argument("path")
    tie = parser.add_mutually_exclusive_group(required=True)
    tie.add_argument("--tied", action="store_true")
    tie.add_argument("--untied", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    if args.command == "write":
        result = _write(Path(args.path), args.tied, args.seed)
    else:
        result = _logits(Path(args.path), args.tied)
    sys.stdout.write("\n" + json.dumps(result) + "\n")  # the caller reads the last line
    return 0


if __name__ == "__main__":
    sys.exit(main())
