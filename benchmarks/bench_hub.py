"""Remote (Hub) inspection benchmark: bytes transferred and time, against a local Hub stand-in.

    python benchmarks/bench_hub.py            # sparse 1.8 GB / 17 GB, real-data 0.1 GB / 1 GB
    python benchmarks/bench_hub.py --quick    # smaller real-data repos
    python benchmarks/bench_hub.py --latency 0.02   # every request waits 20 ms, as on a network

The server is ``tests/hub_server.py`` (the one the tests use), run in its own process so the
client and server do not share a GIL; it counts every body byte it sends. The client is
``tiecheck.inspect`` in this process, through the real ``huggingface_hub`` pointed at the
server with ``HF_ENDPOINT``; the Hub cache is emptied before every run, so each run is cold.

Repos (Llama-like layouts written by ``benchmarks/checkpoints.py``):

* ``sparse-small`` / ``sparse-large``: 120 layers, 1083 tensors in 20 shards, 1.8 GB and 17 GB
  of holes (``truncate``d files). ``--no-data`` must move the same kilobytes for both and take
  the same time: the header is what it reads, and the headers only differ in digits.
* ``real-small`` / ``real-large``: random bf16 values, ``lm_head`` a byte copy of the embedding,
  declared tied; about 0.1 GB and 1 GB. Full inspection must move the headers, a 12 KiB sample
  of every candidate tensor and both copies of the embedding, nothing else; so the bytes follow
  the size of the embedding, not of the checkpoint.

Exit status 0 when every check holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from checkpoints import Spec, total_bytes, write_checkpoint  # noqa: E402

SPARSE = {
    "sparse-small": Spec(layers=120, hidden=768, intermediate=2048, vocab=32000, shards=20),
    "sparse-large": Spec(layers=120, hidden=2432, intermediate=6528, vocab=32000, shards=20),
}
_REAL = {"hidden": 896, "intermediate": 4864, "kv_dim": 128, "tied": True, "sparse": False}
REAL = {
    "real-small": Spec(layers=2, vocab=13000, shards=2, **_REAL),
    "real-large": Spec(layers=16, vocab=151936, shards=2, **_REAL),
}
REAL_QUICK = {
    "real-small": Spec(layers=1, vocab=3000, shards=2, **_REAL),
    "real-large": Spec(layers=4, vocab=32000, shards=2, **_REAL),
}
NO_DATA_TIME_RATIO_MAX = 1.5
"""--no-data on 10x the bytes (same tensors) may take at most this much longer."""
NO_DATA_TIME_SLACK = 0.05
"""...or at most this many seconds longer (timer noise on runs of a few tens of ms)."""
NO_DATA_BYTES_PER_SHARD_MAX = 64 << 10


# --- the server, in a child process ---------------------------------------------------------


def _serve(repos: dict[str, str], latency: float, conn) -> None:  # type: ignore[no-untyped-def]
    from hub_server import HubServer

    server = HubServer(latency=latency).start()
    for name, folder in repos.items():
        server.add_repo(f"bench/{name}", Path(folder))
    conn.send(server.port)
    conn.recv()  # until the parent says stop
    server.stop()


def _stats(endpoint: str, reset: bool = False) -> dict:
    request = urllib.request.Request(
        f"{endpoint}/_stats", method="POST" if reset else "GET", data=b"" if reset else None
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# --- measurements -----------------------------------------------------------------------------


@dataclass
class Result:
    repo: str
    mode: str
    weights: int
    shards: int
    seconds: float
    server_bytes: int
    file_bytes: int
    weight_bytes: int
    weight_requests: int
    requests: int
    reported: int | None
    bytes_read: int
    verdict: str
    codes: list[str]


def _inspect(repo: str, spec: Spec, *, no_data: bool, cache: Path, endpoint: str) -> Result:
    import tiecheck

    shutil.rmtree(cache, ignore_errors=True)
    _stats(endpoint, reset=True)
    start = time.perf_counter()
    report = tiecheck.inspect(f"bench/{repo}", no_data=no_data)
    seconds = time.perf_counter() - start
    stats = _stats(endpoint)
    assert report.checkpoint.origin == "hub", report.checkpoint.origin
    return Result(
        repo=repo,
        mode="--no-data" if no_data else "full",
        weights=total_bytes(spec),
        shards=len(report.checkpoint.files),
        seconds=seconds,
        server_bytes=stats["bytes"],
        file_bytes=stats["file_bytes"],
        weight_bytes=stats["weight_bytes"],
        weight_requests=stats["weight_requests"],
        requests=stats["requests"],
        reported=report.bytes_transferred,
        bytes_read=report.bytes_read,
        verdict=report.verdict.value,
        codes=sorted({f.code for f in report.findings}),
    )


def _best(runs: list[Result]) -> Result:
    return min(runs, key=lambda r: r.seconds)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller real-data repos")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--workdir", type=Path, help="where to build repos (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the server waits before answering each request (a network round trip)",
    )
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tiecheck-bench-hub-"))
    work.mkdir(parents=True, exist_ok=True)
    real = REAL_QUICK if args.quick else REAL
    specs = {**SPARSE, **real}
    print(f"building repos in {work} ... (server latency {args.latency * 1000:.0f} ms)", flush=True)
    for name, spec in specs.items():
        folder = work / "repos" / name
        if not (folder / "config.json").is_file():
            write_checkpoint(folder, spec)

    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    repos = {name: str(work / "repos" / name) for name in specs}
    server = ctx.Process(target=_serve, args=(repos, args.latency, child), daemon=True)
    server.start()
    port = parent.recv()
    endpoint = f"http://127.0.0.1:{port}"

    home = work / "hf-home"
    os.environ.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_XET": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    for key in ("HF_TOKEN", "HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        os.environ.pop(key, None)
    cache = home / "hub"

    results: dict[tuple[str, str], Result] = {}
    local_seconds: dict[str, float] = {}
    try:
        import tiecheck

        # warm-up: imports and the first connection are not what is measured
        warm = specs["sparse-small"]
        _inspect("sparse-small", warm, no_data=True, cache=cache, endpoint=endpoint)
        plan = [(n, True) for n in SPARSE] + [(n, True) for n in real] + [(n, False) for n in real]
        for name, no_data in plan:
            runs = [
                _inspect(name, specs[name], no_data=no_data, cache=cache, endpoint=endpoint)
                for _ in range(args.repeat)
            ]
            best = _best(runs)
            results[(name, best.mode)] = best
            print(
                f"  {name:13} {best.mode:9} {best.seconds:7.3f} s  "
                f"{_fmt_bytes(best.server_bytes):>11} sent",
                flush=True,
            )
        for name in real:
            start = time.perf_counter()
            tiecheck.inspect(work / "repos" / name)
            local_seconds[name] = time.perf_counter() - start
    finally:
        parent.send("stop")
        server.join(timeout=10)

    print()
    header = (
        f"{'repo':13} {'mode':9} {'weights':>10} {'shards':>6} {'time':>8} {'sent (all)':>11} "
        f"{'weights sent':>12} {'per shard':>10} {'reqs':>5} {'read':>10}  verdict"
    )
    print(header)
    print("-" * len(header))
    for r in results.values():
        print(
            f"{r.repo:13} {r.mode:9} {_fmt_bytes(r.weights):>10} {r.shards:>6} "
            f"{r.seconds:7.3f}s {_fmt_bytes(r.server_bytes):>11} {_fmt_bytes(r.weight_bytes):>12} "
            f"{_fmt_bytes(r.weight_bytes / r.shards):>10} {r.requests:>5} "
            f"{_fmt_bytes(r.bytes_read):>10}  {r.verdict} {','.join(r.codes)}"
        )
    for name, seconds in local_seconds.items():
        print(f"(local full inspection of {name}: {seconds:.3f} s)")

    checks: list[tuple[str, bool]] = []
    print()
    for small, large, mode in (
        ("sparse-small", "sparse-large", "--no-data"),
        ("real-small", "real-large", "--no-data"),
        ("real-small", "real-large", "full"),
    ):
        a, b = results[(small, mode)], results[(large, mode)]
        print(
            f"{large}/{small} {mode:9}: weights x{b.weights / a.weights:5.1f}, "
            f"bytes sent x{b.server_bytes / a.server_bytes:6.2f}, "
            f"time x{b.seconds / a.seconds:5.2f}"
        )
    for name in (*SPARSE, *real):
        r = results[(name, "--no-data")]
        checks.append(
            (
                f"{name} --no-data: {_fmt_bytes(r.weight_bytes / r.shards)} per shard "
                f"<= {_fmt_bytes(NO_DATA_BYTES_PER_SHARD_MAX)}, no tensor bytes read",
                r.weight_bytes <= NO_DATA_BYTES_PER_SHARD_MAX * r.shards and r.bytes_read == 0,
            )
        )
        checks.append(
            (
                f"{name} --no-data: report.bytes_transferred ({r.reported:,}) = file bytes sent",
                r.reported == r.file_bytes,
            )
        )
    a, b = results[("sparse-small", "--no-data")], results[("sparse-large", "--no-data")]
    checks.append(
        (
            f"--no-data time on 10x the weights: x{b.seconds / a.seconds:.2f} "
            f"<= x{NO_DATA_TIME_RATIO_MAX} (or within {NO_DATA_TIME_SLACK} s)",
            b.seconds / a.seconds <= NO_DATA_TIME_RATIO_MAX
            or b.seconds - a.seconds <= NO_DATA_TIME_SLACK,
        )
    )
    checks.append(
        (
            f"--no-data bytes on 10x the weights: {b.server_bytes:,} vs {a.server_bytes:,} "
            "(within 1%)",
            abs(b.server_bytes - a.server_bytes) <= 0.01 * a.server_bytes,
        )
    )
    for name in real:
        full, nodata = results[(name, "full")], results[(name, "--no-data")]
        spec = specs[name]
        embedding = spec.vocab * spec.hidden * 2
        extra = full.weight_bytes - nodata.weight_bytes
        checks.append(
            (
                f"{name} full: tensor bytes sent beyond the headers ({extra:,}) = bytes "
                f"compared ({full.bytes_read:,}); both embedding copies "
                f"({2 * embedding:,}) plus samples; {full.weight_bytes / full.weights:.1%} of "
                "the weights",
                extra == full.bytes_read and 2 * embedding <= extra < 2 * embedding + (8 << 20),
            )
        )
        checks.append(
            (
                f"{name} full: finds the duplicated head (TC103)",
                "TC103" in full.codes,
            )
        )
    print()
    for text, ok in checks:
        print(f"[{'ok' if ok else 'FAIL'}] {text}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
