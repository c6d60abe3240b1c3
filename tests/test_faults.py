"""Faults during ``fix``: kill -9 at many exact points, a source that changes mid-run, a
read-only source folder. What ``test_fix_safety.py`` does not already cover.

Kill points are syscalls, not delays: ``strace -e inject=SYSCALL:signal=SIGKILL:when=N`` kills
the real ``python -m tiecheck fix`` process as it enters the N-th call of one file-changing
syscall (``fallocate``, ``pwrite64``, ``copy_file_range``, ``fsync``, ``write``, ``rename``,
``unlink``...). An uninterrupted run under ``strace`` lists every such call in order; the
points are spread evenly over that list and always include the commit (journal write, journal
rename, first, middle and last rename, journal removal), for a multi-shard rewrite both into a
new folder (``-o``) and in place. Without ``strace`` (or where ptrace is not allowed) the
points are delays spread evenly over an uninterrupted run's duration instead.

After each kill: the source is byte-identical (``-o``), or every file under a final name is
entirely its old or its new version (``--in-place``); no partial file has a final name; the
next run succeeds and produces exactly what an uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import tiecheck
import tiecheck.rewrite.fix as fix_module
from tiecheck.rewrite.commit import JOURNAL, TEMP_MARK
from tiecheck.rewrite.verify import VerificationError

EMB = "model.embed_tokens.weight"
FILE_SYSCALLS = (
    "write",
    "pwrite64",
    "copy_file_range",
    "sendfile",
    "fallocate",
    "fsync",
    "fdatasync",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "ftruncate",
)
POINTS_PER_MODE = 13


# -- helpers -----------------------------------------------------------------------------------


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def final_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def write_model(folder: Path, *, shards: int = 3, seed: int = 42) -> Path:
    """~5 MB, deduplicated tie (no head), in ``shards`` safetensors files, plus a tokenizer."""
    from safetensors.numpy import save_file

    r = np.random.default_rng(seed)
    weights = {EMB: r.standard_normal((2048, 256), dtype=np.float32)}
    for i in range(6):
        weights[f"model.layers.{i}.mlp.weight"] = r.standard_normal((256, 512), dtype=np.float32)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "tie_word_embeddings": True})
    )
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    names, weight_map = sorted(weights), {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: weights[k] for k in names[i::shards]}
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": sum(a.nbytes for a in weights.values())}}
    index["weight_map"] = weight_map
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def fix_command(source: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tiecheck", "fix", str(source), "--to", "untied", *args, "-q"]


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no .pyc writes among the syscalls
    env.pop("TIECHECK_DEBUG", None)
    return env


def strace_usable() -> bool:
    if shutil.which("strace") is None:
        return False
    done = subprocess.run(
        ["strace", "-qq", "-o", os.devnull, "-e", "trace=rename", "true"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@dataclass(frozen=True)
class KillPoint:
    syscall: str | None
    """None: a delay instead of a syscall."""
    nth: int
    delay: float = 0.0
    label: str = ""

    def command(self, command: list[str]) -> list[str]:
        if self.syscall is None:
            return command
        inject = f"inject={self.syscall}:signal=SIGKILL:when={self.nth}"
        trace = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={self.syscall}"]
        return [*trace, "-e", inject, *command]


def syscall_trace(command: list[str], log: Path) -> list[str]:
    """The file-changing syscalls an uninterrupted run makes, in order, up to the report."""
    trace = ["strace", "-f", "-qq", "-o", str(log), "-e", "trace=" + ",".join(FILE_SYSCALLS)]
    done = subprocess.run(
        [*trace, *command],
        capture_output=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    calls = []
    for line in log.read_text().splitlines():
        call = line.split(None, 1)[1] if line[:1].isdigit() else line
        name = call.split("(", 1)[0]
        if name == "write" and call.startswith(("write(1,", "write(2,")):
            break  # the report: the rewrite is over
        calls.append(name)
    return calls


def kill_points(calls: list[str], count: int) -> list[KillPoint]:
    """``count`` points spread over ``calls``, always including the commit's steps."""
    renames = [i for i, c in enumerate(calls) if c.startswith("rename")]
    must = {renames[0] - 2, renames[0], renames[1], renames[len(renames) // 2], renames[-1]}
    must |= {i for i, c in enumerate(calls) if c.startswith("unlink")}
    chosen: list[int] = []
    for spread in range(2, len(calls) + 1):  # as many evenly spaced points as make ``count``
        chosen = sorted(must | set(np.linspace(0, len(calls) - 1, spread).round().astype(int)))
        if len(chosen) >= count:
            break
    points = []
    for i in chosen:
        nth = calls[: i + 1].count(calls[i])
        points.append(
            KillPoint(calls[i], nth, label=f"{calls[i]}#{nth} (call {i + 1}/{len(calls)})")
        )
    return points


def _duration(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, capture_output=True, env=child_env(), timeout=120, check=True)
    return time.monotonic() - started


def delay_points(command: list[str], count: int) -> list[KillPoint]:
    """Delays spread over the part of an uninterrupted run after interpreter start-up."""
    startup = _duration([sys.executable, "-m", "tiecheck", "--version"])
    duration = _duration(command)
    return [
        KillPoint(None, 0, delay=d, label=f"after {d * 1000:.0f} ms")
        for d in np.linspace(startup, duration * 0.95, count)
    ]


def run_killed(point: KillPoint, command: list[str]) -> bool:
    """Run ``command`` and kill it at ``point``; True when it was killed before finishing."""
    proc = subprocess.Popen(
        point.command(command),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    if point.syscall is None:
        time.sleep(point.delay)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, 9)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode in (-9, 137)


def choose_points(command: list[str], log: Path) -> list[KillPoint]:
    if strace_usable():
        return kill_points(syscall_trace(command, log), POINTS_PER_MODE)
    return delay_points(command, POINTS_PER_MODE)


# -- kill -9 at many points ---------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_many_points_of_a_multi_shard_rewrite(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src")
    before = tree_hashes(src)
    reshard = ["--max-shard-size", "1MB"]  # 3 shards in, 8 out: many files to commit

    reference = tmp_path / "reference"
    tiecheck.fix(src, to="untied", output=reference, max_shard_size="1MB")
    new_out = final_files(reference)
    assert len([n for n in new_out if n.endswith(".safetensors")]) == 8

    pristine_in_place = tmp_path / "pristine"
    shutil.copytree(src, pristine_in_place)
    old = final_files(pristine_in_place)
    expected_in_place = tmp_path / "expected-in-place"
    shutil.copytree(src, expected_in_place)
    tiecheck.fix(expected_in_place, to="untied", in_place=True)
    new_in_place = final_files(expected_in_place)
    assert new_in_place != old

    calibration = tmp_path / "calibration"
    out_points = choose_points(
        fix_command(src, *reshard, "-o", str(calibration / "out")), tmp_path / "out.log"
    )
    shutil.copytree(src, calibration / "in-place")
    in_place_points = choose_points(
        fix_command(calibration / "in-place", "--in-place"), tmp_path / "in-place.log"
    )
    jobs = []
    for i, point in enumerate(out_points):
        out = tmp_path / f"out-{i}"
        jobs.append(("out", point, out, fix_command(src, *reshard, "-o", str(out))))
    for i, point in enumerate(in_place_points):
        folder = tmp_path / f"in-place-{i}"
        shutil.copytree(pristine_in_place, folder)
        jobs.append(("in-place", point, folder, fix_command(folder, "--in-place")))
    assert len(jobs) >= 20

    with ThreadPoolExecutor(max_workers=2) as pool:
        killed = list(pool.map(lambda job: run_killed(job[1], job[3]), jobs))

    for (mode, point, folder, _), was_killed in zip(jobs, killed):
        where = f"{mode} killed at {point.label}" if was_killed else f"{mode}: finished first"
        if mode == "out":
            assert tree_hashes(src) == before, where
            present = final_files(folder) if folder.is_dir() else {}
            for name, content in present.items():
                assert content == new_out.get(name), f"{where}: {name} is partial or foreign"
                if name.endswith(".safetensors"):
                    with safe_open(str(folder / name), "np") as f:
                        assert f.keys()
            committing = bool(present) or (folder / JOURNAL).exists()
            result = tiecheck.fix(
                src, to="untied", output=folder, overwrite=committing, max_shard_size="1MB"
            )
            assert result.after is not None, where
            assert final_files(folder) == new_out, where
        else:
            for name, content in final_files(folder).items():
                assert content in (old.get(name), new_in_place.get(name)), (
                    f"{where}: {name} is neither its old nor its new version"
                )
            tiecheck.fix(folder, to="untied", in_place=True)
            assert final_files(folder) == new_in_place, where
        assert leftovers(folder) == [], where
        assert tiecheck.inspect(folder, expect="untied").verdict.value == "untied", where

    kills = sum(killed)
    # exact syscall points always kill; timed ones (no strace) may land after the end
    needed = 20 if in_place_points[0].syscall is not None else len(jobs) // 2
    assert kills >= needed, f"only {kills} of {len(jobs)} runs were killed before finishing"


# -- the source changing under fix --------------------------------------------------------------


def _tamper(shard: Path, how: str) -> None:
    """Change the bytes of the last tensor of ``shard`` (same size): by rewriting the file in
    place (same inode), or by renaming a changed copy over it (a new file, as a download or a
    `git checkout` would)."""
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    if how == "rewrite":
        with shard.open("r+b") as f:
            f.seek(len(data) - 1)
            f.write(data[-1:])
    else:
        staged = shard.with_name("staged")
        staged.write_bytes(bytes(data))
        staged.replace(shard)


@pytest.mark.parametrize("how", ["rewrite", "replace"])
@pytest.mark.parametrize("when", ["after-first-write", "after-last-write"])
@pytest.mark.parametrize("mode", ["out", "in-place"])
def test_a_source_that_changes_mid_run_is_detected_and_nothing_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, when: str, mode: str
) -> None:
    """A shard changed right after the first output file was written (its copy and the source
    now differ: verification compares them) or after the last one (copies match what they
    read: the source's size, time and inode are compared before the commit)."""
    src = write_model(tmp_path / "src")
    shard = src / "model-00001-of-00003.safetensors"
    written: list[int] = []
    real_write_file = fix_module.write_file
    total = len(tiecheck.fix(src, to="untied", dry_run=True, max_shard_size="1MB").plan.files)

    def write_then_tamper(fd, out, copier):  # type: ignore[no-untyped-def]
        size = real_write_file(fd, out, copier)
        written.append(fd)
        if len(written) == (1 if when == "after-first-write" else total):
            _tamper(shard, how)
        return size

    monkeypatch.setattr(fix_module, "write_file", write_then_tamper)
    out = tmp_path / "out"
    before = final_files(src)
    with pytest.raises(VerificationError, match=r"source changed|differ from the source"):
        if mode == "out":
            tiecheck.fix(src, to="untied", output=out, max_shard_size="1MB")
        else:
            tiecheck.fix(src, to="untied", in_place=True, max_shard_size="1MB")
    assert written, "the tamper point was never reached"
    target = out if mode == "out" else src
    assert leftovers(target) == []
    if mode == "out":
        assert final_files(out) == {}
    # only the tampered shard differs from before: nothing of the run was committed
    after = final_files(src)
    assert {n for n in before if after.get(n) != before[n]} == {shard.name}
    assert set(after) == set(before)


def test_a_shard_replaced_during_a_real_run_is_detected(tmp_path: Path) -> None:
    """The race for real: ``python -m tiecheck fix`` on ~40 MB; as soon as its first temporary
    appears, another process's rename replaces a source shard. Exit 2, nothing committed."""
    from safetensors.numpy import save_file

    src = tmp_path / "src"
    src.mkdir()
    r = np.random.default_rng(7)
    shards = []
    for i in range(4):
        name = f"model-{i + 1:05d}-of-00004.safetensors"
        tensors = {f"model.layers.{i}.mlp.weight": r.standard_normal((1024, 2560), np.float32)}
        if i == 0:
            tensors[EMB] = r.standard_normal((1024, 256), np.float32)
        save_file(tensors, str(src / name), metadata={"format": "pt"})
        shards.append((name, tensors))
    weight_map = {k: name for name, tensors in shards for k in tensors}
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": 1}))
    victim = src / shards[-1][0]
    changed = bytearray(victim.read_bytes())
    changed[-1] ^= 0xFF
    staged = tmp_path / "staged"
    staged.write_bytes(bytes(changed))

    out = tmp_path / "out"
    proc = subprocess.Popen(
        fix_command(src, "-o", str(out)), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    swapped = False
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(FileNotFoundError):
            if any(p.name.endswith(TEMP_MARK) for p in out.iterdir()):
                staged.replace(victim)
                swapped = True
                break
        time.sleep(0.0002)
    _, err = proc.communicate(timeout=120)
    if not swapped:
        pytest.skip("fix finished before its first temporary could be seen")
    assert proc.returncode == 2, err.decode()
    assert err.decode().startswith("tiecheck: error:")
    assert "source changed" in err.decode() or "differ from the source" in err.decode()
    assert "Traceback" not in err.decode()
    assert final_files(out) == {}
    assert leftovers(out) == []


# -- a read-only source folder -----------------------------------------------------------------


@pytest.fixture
def read_only_model(tmp_path: Path) -> Iterator[Path]:
    """A model on a tmpfs remounted read-only (root only: permissions do not stop root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only tmpfs; chmod does not stop root")
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        write_model(mount / "model")
        remount = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
        yield mount / "model"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_in_place_on_a_read_only_folder_is_a_clear_error(read_only_model: Path) -> None:
    before = tree_hashes(read_only_model)
    done = subprocess.run(
        fix_command(read_only_model, "--in-place"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tiecheck: error:")
    assert "read-only" in done.stderr.lower()
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert tree_hashes(read_only_model) == before
    assert leftovers(read_only_model) == []
