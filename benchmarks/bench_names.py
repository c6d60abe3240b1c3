"""How inspection time grows with the number of names (1k, 10k, 40k): it should be ~linear.

Each input is one safetensors file of tiny tensors whose names follow registry layouts under a
prefix per index (the shapes that used to hit quadratic paths in the tie-group search and the
duplicate explanation). ``tiecheck.inspect`` runs in this process, best of ``--repeat``, with
and without data; the last column is the time per name relative to the smallest size (1.0 is
linear). ``--profile`` prints the cProfile functions with the most time for the largest size.

    python benchmarks/bench_names.py [--sizes 1000,10000,40000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import tiecheck

KINDS = {
    "registry mix": [
        "layers.{}.model.embed_tokens.weight",
        "x.{}.transformer.wte.weight",
        "m.{}.word_embeddings.weight",
        "t.{}.shared.weight",
        "x.{}.layers.0.wte.weight",
        "x.{}.layers.1.linear.weight",
        "y.{}.layers.0.wte.weight",
        "y.{}.layers.1.linear.weight",
    ],
    "phi heads": ["layers.{}.linear.weight"],
    "gguf heads": ["blk.{}.output.weight"],
    "heuristic": ["q.{}.embed.weight", "q.{}.lm_head.weight"],
}


def write(folder: Path, patterns: list[str], n: int) -> Path:
    names = [patterns[i % len(patterns)].format(i // len(patterns)) for i in range(n)]
    tensors = {name: np.full((2, 2), i // 2, dtype=np.float32) for i, name in enumerate(names)}
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def best(source: Path, no_data: bool, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        tiecheck.inspect(source, no_data=no_data)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,40000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, patterns in KINDS.items():
            for no_data in (True, False):
                cells, base = [], None
                for n in sizes:
                    source = Path(tmp) / f"{kind}-{n}".replace(" ", "-")
                    if not source.exists():
                        write(source, patterns, n)
                    seconds = best(source, no_data, args.repeat)
                    per_name = seconds / n
                    base = base or per_name
                    cells.append(f"{n:>6}: {seconds:6.2f} s ({per_name / base:4.1f})")
                mode = "--no-data" if no_data else "data"
                print(f"{kind:<13} {mode:<9} " + "  ".join(cells), flush=True)
                if args.profile:
                    profile = cProfile.Profile()
                    profile.runcall(tiecheck.inspect, source, no_data=no_data)
                    pstats.Stats(profile).sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
