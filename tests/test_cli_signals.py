"""How the real process ends when it is interrupted or its reader goes away.

Ctrl-C (SIGINT) and SIGTERM print one "interrupted" line, after the progress bar is gone, and
exit 130 and 143; ``fix`` leaves no temporary behind and the source unchanged. A closed stdout
(``| head``) ends the run quietly with the exit code the run earned, not 1 or a traceback.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core_helpers import FIXTURES
from fix_helpers import leftovers, tensors, tree_hashes, write_model

pytestmark = pytest.mark.slow


def _tiecheck(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "tiecheck", *map(str, args)]


@pytest.mark.parametrize(
    ("fixture", "expected"), [("tied-deduplicated", 0), ("tied-head-diverged", 1)]
)
@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "markdown"])
def test_a_closed_stdout_keeps_the_exit_code_and_prints_nothing(
    fixture: str, expected: int, fmt: str
) -> None:
    read, write = os.pipe()
    os.close(read)  # every write to stdout now fails with EPIPE
    try:
        done = subprocess.run(
            _tiecheck("inspect", FIXTURES / fixture, "--format", fmt, "-q"),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert done.returncode == expected, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("command", [["rules"], ["schema"], ["rules", "TC101"]])
def test_other_commands_on_a_closed_stdout_exit_0_quietly(command: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            _tiecheck(*command), stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def _big_model(folder: Path) -> Path:
    """~600 MB in three shards, head stored as a copy: fix and inspect take a while."""
    weights = tensors(head="copy", vocab=32768, hidden=2048)  # 256 MiB embedding, 256 MiB copy
    r = np.random.default_rng(3)
    weights["model.layers.0.mlp.up_proj.weight"] = r.standard_normal((4096, 2048)).astype(
        np.float16
    )
    return write_model(folder, weights, tied=True, shards=3)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_fix_exits_cleanly_and_leaves_nothing(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    src = _big_model(tmp_path / "src")
    before = tree_hashes(src)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _tiecheck("fix", src, "--to", "untied", "-o", out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and leftovers(out):  # a temporary is being written
            break
        time.sleep(0.002)
    if proc.poll() is not None:
        pytest.skip("the run ended before it could be interrupted")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert stderr == "tiecheck: interrupted\n"
    assert stdout == ""
    assert leftovers(out) == [] and list(out.iterdir()) == []
    assert tree_hashes(src) == before


def test_ctrl_c_ends_the_progress_bar_before_saying_interrupted(tmp_path: Path) -> None:
    """Under a terminal the comparison shows a progress bar; Ctrl-C must clear it and then
    print "interrupted" on a line of its own."""
    src = _big_model(tmp_path / "src")
    pid, fd = pty.fork()
    if pid == 0:  # the child: tiecheck with stdout and stderr on the terminal
        os.environ.update({"COLUMNS": "100", "TERM": "xterm"})
        os.execv(sys.executable, _tiecheck("inspect", src))
    output = b""
    started = time.monotonic()
    interrupted = False
    while True:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not interrupted and b"comparing tensors" in output:
            os.kill(pid, signal.SIGINT)
            interrupted = True
        if time.monotonic() - started > 60:
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    if not interrupted:
        pytest.skip("no progress bar appeared before the run ended")
    assert os.waitstatus_to_exitcode(status) == 130
    text = output.decode(errors="replace")
    tail = text[text.rindex("comparing tensors") :]  # the bar's last frame, and what follows
    assert tail.rstrip().endswith("tiecheck: interrupted"), repr(tail[-300:])
    # the bar was erased (rich's clear-line) before the message was written
    assert "\x1b[2K" in tail[: tail.rindex("tiecheck: interrupted")]
    assert "Traceback" not in text
