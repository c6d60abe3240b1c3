"""Benchmark for ``tiecheck fix``: wall time against ``cp -r``, peak RSS against shard size.

    python benchmarks/bench_fix.py            # 2 x 2.2 GB shards, ~3-4 minutes, ~9 GB of disk
    python benchmarks/bench_fix.py --quick    # 2 x 0.3 GB shards, about 30 s

``run.py`` runs this as its section [4] (``bench_fix(work, repeat, quick)``); alone it takes
the same ``--quick``, ``--repeat``, ``--workdir``, ``--keep`` and ``--json`` options. Every
command runs in a fresh subprocess and is measured as in ``run.py`` (wall time spawn-to-reap,
peak RSS from GNU ``time``, median of ``--repeat`` after a warm-up), except that the commands
compared on one checkpoint take turns: a warm-up round of all four, then ``--repeat`` timed
rounds, so background load falls on all of them alike and their ratios stay steadier.

Cases, each a real-data Llama checkpoint (random bf16, TinyLlama widths, two shards, written by
``checkpoints.py``) whose ``lm_head.weight`` is a byte copy of the embedding:

* (a) shards of 2.2 GB (2.05 GiB): ``fix --to tied`` drops the head, so the first shard is
  copied whole and the second is rewritten without it;
* (b) the same layout with 4x smaller shards: peak RSS must not follow the shard size;
* (c) the output of (a), deduplicated and declared tied: ``fix --to untied`` stores the head
  again (a 500 MiB copy of the embedding, written beside it) and flips the config flag.

Each is compared with ``cp -r SRC OUT`` of the same source (the time requirement's reference),
``cp -r`` followed by ``sync OUT/*`` (``fix`` fsyncs what it writes; ``cp`` leaves it to the
kernel's writeback), and ``naive_fix.py`` (``load_file`` + edit + ``save_file``). The output
folder is checked after every run (``fix``'s own JSON report; file sizes for ``cp``; an
inspection of the baseline's output), then deleted and the disk synced, untimed, so no run
pays for an earlier run's writeback. For (a), one more run of ``fix`` draws its progress bar on
a pseudo-terminal (checked for bytes, rate and ETA) and one runs under ``strace -c`` to show
which system calls move the bytes.

Disk: the (a) source and one output at a time, ~9 GB at most; all removed at the end.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import run
from checkpoints import Spec, total_bytes
from run import GB, PY, BenchmarkError, Check, Measurement, print_measurement, size, spawn, write

HERE = Path(__file__).resolve().parent

_TINYLLAMA = {"hidden": 2048, "intermediate": 5632, "kv_dim": 256, "shards": 2, "tied": True}
_SMALLER = {"hidden": 1024, "intermediate": 2816, "kv_dim": 128, "shards": 2, "tied": True}
CASES = {
    # 38 layers, 128k vocabulary: 4.4 GB in two shards of 2.05 GiB, lm_head in the second.
    "large": {**_TINYLLAMA, "layers": 38, "vocab": 128000, "sparse": False},
    # a quarter of both: 9 layers, 32k vocabulary, largest shard 0.51 GiB.
    "small": {**_TINYLLAMA, "layers": 9, "vocab": 32000, "sparse": False},
}
CASES_QUICK = {
    "large": {**_SMALLER, "layers": 16, "vocab": 64000, "sparse": False},
    "small": {**_SMALLER, "layers": 4, "vocab": 16000, "sparse": False},
}

# --- requirements -------------------------------------------------------------------------------
CP_RATIO_MAX = 1.3
"""fix's wall time / a durable copy of the same checkpoint (``durable_copy.py``:
``copy_file_range`` + ``fsync`` of each file, the same durability ``fix`` promises), 2 GB+
shard. ``cp -r`` (which leaves its data in the page cache) is printed beside it."""
RSS_LIMIT_MB = 150.0
"""fix's peak RSS, whatever the shard size."""
RSS_FLAT_RATIO_MAX = 1.25
"""fix's peak RSS on 4x larger shards / on the smaller ones (as for inspect)."""
BIG_SHARD = 2 * 10**9
"""the time requirement is defined on a checkpoint with a shard at least this big."""


