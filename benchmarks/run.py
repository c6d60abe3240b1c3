"""Benchmarks for ``tiecheck inspect`` and ``fix``: one command runs all, checks requirements.

    python benchmarks/run.py            # full sizes, about 4-5 minutes (fix: ~2.5), ~9 GB of disk
    python benchmarks/run.py --quick    # smaller real-data checkpoints, about 1.5 minutes

Every measurement runs in a fresh subprocess: wall time with ``perf_counter`` around
spawn-to-reap; peak RSS from GNU ``/usr/bin/time -f %M`` when it exists, else from the
``rusage`` that ``os.wait4`` returns for that one child. The median of ``--repeat`` runs is
reported, after one untimed warm-up run of the same command.

Why ``time`` first: a child is vforked from this driver, so the kernel starts the child's
``ru_maxrss`` at the driver's own high-water mark (about 19 MB here, imports and all), which
would inflate every small number; ``time`` is a tiny C program whose forked child starts near
zero. (``RUSAGE_CHILDREN`` is no better: it is the maximum over every child reaped so far.) With
either method the driver imports nothing heavy and writes checkpoints in a child process.

Children get a bytecode cache (``PYTHONPYCACHEPREFIX`` in the work dir, overriding any
``PYTHONDONTWRITEBYTECODE``), so like an installed package tiecheck is not recompiled per run.

Exit status: 0 when every requirement holds, 1 when one fails, 2 when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    # bench_fix.py does ``import run``: let it share this module (USE_TIME, CHILD_ENV, Check)
    # instead of importing a second copy whose globals ``main`` never set.
    sys.modules.setdefault("run", sys.modules[__name__])
PY = sys.executable
MB = 1 << 20
GB = 1 << 30

# --- what is generated --------------------------------------------------------------------------
# Llama-like layouts (checkpoints.Spec fields). Sparse ones cost nothing to write, so --quick
# keeps them; real-data ones are scaled down by --quick.

SPARSE = {
    # 120 layers x 9 + 3 = 1083 tensors over 20 shards; only the widths differ (10x the bytes).
    "small": {"layers": 120, "hidden": 768, "intermediate": 2048, "vocab": 32000, "shards": 20},
    "large": {"layers": 120, "hidden": 2432, "intermediate": 6528, "vocab": 32000, "shards": 20},
    # about the bytes of "small", 10x the tensors: what --no-data cost does grow with.
    "many": {"layers": 1200, "hidden": 256, "intermediate": 640, "vocab": 32000, "shards": 20},
}

# Qwen2-0.5B widths (large 151,936-token vocabulary), 16 layers, untied copy of the embedding
# stored as lm_head, declared tied: ~1 GB in two shards.
FULL_1GB = {
    "layers": 16,
    "hidden": 896,
    "intermediate": 4864,
    "vocab": 151936,
    "kv_dim": 128,
    "shards": 2,
    "tied": True,
    "sparse": False,
}
FULL_1GB_QUICK = {**FULL_1GB, "layers": 4, "vocab": 32000}

# TinyLlama widths; the large one has 4x the vocabulary and 4x the layers of the small one.
_SHARD = {"hidden": 2048, "intermediate": 5632, "kv_dim": 256, "tied": True, "sparse": False}
SHARD_SIZES = {
    "0.5 GB": {**_SHARD, "layers": 3, "vocab": 32000},
    "2 GB": {**_SHARD, "layers": 12, "vocab": 128000},
}
SHARD_SIZES_QUICK = {
    "110 MB": {**_SHARD, "hidden": 1024, "intermediate": 2816, "layers": 2, "vocab": 16000},
    "440 MB": {**_SHARD, "hidden": 1024, "intermediate": 2816, "layers": 8, "vocab": 64000},
}

# --- requirements -------------------------------------------------------------------------------
NO_DATA_SIZE_RATIO_MAX = 1.25
"""--no-data on 10x the bytes (same tensors) may take at most this much longer."""
SPEEDUP_MIN = 5.0
"""full inspection vs load_file + torch.equal, ~1 GB checkpoint."""
RSS_FRACTION_MAX = 0.10
"""tiecheck's peak RSS as a fraction of the baseline's, ~1 GB checkpoint."""
RSS_LIMIT_MB = 150.0
"""tiecheck's peak RSS on safetensors input, whatever the shard size."""
RSS_FLAT_RATIO_MAX = 1.25
"""peak RSS on a 4x larger shard may grow at most this much."""


