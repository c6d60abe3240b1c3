"""The long fuzz run: tiecheck's readers and ``inspect``/``fix`` on generated hostile inputs.

    python fuzz/run.py                        # 5 minutes over every target
    python fuzz/run.py --minutes 30 --targets pickle,checkpoint
    python fuzz/run.py --replay fuzz/crashes/pickle-1a2b3c4d.bin

Targets and input strategies are those of the property tests (``tests/fuzz_targets.py``):

- ``safetensors``: header parser from bytes and from a file, held to ``safe_open``'s verdict,
  then ``inspect``;
- ``pickle``: the restricted unpickler on random bytes, opcode programs using the allowed
  globals (zip and legacy) and edited ``torch.save`` files, then ``inspect``;
- ``index``: the index reader on random bytes and JSON, then ``inspect`` of the folder;
- ``checkpoint``: a real tied model folder with one file edited, through ``inspect`` and
  ``fix`` (which must refuse with a TiecheckError or write a verified checkpoint, and never
  change its source);
- ``journal``: a planted commit journal in ``fix``'s output folder: only tiecheck's own
  temporaries inside that folder may be renamed, nothing outside it may change;
- ``policy``: a configuration file (``pyproject.toml`` / ``tiecheck.toml``): a Config or a
  ConfigError naming the file, nothing else;
- ``layout``: a model folder whose files are what a hostile repository can hold (symbolic
  links in and out of the folder, dangling links, FIFOs, folders under weight names) through
  ``inspect`` and ``fix``.

Hypothesis generates the inputs (budget per round, rounds until the time is up, a new seed each
round). Every input runs under a per-input time limit (20 s), one that raises the process's
peak memory by more than 256 MB is a finding too, and the process runs under an 8 GiB
address-space limit (so a runaway allocation stops there rather than at the machine's).
Each distinct failure (exception type and the line it came from) is saved once, as
``fuzz/crashes/<target>-<id>.bin`` (the input) and ``.txt`` (traceback and the command that
replays it). At the end the counts of inputs per target and outcome are printed, and
written to ``fuzz/last-run.json``.
Exit code 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzz_targets import STRATEGIES, TARGETS, model_folder_files, torch_bases  # noqa: E402

CRASHES = HERE / "crashes"


class InputTimeout(Exception):
    """One input ran longer than the per-input limit."""


class TimeUp(BaseException):
    """The run's time budget is spent (a BaseException, so hypothesis does not shrink it)."""


def _alarm(_signum: int, _frame: object) -> None:
    raise InputTimeout("input took longer than the per-input limit")


def _signature(target: str, error: BaseException) -> str:
    """Exception type and the innermost frame in tiecheck (or the target) that raised it."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/tiecheck/" in f.filename or "fuzz_targets" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{target}:{type(error).__name__}:{place}"


class MemoryPeak(Exception):
    """One input raised the process's peak memory by more than the allowed growth."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Fuzzer:
    def __init__(self, per_input: float, max_growth_mb: float) -> None:
        self.per_input = per_input
        self.max_growth_mb = max_growth_mb
        self.inputs: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in TARGETS}
        self.crashes: dict[str, Path] = {}
        self.slowest: dict[str, float] = dict.fromkeys(TARGETS, 0.0)
        CRASHES.mkdir(exist_ok=True)

    def one(self, target: str, data: bytes) -> str:
        """Run one input; returns its outcome ("crash" when the target's contract broke)."""
        self.inputs[target] += 1
        started = time.monotonic()
        peak_before = _peak_rss_mb()
        with tempfile.TemporaryDirectory() as scratch:
            signal.setitimer(signal.ITIMER_REAL, self.per_input)
            try:
                outcome = TARGETS[target](data, Path(scratch))
            except (Exception, RecursionError) as e:  # the contract allows none of them
                outcome = "crash"
                self.record(target, data, e)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        self.slowest[target] = max(self.slowest[target], time.monotonic() - started)
        grew = _peak_rss_mb() - peak_before
        if grew > self.max_growth_mb and outcome != "crash":  # a new high-water mark
            outcome = "crash"
            self.record(target, data, MemoryPeak(f"peak memory grew {grew:.0f} MB"))
        self.outcomes[target][outcome] += 1
        return outcome

    def record(self, target: str, data: bytes, error: BaseException) -> None:
        signature = _signature(target, error)
        if signature in self.crashes:
            return
        digest = hashlib.sha256(signature.encode()).hexdigest()[:8]
        path = CRASHES / f"{target}-{digest}.bin"
        path.write_bytes(data)
        report = "".join(traceback.format_exception(error))
        path.with_suffix(".txt").write_text(
            f"{signature}\n\nreplay: python fuzz/run.py --replay {path.relative_to(HERE.parent)}"
            f"\n\n{report}",
            encoding="utf-8",
        )
        self.crashes[signature] = path
        print(f"\n  CRASH {signature} -> {path.relative_to(HERE.parent)}", flush=True)

    def round(self, target: str, examples: int, round_seed: int, deadline: float) -> None:
        @seed(round_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(STRATEGIES[target])
        def run(data: bytes) -> None:
            if time.monotonic() > deadline:
                raise TimeUp
            self.one(target, data)

        run()


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def replay(path: Path) -> int:
    target = path.name.split("-", 1)[0]
    with tempfile.TemporaryDirectory() as scratch:
        try:
            outcome = TARGETS[target](path.read_bytes(), Path(scratch))
        except Exception:
            traceback.print_exc()
            return 1
    print(f"{target}: {outcome} (no crash)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="total time (default 5)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--round", type=int, default=2000, help="inputs per hypothesis round")
    parser.add_argument("--seed", type=int, default=0, help="first round's seed")
    parser.add_argument("--per-input", type=float, default=20.0, help="seconds per input")
    parser.add_argument("--memory-mb", type=int, default=8192, help="address-space limit")
    parser.add_argument(
        "--growth-mb", type=float, default=256, help="peak memory one input may add (a crash)"
    )
    parser.add_argument("--replay", type=Path, help="run one saved input and show what happens")
    args = parser.parse_args()

    signal.signal(signal.SIGALRM, _alarm)
    if args.replay:
        return replay(args.replay)
    targets = [t for t in args.targets.split(",") if t]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    torch_bases()  # real files to mutate, built before the memory limit (torch's import is big)
    model_folder_files()
    _limit_memory(args.memory_mb)

    fuzzer = Fuzzer(args.per_input, args.growth_mb)
    started = time.monotonic()
    share = args.minutes * 60 / len(targets)
    round_seed = args.seed
    for i, target in enumerate(targets):
        deadline = started + share * (i + 1)
        print(f"{target}: ", end="", flush=True)
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeUp):
                fuzzer.round(target, args.round, round_seed, deadline)
            round_seed += 1
            print(".", end="", flush=True)
        print(f" {fuzzer.inputs[target]:,} inputs", flush=True)

    elapsed = time.monotonic() - started
    summary = {
        "minutes": round(elapsed / 60, 1),
        "inputs": dict(fuzzer.inputs),
        "total_inputs": sum(fuzzer.inputs.values()),
        "outcomes": {t: dict(c) for t, c in fuzzer.outcomes.items() if c},
        "slowest_input_seconds": {t: round(s, 2) for t, s in fuzzer.slowest.items() if s},
        "crashes": {sig: str(p.relative_to(HERE.parent)) for sig, p in fuzzer.crashes.items()},
    }
    (HERE / "last-run.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 1 if fuzzer.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
