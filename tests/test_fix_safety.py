"""``fix`` must never damage what it reads and never leave a half-written file under a final name.

Sources are hashed before and after every run; the Hugging Face cache layout is built for real
(blobs plus snapshot symlinks); interruption is a real ``kill -9`` of a ``python -m tiecheck fix``
process; a full disk and a read-only folder are real (small) tmpfs mounts when running as root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import tiecheck
from fix_helpers import (
    EMB,
    HEAD,
    final_files,
    leftovers,
    tensors,
    tree_hashes,
    write_model,
    write_pickle_model,
)
from tiecheck.analysis.ties import Verdict
from tiecheck.errors import TiecheckError
from tiecheck.rewrite.commit import JOURNAL, TEMP_MARK, temp_path
from tiecheck.rewrite.plan import FixRefused, build_plan
from tiecheck.rewrite.streaming import Copier, write_file
from tiecheck.rewrite.verify import VerificationError, verify_weights

# -- the source is never modified --------------------------------------------------------------


SOURCES = {
    "single-duplicate": lambda d: write_model(d, tensors(head="copy"), tied=True),
    "single-deduplicated": lambda d: write_model(d, tensors(head="none"), tied=True),
    "single-diverged": lambda d: write_model(d, tensors(head="diverged"), tied=True),
    "sharded": lambda d: write_model(d, tensors(head="copy"), tied=True, shards=3),
    "pickle": lambda d: write_pickle_model(d, sharded=False),
    "pickle-sharded": lambda d: write_pickle_model(d, sharded=True),
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_source_is_byte_identical_after_fix_to_an_output_folder(tmp_path: Path, kind: str) -> None:
    src = SOURCES[kind](tmp_path / "src")
    before = tree_hashes(src)
    for to in ("tied", "untied"):
        out = tmp_path / f"out-{to}"
        keep = "head" if kind == "single-diverged" and to == "tied" else None
        result = tiecheck.fix(src, to=to, output=out, keep=keep)
        assert result.after is not None and result.after.verdict is Verdict(to)
        assert leftovers(out) == []
        assert tree_hashes(src) == before
        # A second run into the same (now full) folder with --overwrite changes nothing either.
        tiecheck.fix(src, to=to, output=out, keep=keep, overwrite=True)
        assert tree_hashes(src) == before


def test_source_reached_through_a_symlink_is_not_modified(tmp_path: Path) -> None:
    real = write_model(tmp_path / "real", tensors(head="copy"), tied=True)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    before = tree_hashes(real)
    tiecheck.fix(link, to="tied", output=tmp_path / "out")
    assert tree_hashes(real) == before


# -- --in-place never writes through a symlink into a shared store -----------------------------


def hf_cache(root: Path, weights: dict, tied: bool) -> tuple[Path, Path, Path]:
    """models--org--tiny/{blobs,snapshots/<rev>,refs/main} as huggingface_hub lays it out, with
    a second revision sharing the weight blob. Returns (repo, snapshot, other snapshot)."""
    staging = write_model(root / "staging", weights, tied=tied, extra=False)
    repo = root / "hub" / "models--org--tiny"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    revs = ["a" * 40, "b" * 40]
    for rev in revs:
        (repo / "snapshots" / rev).mkdir(parents=True)
    for f in staging.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, blobs / digest)
        for rev in revs:
            (repo / "snapshots" / rev / f.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revs[0])
    shutil.rmtree(staging)
    return repo, repo / "snapshots" / revs[0], repo / "snapshots" / revs[1]


@pytest.mark.parametrize("to", ["tied", "untied"])
def test_in_place_in_a_hugging_face_cache_replaces_links_and_keeps_blobs(
    tmp_path: Path, to: str
) -> None:
    repo, snapshot, other = hf_cache(
        tmp_path, tensors(head="copy" if to == "tied" else "none"), True
    )
    blobs_before = tree_hashes(repo / "blobs")
    other_before = tree_hashes(other)
    result = tiecheck.fix(snapshot, to=to, in_place=True)

    assert tree_hashes(repo / "blobs") == blobs_before
    assert tree_hashes(other) == other_before
    for name in ("model.safetensors", "config.json"):
        entry = snapshot / name
        assert entry.is_file() and not entry.is_symlink(), name
    assert sorted(result.written) == ["config.json", "model.safetensors"]
    with safe_open(str(snapshot / "model.safetensors"), "np") as f:
        assert (HEAD in set(f.keys())) is (to == "untied")
    assert tiecheck.inspect(snapshot, expect=to).verdict is Verdict(to)
    assert tiecheck.inspect(other).verdict is Verdict.TIED
    assert leftovers(snapshot) == []
    # The snapshot is still readable the way huggingface_hub resolves it.
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache("org/tiny", "model.safetensors", cache_dir=tmp_path / "hub")
    assert cached is not None and Path(cached).resolve() == (snapshot / "model.safetensors")


def test_in_place_converts_a_pickle_beside_it_and_leaves_the_pickle(tmp_path: Path) -> None:
    src = write_pickle_model(tmp_path / "src", sharded=False)
    pickle_bytes = (src / "pytorch_model.bin").read_bytes()
    result = tiecheck.fix(src, to="tied", in_place=True)
    assert (src / "pytorch_model.bin").read_bytes() == pickle_bytes
    assert "pytorch_model.bin" in result.plan.replaced_sources
    with safe_open(str(src / "model.safetensors"), "np") as f:
        assert sorted(f.keys()) == [EMB, "model.norm.weight"]
    # The folder now reads as its safetensors file, the one transformers prefers.
    assert tiecheck.inspect(src).checkpoint.kind.value == "safetensors"


def test_in_place_resharding_that_a_stale_single_file_would_shadow_is_refused(
    tmp_path: Path,
) -> None:
    """Loaders read model.safetensors before an index: shards written beside it in place
    would never be loaded, and the new config would describe weights no one reads."""
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    before = tree_hashes(src)
    with pytest.raises(FixRefused, match="-o"):
        tiecheck.fix(src, to="untied", in_place=True, max_shard_size="1KB")
    assert tree_hashes(src) == before


def test_in_place_resharding_into_one_file_takes_effect(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True, shards=2)
    result = tiecheck.fix(src, to="untied", in_place=True, max_shard_size="1GB")
    assert [f.name for f in result.plan.files] == ["model.safetensors"]
    report = tiecheck.inspect(src, expect="untied")
    assert report.checkpoint.kind.value == "safetensors"  # the new file is what loaders read
    assert report.verdict is Verdict.UNTIED
    assert "TC112" not in {f.code for f in report.findings}


# -- verification -----------------------------------------------------------------------------


def test_verification_rejects_a_written_file_whose_bytes_differ(tmp_path: Path) -> None:
    from tiecheck.readers.tensor_data import TensorData

    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    report = tiecheck.inspect(src)
    plan = build_plan(report, Verdict.UNTIED)
    out = plan.files[0]
    out.whole_copy_of = None  # force a re-serialised write
    target = tmp_path / "written.safetensors"
    with TensorData.reading(report.checkpoint) as data:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            size = write_file(fd, out, Copier(data.source, data))
        finally:
            os.close(fd)
        assert size == target.stat().st_size
        verify_weights(target, out, data)  # the honest file passes

        blob = bytearray(target.read_bytes())
        blob[-1] ^= 0x01  # one bit of the last tensor
        target.write_bytes(bytes(blob))
        with pytest.raises(VerificationError, match="differ"):
            verify_weights(target, out, data)

        target.write_bytes(bytes(blob[:-4]))  # truncated: safetensors itself refuses it
        with pytest.raises(VerificationError, match="invalid"):
            verify_weights(target, out, data)


def test_fix_reports_the_inspection_of_what_it_wrote(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    result = tiecheck.fix(src, to="untied", output=tmp_path / "out")
    assert result.after is not None
    assert result.after.checkpoint.root == tmp_path / "out"
    assert result.after.verdict is Verdict.UNTIED
    assert "TC112" not in {f.code for f in result.after.findings}


# -- interrupted runs -------------------------------------------------------------------------


def journal_for(folder: Path, finals: list[str]) -> dict[str, object]:
    """The journal ``commit`` writes for these finals: each temporary with the device, inode
    and size it has on this machine."""
    renames = []
    for name in finals:
        st = temp_path(folder / name).lstat()
        renames.append(
            {
                "temp": temp_path(folder / name).name,
                "final": name,
                "dev": st.st_dev,
                "ino": st.st_ino,
                "size": st.st_size,
            }
        )
    return {"tiecheck_journal": 2, "renames": renames}


def test_recovery_finishes_a_commit_interrupted_after_its_journal(tmp_path: Path) -> None:
    """The state a kill between two renames leaves: journal written, the first rename done,
    the rest still hidden temporaries. The next in-place run must roll forward, not mix."""
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True, shards=2)
    ref = tmp_path / "ref"
    tiecheck.fix(src, to="untied", output=ref)
    finals = sorted(p.name for p in ref.iterdir() if p.name != "tokenizer.json")
    for name in finals:
        shutil.copyfile(ref / name, temp_path(src / name))
    (src / JOURNAL).write_text(json.dumps(journal_for(src, finals)))
    temp_path(src / finals[0]).replace(src / finals[0])

    result = tiecheck.fix(src, to="untied", in_place=True)
    assert sorted(result.recovered) == finals[1:]
    assert result.target is None  # after recovery there was nothing left to change
    assert leftovers(src) == []
    for name in finals:
        assert (src / name).read_bytes() == (ref / name).read_bytes(), name


def test_temporaries_of_a_run_killed_before_its_journal_are_discarded(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    before = tree_hashes(src)
    garbage = temp_path(src / "model.safetensors")
    garbage.write_bytes(b"half a file")
    result = tiecheck.fix(src, to="untied", in_place=True)
    assert result.recovered == []
    assert leftovers(src) == []
    assert tree_hashes(src) != before
    with safe_open(str(src / "model.safetensors"), "np") as f:
        assert HEAD in set(f.keys())


def _big_sharded_source(folder: Path) -> Path:
    """~40 MB in four shards, deduplicated tie: big enough that writing takes a moment."""
    r = np.random.default_rng(42)
    weights = {EMB: r.standard_normal((8192, 256), dtype=np.float32)}
    for i in range(8):
        weights[f"model.layers.{i}.mlp.weight"] = r.standard_normal((1024, 1024), dtype=np.float32)
    return write_model(folder, weights, tied=True, shards=4)


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tiecheck", "fix", *args, "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen[bytes], folder: Path, trigger: str, delay: float) -> str:
    """Kill -9 ``proc`` when ``trigger`` is seen in ``folder``, then after ``delay`` seconds.

    Triggers: ``temp:K`` (K distinct hidden temporaries have appeared), ``final`` (a file has
    taken a final name: the commit is under way or done), ``journal`` (the commit journal
    exists), ``start`` (at once). Returns what the process was doing when killed.
    """
    deadline = time.monotonic() + 60
    seen: set[str] = set()
    while trigger != "start" and time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(FileNotFoundError):
            names = [p.name for p in folder.iterdir()]
            seen.update(n for n in names if n.endswith(TEMP_MARK))
            if (
                (trigger.startswith("temp:") and len(seen) >= int(trigger[5:]))
                or (trigger == "final" and any(not n.startswith(".") for n in names))
                or (trigger == "journal" and JOURNAL in names)
            ):
                break
        time.sleep(0.0002)
    time.sleep(delay)
    finished = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, 9)
    proc.wait(timeout=30)
    return "finished first" if finished else f"killed at {trigger}+{delay * 1000:.0f}ms"


def _check_killed_output(out: Path, reference: dict[str, bytes]) -> dict[str, bytes]:
    present = final_files(out) if out.is_dir() else {}
    for name, content in present.items():
        assert name in reference, f"unexpected final file {name}"
        assert content == reference[name], f"{name} is partial or wrong after kill -9"
        if name.endswith(".safetensors"):
            with safe_open(str(out / name), "np") as f:
                assert f.keys()
    return present


@pytest.mark.slow
def test_kill_9_at_random_points_leaves_no_partial_file_and_a_rerun_succeeds(
    tmp_path: Path,
) -> None:
    src = _big_sharded_source(tmp_path / "src")
    before = tree_hashes(src)
    args = ["--to", "untied", "--max-shard-size", "6MB"]
    ref = tmp_path / "ref"
    tiecheck.fix(src, to="untied", output=ref, max_shard_size="6MB")
    reference = final_files(ref)
    shards = len([n for n in reference if n.endswith(".safetensors")])
    assert shards >= 6

    started = time.monotonic()
    whole = _start([str(src), *args, "-o", str(tmp_path / "whole")])
    assert whole.wait(timeout=120) == 0
    duration = time.monotonic() - started
    assert final_files(tmp_path / "whole") == reference

    rand = random.Random(1234)
    triggers = [f"temp:{k}" for k in rand.sample(range(1, shards + 3), 4)]
    triggers += ["final", "journal", "start", "delay", "delay"]
    outcomes = []
    for i, trigger in enumerate(triggers):
        out = tmp_path / f"out{i}"
        proc = _start([str(src), *args, "-o", str(out)])
        if trigger == "delay":
            outcomes.append(_kill_when(proc, out, "start", rand.uniform(0, duration)))
        else:
            outcomes.append(_kill_when(proc, out, trigger, rand.uniform(0, 0.002)))

        assert tree_hashes(src) == before
        present = _check_killed_output(out, reference)
        # A second run succeeds: as is when only hidden temporaries are left, with --overwrite
        # when the killed run had begun its commit (journal written) or finished it.
        committing = present or (out / JOURNAL).exists()
        rerun = _start([str(src), *args, "-o", str(out), *(["--overwrite"] if committing else [])])
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, (outcomes[-1], err.decode())
        assert final_files(out) == reference
        assert leftovers(out) == []
        assert tree_hashes(src) == before
    assert sum(o.startswith("killed") for o in outcomes) >= 5, outcomes


@pytest.mark.slow
def test_kill_9_during_in_place_keeps_every_file_old_or_new(tmp_path: Path) -> None:
    pristine = _big_sharded_source(tmp_path / "pristine")
    ref = tmp_path / "ref"
    tiecheck.fix(pristine, to="untied", output=ref)
    old, new = final_files(pristine), final_files(ref)
    rand = random.Random(99)
    for i, trigger in enumerate(["temp:1", "temp:3", "journal", "final"]):
        src = tmp_path / f"src{i}"
        shutil.copytree(pristine, src)
        proc = _start([str(src), "--to", "untied", "--in-place"])
        _kill_when(proc, src, trigger, rand.uniform(0, 0.002))
        for name, content in final_files(src).items():
            assert content in (old.get(name), new.get(name)), f"{name} is neither old nor new"
        rerun = _start([str(src), "--to", "untied", "--in-place"])
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()
        assert final_files(src) == {**old, **new}
        assert leftovers(src) == []


# -- full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only; elsewhere there is no honest way to fill a disk)."""
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs needs root to mount; no other honest way to fill a disk")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_output_larger_than_the_disk_fails_before_writing(tmp_path: Path, small_disk: Path) -> None:
    weights = tensors(head="none", vocab=4096, hidden=128)  # 2 MiB embedding, 4 MiB untied
    src = write_model(tmp_path / "src", weights, tied=True)
    before = tree_hashes(src)
    with pytest.raises(TiecheckError, match="not enough space") as e:
        tiecheck.fix(src, to="untied", output=small_disk / "out")
    assert "nothing was written" in str(e.value)
    assert tree_hashes(src) == before
    assert list((small_disk / "out").iterdir()) == []