@dataclass
class Run:
    seconds: float
    rss_kb: int
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Measurement:
    label: str
    argv: list[str]
    runs: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    output: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def rss_mb(self) -> float:
        return statistics.median(self.rss_kb) / 1024


@dataclass
class Check:
    name: str
    value: str
    limit: str
    ok: bool | None
    """None: reported but not enforced (--quick sizes)."""


class BenchmarkError(RuntimeError):
    pass


TIME = Path("/usr/bin/time")
USE_TIME = False
"""set by ``main`` once GNU time is known to work."""
CHILD_ENV: dict[str, str] | None = None


def spawn(argv: list[str]) -> Run:
    """Run one child to completion: wall time and its own peak RSS (KiB)."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss,
    ):
        full = [str(TIME), "-f", "%M", "-o", rss.name, *argv] if USE_TIME else argv
        start = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=CHILD_ENV
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        # GNU time writes "Command exited with non-zero status N" before the number.
        rss_kb = int(rss.read().split()[-1]) if USE_TIME else usage.ru_maxrss
        out.seek(0)
        err.seek(0)
        return Run(
            seconds,
            rss_kb,
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def gnu_time_works() -> bool:
    if not TIME.is_file():
        return False
    with tempfile.NamedTemporaryFile("r") as rss:
        done = subprocess.run(
            [str(TIME), "-f", "%M", "-o", rss.name, PY, "-c", "pass"], capture_output=True
        )
        text = rss.read().split()
    return done.returncode == 0 and len(text) == 1 and text[0].isdigit()


def measure(
    label: str,
    argv: list[str],
    repeat: int,
    ok_codes: tuple[int, ...] = (0,),
    after: Callable[[int, Run], None] | None = None,
) -> Measurement:
    """``after(i, run)`` is called after every run (``i`` = 0 for the warm-up), untimed: to
    check what a run wrote and delete it before the next one."""
    m = Measurement(label, argv)
    for i in range(repeat + 1):  # the first run warms caches and is not counted
        run = spawn(argv)
        if run.returncode not in ok_codes:
            raise BenchmarkError(
                f"{label}: exit {run.returncode} from {' '.join(argv)}\n{run.stderr[-2000:]}"
            )
        if after is not None:
            after(i, run)
        if i:
            m.runs.append(run.seconds)
            m.rss_kb.append(run.rss_kb)
        m.output = run.stdout
    print_measurement(m)
    return m


def print_measurement(m: Measurement) -> None:
    print(f"  {m.label:<46} {m.seconds * 1000:8.0f} ms  {m.rss_mb:7.1f} MB peak RSS", flush=True)


def report_of(output: str) -> dict:
    """The one source's report in ``tiecheck inspect --json`` output (JSON schema v2: a run
    with ``reports`` and ``errors``)."""
    doc = json.loads(output)
    if doc.get("errors") or len(doc.get("reports", ())) != 1:
        raise BenchmarkError(f"expected one report, got errors {doc.get('errors')}")
    return doc["reports"][0]


def tiecheck(source: Path, *, no_data: bool = False) -> list[str]:
    argv = [PY, "-m", "tiecheck", "inspect", str(source), "--json", "-q"]
    return [*argv, "--no-data"] if no_data else argv


def naive(source: Path) -> list[str]:
    return [PY, str(HERE / "naive_compare.py"), str(source)]


def headers_only(source: Path) -> list[str]:
    """The floor of ``--no-data``: ``safe_open`` of every shard, names, dtypes and shapes."""
    return [PY, str(HERE / "headers_only.py"), str(source)]


def tensor_ranges(folder: Path, names: tuple[str, ...]) -> list[tuple[Path, int, int]]:
    """(file, start, length) of each named tensor's bytes, from the safetensors headers."""
    index = next(folder.glob("*.safetensors.index.json"), None)
    where = (
        json.loads(index.read_text())["weight_map"]
        if index
        else dict.fromkeys(names, "model.safetensors")
    )
    ranges = []
    for name in names:
        path = folder / where[name]
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        begin, end = header[name]["data_offsets"]
        ranges.append((path, 8 + n + begin, end - begin))
    return ranges