def _largest_shard(folder: Path) -> int:
    return max(p.stat().st_size for p in folder.glob("*.safetensors"))


def _sizes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def _remove(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # nothing left for the kernel to write back while the next run is timed


def _inspect(folder: Path) -> dict:
    done = spawn([PY, "-m", "tiecheck", "inspect", str(folder), "--json", "-q"])
    if done.returncode not in (0, 1):
        raise BenchmarkError(f"inspecting {folder} failed:\n{done.stderr[-2000:]}")
    return run.report_of(done.stdout)


class Case:
    """One source checkpoint, one target state, the commands compared on it."""

    def __init__(self, key: str, source: Path, to: str, work: Path) -> None:
        self.key, self.source, self.to = key, source, to
        self.out = work / f"out-{key}"
        self.expected: dict | None = None
        """the inspection of fix's output: what the baseline's output must also give."""
        self.plan: dict = {}
        """fix's JSON report of its warm-up run."""
        self.fix_sizes: dict[str, int] = {}
        self.largest = _largest_shard(source)
        """the source's largest shard (bytes)."""
        _remove(self.out)

    def fix_argv(self, *extra: str) -> list[str]:
        src, out = str(self.source), str(self.out)
        return [PY, "-m", "tiecheck", "fix", src, "--to", self.to, "-o", out, *extra]

    def _after_fix(self, i: int, done: run.Run) -> None:
        doc = json.loads(done.stdout)
        after = doc["after"]
        # info only (TC105 "untied but identical" is what --to untied of a tied model gives)
        serious = [f["code"] for f in after["findings"] if f["severity"] != "info"]
        if after["verdict"] != self.to or serious:
            raise BenchmarkError(f"fix {self.key}: output is {after['verdict']}, {serious}")
        if i == 0:
            self.plan = doc
            self.expected = {k: after[k] for k in ("verdict", "tensors", "total_bytes")}
            self.fix_sizes = _sizes(self.out)
        elif _sizes(self.out) != self.fix_sizes:
            raise BenchmarkError(f"fix {self.key}: run {i} wrote different files")
        _remove(self.out)

    def _after_cp(self, i: int, done: run.Run) -> None:
        if _sizes(self.out) != _sizes(self.source):
            raise BenchmarkError(f"cp -r {self.key}: copy differs from the source")
        _remove(self.out)

    def _after_naive(self, i: int, done: run.Run) -> None:
        if i == 0:
            doc = _inspect(self.out)
            got = {k: doc[k] for k in ("verdict", "tensors", "total_bytes")}
            if got != self.expected:
                raise BenchmarkError(f"baseline {self.key}: wrote {got}, fix wrote {self.expected}")
        _remove(self.out)

    def run_all(self, repeat: int) -> dict[str, Measurement]:
        src, out = str(self.source), str(self.out)
        commands = {
            "fix": (
                f"tiecheck fix --to {self.to}",
                self.fix_argv("--format", "json", "-q"),
                self._after_fix,
            ),
            "cp": ("cp -r SRC OUT", ["cp", "-r", src, out], self._after_cp),
            "cp_sync": (
                "cp -r SRC OUT && sync OUT/*  (fsync'd, as fix)",
                ["sh", "-c", 'cp -r "$1" "$2" && sync "$2"/*', "sh", src, out],
                self._after_cp,
            ),
            "durable": (
                "floor: copy_file_range + fsync of each file",
                [PY, str(HERE / "durable_copy.py"), src, out],
                self._after_cp,
            ),
            "naive": (
                f"baseline load_file + edit + save_file ({self.to})",
                [PY, str(HERE / "naive_fix.py"), src, out, self.to],
                self._after_naive,
            ),
        }
        # The baseline runs after the others, not among them: whatever ran right after it was
        # measured 30-90% slower (the kernel reclaiming its 4 GB of memory), which would
        # charge its cost to another command.
        naive = {"naive": commands.pop("naive")}
        return measure_rounds(commands, repeat) | measure_rounds(naive, repeat)


def measure_rounds(
    commands: dict[str, tuple[str, list[str], Callable[[int, run.Run], None]]], repeat: int
) -> dict[str, Measurement]:
    """``run.measure`` for several commands, in rounds: one run of each per round, a warm-up
    round first. Interleaved, the commands share whatever else the machine is doing at the
    time, so the ratios between them are steadier than if each had its own stretch of time;
    each round starts one command later, so no command always follows the same one."""
    ms = {key: Measurement(label, argv) for key, (label, argv, _) in commands.items()}
    keys = list(commands)
    for i in range(repeat + 1):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            label, argv, after = commands[key]
            done = spawn(argv)
            if done.returncode:
                raise BenchmarkError(
                    f"{label}: exit {done.returncode} from {' '.join(argv)}\n{done.stderr[-2000:]}"
                )
            after(i, done)
            if i:
                ms[key].runs.append(done.seconds)
                ms[key].rss_kb.append(done.rss_kb)
            ms[key].output = done.stdout
    for m in ms.values():
        print_measurement(m)
    return ms


# --- the progress bar and the system calls, one run each ---------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
_RATE = re.compile(r"\d+(?:\.\d+)? [kMG]?B/s")
_BYTES = re.compile(r"\d+(?:\.\d+)?/\d+(?:\.\d+)? [kMG]?B")
_ETA = re.compile(r"(?:\d+:)?\d+:\d\d|-:--:--")
_GLYPHS = re.compile("[\u2500-\u257f]+")


def tty_run(argv: list[str]) -> tuple[float, list[str]]:
    """Run with stderr on a 120-column pseudo-terminal (stdout discarded); returns the wall
    time and every frame drawn, escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=run.CHILD_ENV
    )
    os.close(slave)
    raw = bytearray()
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:  # EIO: every holder of the pty's other end has closed it
            break
        if not data:
            break
        raw += data
    code = proc.wait()
    seconds = time.perf_counter() - start
    os.close(master)
    if code:
        raise BenchmarkError(f"{' '.join(argv)}: exit {code} on a terminal\n{raw[-2000:]!r}")
    text = _ANSI.sub("", raw.decode(errors="replace")).replace("\r", "\n")
    frames = (_GLYPHS.sub("[bar]", line).strip() for line in text.split("\n"))
    return seconds, [f for f in frames if f]


def bar_check(frames: list[str]) -> tuple[bool, str]:
    """Did fix draw its writing bar with bytes written, rate and ETA? Returns a sample frame."""
    bars = [f for f in frames if f.startswith("writing and verifying")]
    full = [f for f in bars if _BYTES.search(f) and _RATE.search(f) and _ETA.search(f)]
    sample = full[len(full) // 2] if full else (bars[-1] if bars else "(no bar drawn)")
    return bool(full), sample


def strace_counts(argv: list[str], work: Path) -> dict[str, tuple[int, float]] | None:
    """System calls of one run (``strace -f -c -w``: calls and wall seconds per call type)."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    table = work / "strace.txt"
    done = spawn([strace, "-f", "-qq", "-c", "-w", "-o", str(table), *argv])
    if done.returncode:
        return None  # ptrace not permitted here, for one
    out = {}
    for line in table.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[0][0].isdigit():
            calls = int(parts[3])
            out[parts[-1]] = (calls, float(parts[1]))
    table.unlink()
    return out


# --- the benchmark ------------------------------------------------------------------------------


def _load() -> str:
    """The 1-minute load average: other jobs on this machine make every time noisier."""
    return f"{os.getloadavg()[0]:.2f}"


def _run_case(
    key: str, title: str, source: Path, to: str, work: Path, repeat: int
) -> tuple[Case, dict[str, Measurement], dict[str, float]]:
    """Measure fix, cp -r, cp -r + sync and the baseline on one source; print what fix did."""
    shards = list(source.glob("*.safetensors"))
    total, largest = sum(_sizes(source).values()), _largest_shard(source)
    print(f"\n  ({key}) {title}: {size(total)} in {len(shards)} shards (largest {size(largest)})")
    case = Case(key, source, to, work)
    ms = case.run_all(repeat)
    for f in case.plan["files"]:
        how = "copied whole" if f["whole_copy"] else f"rewritten, {f['tensors']} tensors"
        print(f"    fix's plan: {f['name']} {how} ({size(f['bytes'])})")
    written = case.plan["bytes_after"]
    print(
        f"    fix writes {size(written)} (cp -r copies {size(total)}), reads back "
        f"{size(2 * written)} to verify it (the written bytes and their source), fsyncs it"
    )
    fix, cp, cp_sync, naive = ms["fix"], ms["cp"], ms["cp_sync"], ms["naive"]
    ratios = {
        "fix_vs_durable": fix.seconds / ms["durable"].seconds,
        "fix_vs_cp": fix.seconds / cp.seconds,
        "fix_vs_cp_sync": fix.seconds / cp_sync.seconds,
        "naive_vs_fix": naive.seconds / fix.seconds,
        "rss_vs_naive": fix.rss_mb / naive.rss_mb,
    }
    print(
        f"  ({key}) fix / durable copy {ratios['fix_vs_durable']:.2f}x (want <= {CP_RATIO_MAX}), "
        f"fix / cp -r {ratios['fix_vs_cp']:.2f}x, "
        f"fix / fsync'd cp {ratios['fix_vs_cp_sync']:.2f}x; baseline / fix "
        f"{ratios['naive_vs_fix']:.2f}x time, fix / baseline {ratios['rss_vs_naive']:.3f} RSS"
    )
    return case, ms, ratios


def _row(ms: dict[str, Measurement], ratios: dict[str, float], shard: int) -> dict[str, object]:
    row: dict[str, object] = {
        k: {"seconds": m.seconds, "rss_mb": m.rss_mb, "runs": m.runs} for k, m in ms.items()
    }
    return row | {"ratios": ratios, "largest_shard_bytes": shard}


def bench_fix(work: Path, repeat: int, quick: bool) -> tuple[dict[str, object], list[Check]]:
    specs = CASES_QUICK if quick else CASES
    print("\n[4] fix: stream-rewrite vs cp -r of the same checkpoint and vs load_file + save_file")
    print(
        "  page cache: warm (not dropped: needs root); every command runs once untimed first, "
        "so sources are read from memory. Outputs are deleted and the disk synced between runs."
    )
    need = 2 * total_bytes(Spec(**specs["large"])) + GB  # type: ignore[arg-type]
    free = shutil.disk_usage(work).free
    if free < need:
        raise BenchmarkError(f"fix benchmark needs ~{size(need)} free in {work}, has {size(free)}")
    print(f"  load average at start: {_load()}")

    # (a) large shards, --to tied
    large = work / "fix-large"
    write(large, specs["large"])
    case_a, ms_a, ratios_a = _run_case(
        "a", "--to tied, real bf16, lm_head = copy of the embedding", large, "tied", work, repeat
    )
    bar_seconds, frames = tty_run(case_a.fix_argv())
    _remove(case_a.out)
    bar_ok, sample = bar_check(frames)
    print(f"  progress bar on a terminal ({bar_seconds * 1000:.0f} ms, no -q): {sample}")
    syscalls = strace_counts(case_a.fix_argv("-q"), work)
    _remove(case_a.out)
    if syscalls is not None:
        shown = ("copy_file_range", "sync_file_range", "fsync", "preadv2", "preadv", "pread64")
        print(
            "  syscalls of one fix run (strace -f -c -w: calls, wall s): "
            + ", ".join(
                f"{k} {syscalls[k][0]} {syscalls[k][1]:.2f}" for k in shown if k in syscalls
            )
        )
    # (a)'s deduplicated output is the source of (c)
    tied = work / "fix-tied"
    made = spawn([PY, "-m", "tiecheck", "fix", str(large), "--to", "tied", "-o", str(tied), "-q"])
    if made.returncode:
        raise BenchmarkError(f"writing the tied source failed:\n{made.stderr[-2000:]}")
    _remove(large)

    # (b) 4x smaller shards, --to tied
    small = work / "fix-small"
    write(small, specs["small"])
    case_b, ms_b, ratios_b = _run_case(
        "b", "the same at a quarter of the shard size", small, "tied", work, repeat
    )
    _remove(small)

    # (c) the deduplicated checkpoint, --to untied
    title_c = "--to untied on (a)'s deduplicated output (stores the head again)"
    case_c, ms_c, ratios_c = _run_case("c", title_c, tied, "untied", work, repeat)
    _remove(tied)
    print(f"\n  load average at end: {_load()}")

    cases = {"a": (case_a, ms_a), "b": (case_b, ms_b), "c": (case_c, ms_c)}
    shards = {k: c.largest for k, (c, _) in cases.items()}
    rss = {k: ms["fix"].rss_mb for k, (_, ms) in cases.items()}
    rss_ratio = rss["a"] / rss["b"]
    base_ratio = ms_a["naive"].rss_mb / ms_b["naive"].rss_mb
    print(
        f"  largest shard (a)/(b) {shards['a'] / shards['b']:.2f}x: fix peak RSS "
        f"{rss['a']:.1f} / {rss['b']:.1f} MB = {rss_ratio:.2f}x (want ~1); baseline "
        f"{ms_a['naive'].rss_mb:.0f} / {ms_b['naive'].rss_mb:.0f} MB = {base_ratio:.2f}x"
    )
    checks: list[Check] = []
    for key, ratios in (("a", ratios_a), ("c", ratios_c)):
        checks.append(
            Check(
                f"fix time / durable copy ({key}, {size(shards[key])} shard)",
                f"{ratios['fix_vs_durable']:.2f}x",
                f"<= {CP_RATIO_MAX}x",
                ratios["fix_vs_durable"] <= CP_RATIO_MAX if shards[key] >= BIG_SHARD else None,
            )
        )
    checks += [
        Check(
            f"fix peak RSS ({key}, {size(shards[key])} shard)",
            f"{rss[key]:.1f} MB",
            f"< {RSS_LIMIT_MB:.0f} MB",
            rss[key] < RSS_LIMIT_MB,
        )
        for key in cases
    ]
    whole = {k: sum(f["whole_copy"] for f in c.plan["files"]) for k, (c, _) in cases.items()}
    checks += [
        Check(
            f"fix peak RSS, {shards['a'] / shards['b']:.1f}x larger shard / smaller",
            f"{rss_ratio:.2f}x",
            f"<= {RSS_FLAT_RATIO_MAX}x",
            rss_ratio <= RSS_FLAT_RATIO_MAX,
        ),
        Check(
            "unchanged shard copied whole (a, b, c)",
            "/".join(str(n) for n in whole.values()),
            "1/1/1",
            all(n == 1 for n in whole.values()),
        ),
        Check(
            "fix progress bar on a terminal (bytes/rate/ETA)",
            "drawn" if bar_ok else "missing",
            "drawn",
            bar_ok,
        ),
    ]
    all_ratios = {"a": ratios_a, "b": ratios_b, "c": ratios_c}
    results: dict[str, object] = {
        k: _row(ms, all_ratios[k], shards[k]) for k, (_, ms) in cases.items()
    }
    results.update(
        rss_ratio=rss_ratio,
        baseline_rss_ratio=base_ratio,
        progress_bar={"drawn": bar_ok, "sample": sample, "seconds": bar_seconds},
        syscalls=syscalls,
    )
    return results, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller real-data checkpoints")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (median)")
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (pycache only)")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args()
    work = run.configure(args.workdir, "tiecheck fix benchmark", args.quick, args.repeat)
    started = time.perf_counter()
    try:
        results, checks = bench_fix(work, args.repeat, args.quick)
    except BenchmarkError as e:
        print(f"\nbenchmark failed: {e}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    floor = run.print_checks(checks)
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    if args.json:
        results.update(checks=[asdict(c) for c in checks], seconds=elapsed, driver_rss_mb=floor)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(c.ok is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