def test_a_non_weight_file_that_does_not_fit_is_refused_before_writing(
    tmp_path: Path, small_disk: Path
) -> None:
    """The weights fit, a large non-weight file that comes along does not: the space check
    counts it, so nothing is written at all."""
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    (src / "tokenizer.json").write_bytes(b"x" * (3 << 20))
    before = tree_hashes(src)
    with pytest.raises(TiecheckError, match="not enough space") as e:
        tiecheck.fix(src, to="untied", output=small_disk / "out")
    assert "nothing was written" in str(e.value)
    assert tree_hashes(src) == before
    assert list((small_disk / "out").iterdir()) == []


@pytest.mark.parametrize(
    "syscall",
    [
        pytest.param("copy_file_range", marks=pytest.mark.slow),
        pytest.param("pwrite64", marks=pytest.mark.slow),
        "write",
    ],
)
def test_disk_filling_up_mid_run_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, syscall: str
) -> None:
    """ENOSPC in the middle of the run (another process filled the disk after the space
    check), injected at the first such call by strace: exit 2, one clear line, nothing takes
    a final name and no temporary stays behind."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True, shards=2)
    (src / "tokenizer.json").write_bytes(b"x" * 4096)
    before = tree_hashes(src)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            "strace", "-f", "-qq", "-o", os.devnull,
            "-e", f"trace={syscall}", "-e", f"inject={syscall}:error=ENOSPC:when=1",
            sys.executable, "-m", "tiecheck", "fix", str(src), "--to", "untied", "-o", str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    if "ptrace" in done.stderr:
        pytest.skip("ptrace is not permitted here")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tiecheck: error: no space left"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert list(out.iterdir()) == []
    assert tree_hashes(src) == before


def test_in_place_on_a_full_disk_leaves_the_source_intact(tmp_path: Path, small_disk: Path) -> None:
    weights = tensors(head="none", vocab=2048, hidden=128)  # 1 MiB embedding
    src = write_model(small_disk / "model", weights, tied=True)
    before = tree_hashes(src)
    with pytest.raises(TiecheckError, match="space"):
        tiecheck.fix(src, to="untied", in_place=True)
    assert tree_hashes(src) == before