COMPARED = ("model.embed_tokens.weight", "lm_head.weight")


def dd_compared(folder: Path) -> tuple[list[str], int]:
    """``dd`` of exactly the bytes a comparison of embedding and head must read: the floor
    of the data phase (one ``sh`` running one ``dd`` per tensor, 8 MiB blocks)."""
    ranges = tensor_ranges(folder, COMPARED)
    script = "; ".join(
        f"dd if='{path}' of=/dev/null bs=8M iflag=skip_bytes,count_bytes skip={start} "
        f"count={length} status=none"
        for path, start, length in ranges
    )
    return ["sh", "-c", f"set -e; {script}"], sum(length for _, _, length in ranges)


def write(folder: Path, spec: dict[str, object]) -> dict[str, int]:
    run = spawn([PY, str(HERE / "checkpoints.py"), str(folder), json.dumps(spec)])
    if run.returncode:
        raise BenchmarkError(f"writing {folder.name} failed:\n{run.stderr[-2000:]}")
    os.sync()  # no writeback of fresh data while we time
    return json.loads(run.stdout)


def size(n: float) -> str:
    return (
        f"{n / GB:.2f} GB" if n >= GB else f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.0f} KiB"
    )


# --- the benchmarks -----------------------------------------------------------------------------


def bench_baselines(repeat: int) -> dict[str, Measurement]:
    print("\n[0] start-up baselines (fresh interpreter each run)")
    return {
        "python": measure("python -c pass", [PY, "-c", "pass"], repeat),
        "import": measure(
            "python -c 'import tiecheck.cli'", [PY, "-c", "import tiecheck.cli"], repeat
        ),
    }


