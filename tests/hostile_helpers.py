"""Run the real command line in a child process under resource limits, and measure it.

For hostile-input tests whose outcome includes a bound: wall time, peak resident memory (the
child's own ``VmHWM``, read at exit: ``ru_maxrss`` of a forked child starts at the parent's
high-water mark) and the number of descriptors the child may open (``RLIMIT_NOFILE``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ``python -m tiecheck`` (runpy.run_module is what -m runs), reporting the peak resident memory
# of this process image at exit: VmHWM, since ru_maxrss also counts the forked test runner.
PEAK_REPORTING_CLI = """\
import atexit, os, runpy, sys
def report():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["TIECHECK_TEST_PEAK"], "w") as out:
        out.write(peak)
if os.path.exists("/proc/self/status"):
    atexit.register(report)
sys.argv[0] = "tiecheck"
runpy.run_module("tiecheck", run_name="__main__", alter_sys=True)
"""


@dataclass
class Bounded:
    code: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float | None
    """None where /proc is not available."""

    def report(self) -> Any:
        """The one report of the run's JSON document."""
        (report,) = json.loads(self.stdout)["reports"]
        return report


def run_bounded(
    *args: str | Path,
    workdir: Path,
    timeout: float = 120.0,
    max_files: int | None = None,
    max_memory: int | None = None,
) -> Bounded:
    """``python -m tiecheck ARGS`` in ``workdir`` (no configuration file above it is read),
    with at most ``max_files`` descriptors and ``max_memory`` bytes of address space."""

    def limit() -> None:  # in the child, before exec
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))
        if max_memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))

    workdir.mkdir(parents=True, exist_ok=True)
    peak = workdir / "peak-rss-kb"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TIECHECK_TEST_PEAK": str(peak)}
    env.pop("TIECHECK_DEBUG", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_REPORTING_CLI, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        preexec_fn=limit,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    peak_mb = int(peak.read_text()) / 1024 if peak.exists() else None
    return Bounded(done.returncode, done.stdout, done.stderr, seconds, peak_mb)


def open_descriptors() -> int:
    """Descriptors this process has open right now."""
    return sum(1 for _ in Path("/proc/self/fd").iterdir())