def bench_no_data(
    work: Path, repeat: int, base: dict[str, Measurement]
) -> tuple[dict[str, object], list[Check]]:
    print(
        "\n[1] --no-data on a 20-shard sparse checkpoint (index + config.json): "
        "cost vs bytes and vs tensors"
    )
    results: dict[str, object] = {}
    ms: dict[str, Measurement] = {}
    floor: dict[str, Measurement] = {}
    info: dict[str, dict[str, int]] = {}
    for name, spec in SPARSE.items():
        folder = work / f"sparse-{name}"
        info[name] = write(folder, spec)
        i = info[name]
        print(
            f"  wrote {name}: {i['tensors']} tensors in {i['files']} shards, "
            f"{size(i['apparent_bytes'])} on ls, {size(i['allocated_bytes'])} on du (sparse)"
        )
    for name in SPARSE:
        folder = work / f"sparse-{name}"
        label = f"--no-data {name} ({info[name]['tensors']} tensors, " + (
            f"{size(info[name]['apparent_bytes'])})"
        )
        ms[name] = measure(label, tiecheck(folder, no_data=True), repeat, ok_codes=(0, 1))
        doc = report_of(ms[name].output)
        if doc["tensors"] != info[name]["tensors"] or doc["bytes_read"] != 0:
            raise BenchmarkError(f"--no-data {name}: unexpected report {doc['tensors']} tensors")
        floor[name] = measure(f"  floor: safe_open headers, {name}", headers_only(folder), repeat)
        if json.loads(floor[name].output)["tensors"] != info[name]["tensors"]:
            raise BenchmarkError(f"headers_only {name}: wrong tensor count")
        shutil.rmtree(folder)
    t_imp, t_py = base["import"].seconds, base["python"].seconds
    small, large, many = ms["small"], ms["large"], ms["many"]
    bytes_ratio = info["large"]["apparent_bytes"] / info["small"]["apparent_bytes"]
    size_ratio = large.seconds / small.seconds
    per_tensor = (many.seconds - small.seconds) / (
        info["many"]["tensors"] - info["small"]["tensors"]
    )
    print(f"  bytes large/small                              {bytes_ratio:8.2f} x")
    print(f"  time  large/small (same tensor count)          {size_ratio:8.2f} x   (want ~1)")
    print(f"  RSS   large/small                              {large.rss_mb / small.rss_mb:8.2f} x")
    print(
        f"  time  many/small  (10x tensors, same bytes)    {many.seconds / small.seconds:8.2f} x"
        f"   (+{per_tensor * 1e6:.0f} us per extra tensor)"
    )
    for name in SPARSE:
        m = ms[name]
        print(
            f"  {name:<5} vs import baseline: {m.seconds / t_imp:5.2f} x 'import tiecheck.cli' "
            f"(+{(m.seconds - t_imp) * 1000:.0f} ms), {m.seconds / t_py:5.1f} x 'python -c pass'"
            f", {m.seconds / floor[name].seconds:5.2f} x safe_open headers "
            f"({floor[name].seconds * 1000:.0f} ms)"
        )
    results.update(
        info=info,
        seconds={k: v.seconds for k, v in ms.items()},
        rss_mb={k: v.rss_mb for k, v in ms.items()},
        bytes_ratio=bytes_ratio,
        time_ratio_large_small=size_ratio,
        time_ratio_many_small=many.seconds / small.seconds,
        per_extra_tensor_us=per_tensor * 1e6,
        vs_import={k: v.seconds / t_imp for k, v in ms.items()},
        safe_open_seconds={k: v.seconds for k, v in floor.items()},
        vs_safe_open={k: ms[k].seconds / v.seconds for k, v in floor.items()},
    )
    checks = [
        Check(
            "--no-data time, 10x bytes / 1x bytes",
            f"{size_ratio:.2f}x",
            f"<= {NO_DATA_SIZE_RATIO_MAX}x",
            size_ratio <= NO_DATA_SIZE_RATIO_MAX,
        )
    ]
    return results, checks


def bench_full(work: Path, repeat: int, quick: bool) -> tuple[dict[str, object], list[Check]]:
    spec = FULL_1GB_QUICK if quick else FULL_1GB
    folder = work / "full"
    info = write(folder, spec)
    print(
        f"\n[2] full inspection of {size(info['apparent_bytes'])} of real bf16 data "
        f"({info['tensors']} tensors, {info['files']} shards, lm_head = copy of the embedding) "
        "vs load_file + torch.equal"
    )
    print(
        "  page cache: not dropped (needs root); every command is run once untimed first, "
        "so all numbers are warm-cache"
    )
    # the baseline goes last: a command run right after it (4 GB of memory to reclaim) is
    # measured slower, which would charge its cost to another command
    t = measure("tiecheck inspect --json (full)", tiecheck(folder), repeat, ok_codes=(0, 1))
    lib = measure(
        "  (tiecheck.inspect() called directly, no CLI)",
        [PY, "-c", f"import tiecheck; tiecheck.inspect({str(folder)!r})"],
        repeat,
    )
    hdr = measure(
        "  (tiecheck inspect --no-data, same checkpoint)",
        tiecheck(folder, no_data=True),
        repeat,
        ok_codes=(0, 1),
    )
    dd_argv, dd_bytes = dd_compared(folder)
    dd = measure(f"  floor: dd of the {size(dd_bytes)} compared", dd_argv, repeat)
    n = measure("baseline load_file + torch.equal", naive(folder), repeat)
    doc = report_of(t.output)
    dup = [d["keys"] for d in doc["duplicates"] or []]
    if ["model.embed_tokens.weight", "lm_head.weight"] not in dup or not json.loads(n.output)[
        "identical"
    ].get("model.embed_tokens.weight == lm_head.weight"):
        raise BenchmarkError(f"full inspection missed the duplicated head: {dup}")
    speedup = n.seconds / t.seconds
    rss_fraction = t.rss_mb / n.rss_mb
    print(
        f"  tiecheck read {size(doc['bytes_read'])} of {size(doc['total_bytes'])} "
        f"(found {', '.join(f['code'] for f in doc['findings'])}); baseline agrees: identical"
    )
    phase = t.seconds - hdr.seconds
    print(
        f"  data phase (full - --no-data): {phase * 1000:.0f} ms for {size(doc['bytes_read'])}"
        f" ({doc['bytes_read'] / max(phase, 1e-9) / GB:.1f} GB/s), "
        f"{t.rss_mb - hdr.rss_mb:+.1f} MB peak RSS"
    )
    print(
        f"  data phase / dd of the compared bytes          {phase / dd.seconds:8.2f} x   "
        f"(dd {dd_bytes / dd.seconds / GB:.1f} GB/s)"
    )
    print(f"  speed-up  baseline / tiecheck                  {speedup:8.2f} x   (want >= 5)")
    print(
        f"  peak RSS  tiecheck / baseline                  {rss_fraction:8.3f}     (want <= 0.10)"
    )
    checks = [
        Check(
            "full inspection speed-up vs load_file+equal",
            f"{speedup:.2f}x",
            f">= {SPEEDUP_MIN}x",
            None if quick else speedup >= SPEEDUP_MIN,
        ),
        Check(
            "full inspection peak RSS / baseline's",
            f"{rss_fraction:.3f}",
            f"<= {RSS_FRACTION_MAX}",
            None if quick else rss_fraction <= RSS_FRACTION_MAX,
        ),
        Check(
            f"full inspection peak RSS ({size(info['apparent_bytes'])})",
            f"{t.rss_mb:.1f} MB",
            f"< {RSS_LIMIT_MB:.0f} MB",
            t.rss_mb < RSS_LIMIT_MB,
        ),
    ]
    shutil.rmtree(folder)
    results = {
        "info": info,
        "tiecheck": {"seconds": t.seconds, "rss_mb": t.rss_mb, "runs": t.runs},
        "baseline": {"seconds": n.seconds, "rss_mb": n.rss_mb, "runs": n.runs},
        "library": {"seconds": lib.seconds, "rss_mb": lib.rss_mb},
        "no_data": {"seconds": hdr.seconds, "rss_mb": hdr.rss_mb},
        "dd_compared": {"seconds": dd.seconds, "bytes": dd_bytes},
        "data_phase_vs_dd": phase / dd.seconds,
        "bytes_read": doc["bytes_read"],
        "speedup": speedup,
        "rss_fraction": rss_fraction,
    }
    return results, checks


def bench_shard_sizes(
    work: Path, repeat: int, quick: bool
) -> tuple[dict[str, object], list[Check]]:
    specs = SHARD_SIZES_QUICK if quick else SHARD_SIZES
    print(
        "\n[3] peak RSS of full inspection vs shard size (one model.safetensors, duplicated head)"
    )
    rows: dict[str, dict[str, object]] = {}
    for label, spec in specs.items():
        folder = work / f"shard-{label.replace(' ', '')}"
        info = write(folder, spec)
        t = measure(
            f"tiecheck full, {size(info['apparent_bytes'])} shard", tiecheck(folder), repeat, (0, 1)
        )
        dd_argv, dd_bytes = dd_compared(folder)
        dd = measure(f"  floor: dd of the {size(dd_bytes)} compared", dd_argv, repeat)
        n = measure(f"baseline,      {size(info['apparent_bytes'])} shard", naive(folder), repeat)
        doc = report_of(t.output)
        rows[label] = {
            "bytes": info["apparent_bytes"],
            "bytes_read": doc["bytes_read"],
            "tiecheck_seconds": t.seconds,
            "tiecheck_rss_mb": t.rss_mb,
            "baseline_seconds": n.seconds,
            "baseline_rss_mb": n.rss_mb,
            "dd_seconds": dd.seconds,
            "vs_dd": t.seconds / dd.seconds,
        }
        print(
            f"  tiecheck / dd of the compared bytes          {t.seconds / dd.seconds:8.2f} x   "
            "(whole run, start-up included)"
        )
        shutil.rmtree(folder)
    small, large = rows.values()
    bytes_ratio = large["bytes"] / small["bytes"]  # type: ignore[operator]
    rss_ratio = large["tiecheck_rss_mb"] / small["tiecheck_rss_mb"]  # type: ignore[operator]
    base_ratio = large["baseline_rss_mb"] / small["baseline_rss_mb"]  # type: ignore[operator]
    print(f"  shard bytes large/small                        {bytes_ratio:8.2f} x")
    print(f"  tiecheck peak RSS large/small                  {rss_ratio:8.2f} x   (want ~1)")
    print(f"  baseline peak RSS large/small                  {base_ratio:8.2f} x")
    checks = [
        Check(
            f"peak RSS, {bytes_ratio:.1f}x larger shard / smaller",
            f"{rss_ratio:.2f}x",
            f"<= {RSS_FLAT_RATIO_MAX}x",
            rss_ratio <= RSS_FLAT_RATIO_MAX,
        ),
        *(
            Check(
                f"full inspection peak RSS ({size(r['bytes'])} shard)",  # type: ignore[arg-type]
                f"{r['tiecheck_rss_mb']:.1f} MB",
                f"< {RSS_LIMIT_MB:.0f} MB",
                r["tiecheck_rss_mb"] < RSS_LIMIT_MB,  # type: ignore[operator]
            )
            for r in rows.values()
        ),
    ]
    return {"rows": rows, "rss_ratio": rss_ratio, "baseline_rss_ratio": base_ratio}, checks


# --- driver -------------------------------------------------------------------------------------


def versions() -> str:
    found = []
    for dist in ("tiecheck", "safetensors", "torch", "numpy", "typer"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def configure(workdir: Path, title: str, quick: bool, repeat: int) -> Path:
    """Make the work dir, pick the RSS method and the children's environment, print a header."""
    global USE_TIME, CHILD_ENV
    workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tiecheck-bench-", dir=workdir))
    CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    USE_TIME = gnu_time_works()
    how = "GNU /usr/bin/time -f %M" if USE_TIME else "os.wait4 rusage (driver's peak is a floor)"
    free = shutil.disk_usage(work).free
    print(
        f"{title}{' (--quick)' if quick else ''}: {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, {versions()}"
    )
    print(f"work dir {work} ({size(free)} free); median of {repeat} runs after 1 warm-up")
    print(f"peak RSS via {how}; bytecode cached in the work dir")
    return work


def print_checks(checks: list[Check]) -> float:
    """The requirements summary; returns the driver's own peak RSS (MB)."""
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\nrequirements" + ("" if USE_TIME else f" (RSS floor: the driver's {floor:.1f} MB)"))
    for c in checks:
        status = "n/a (--quick)" if c.ok is None else "PASS" if c.ok else "FAIL"
        print(f"  {status:<13} {c.name:<48} {c.value:>10}  (want {c.limit})")
    return floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller real-data checkpoints")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (median)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=HERE / ".work",
        help="where checkpoints are written (a temporary folder inside it is removed at the end)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args()

    from bench_fix import bench_fix  # after the sys.modules alias above

    work = configure(args.workdir, "tiecheck benchmarks", args.quick, args.repeat)
    started = time.perf_counter()
    results: dict[str, object] = {"quick": args.quick, "repeat": args.repeat}
    checks: list[Check] = []
    try:
        base = bench_baselines(max(args.repeat, 5))
        results["baselines"] = {
            k: {"seconds": m.seconds, "rss_mb": m.rss_mb} for k, m in base.items()
        }
        for key, (res, chk) in (
            ("no_data", bench_no_data(work, max(args.repeat, 5), base)),
            ("full", bench_full(work, args.repeat, args.quick)),
            ("shard_sizes", bench_shard_sizes(work, args.repeat, args.quick)),
            ("fix", bench_fix(work, args.repeat, args.quick)),
        ):
            results[key] = res
            checks += chk
    except BenchmarkError as e:
        print(f"\nbenchmark failed: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    floor = print_checks(checks)
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    results.update(checks=[asdict(c) for c in checks], seconds=elapsed, driver_rss_mb=floor)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(c.ok is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
