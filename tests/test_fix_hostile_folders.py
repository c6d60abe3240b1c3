"""``fix`` treats every file it finds as hostile: in the source folder and in the output folder,
including files tiecheck itself leaves behind (a commit journal, temporaries).

Each test plants something an attacker could ship in a model repository (or leave in a shared
output folder), runs the real ``fix``, and asserts that nothing outside the folders was read
into the output, created, renamed or changed, that the source is byte-identical, and that the
refusal is a one-line error.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

import tiecheck
from core_helpers import run_cli
from fix_helpers import HEAD, leftovers, tensors, tree_hashes, write_model
from tiecheck.errors import TiecheckError
from tiecheck.rewrite.commit import JOURNAL, temp_path
from tiecheck.rewrite.folder import Folder


def journal(*renames: dict[str, object]) -> str:
    return json.dumps({"tiecheck_journal": 2, "renames": list(renames)})


def entry_for(temp: Path, final: str) -> dict[str, object]:
    """A journal entry that matches ``temp`` on this machine (device, inode, size)."""
    st = temp.lstat()
    return {
        "temp": temp.name,
        "final": final,
        "dev": st.st_dev,
        "ino": st.st_ino,
        "size": st.st_size,
    }


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside every folder the tests give tiecheck."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return path


# -- the commit journal -------------------------------------------------------------------------


HOSTILE_FINALS = ["/tmp/tiecheck-hostile-absolute", "../victim.txt", "a/../../victim.txt"]


@pytest.mark.parametrize("final", HOSTILE_FINALS)
@pytest.mark.parametrize("where", ["in-place", "output"])
def test_a_planted_journal_naming_paths_outside_the_folder_renames_nothing(
    tmp_path: Path, victim: Path, final: str, where: str
) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    folder = src if where == "in-place" else tmp_path / "out"
    folder.mkdir(exist_ok=True)
    planted = folder / ".planted.tiecheck-tmp"
    planted.write_text("attacker")
    entry = entry_for(planted, final) | {"temp": planted.name}
    (folder / JOURNAL).write_text(journal(entry))
    before = tree_hashes(tmp_path)
    args = ["--in-place"] if where == "in-place" else ["-o", str(folder), "--overwrite"]
    run = run_cli("fix", src, "--to", "tied", *args)
    assert run.code == 2, run.stderr
    assert run.stderr.startswith("tiecheck: error: ") and run.stderr.count("\n") == 1
    assert "renamed" in run.stderr or "outside" in run.stderr or "not a temporary" in run.stderr
    assert tree_hashes(tmp_path) == before
    assert victim.read_text() == "precious"
    assert not Path("/tmp/tiecheck-hostile-absolute").exists()


def test_a_journal_planted_with_its_temporaries_in_a_downloaded_folder_is_refused(
    tmp_path: Path,
) -> None:
    """The strongest plant: well-formed names, a temporary for each, and sizes that match. A
    repository cannot know the inode numbers its files get on this machine, so the journal does
    not match, and the real weights are not replaced by the attacker's."""
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    evil = temp_path(src / "model.safetensors")
    evil.write_bytes((src / "model.safetensors").read_bytes()[::-1])
    st = evil.lstat()
    entry = {
        "temp": evil.name,
        "final": "model.safetensors",
        "dev": st.st_dev,
        "ino": st.st_ino + 1,
        "size": st.st_size,
    }
    (src / JOURNAL).write_text(journal(entry))
    before = tree_hashes(src)
    with pytest.raises(TiecheckError, match="does not match the files beside it"):
        tiecheck.fix(src, to="untied", in_place=True)
    assert tree_hashes(src) == before


def test_a_copied_folder_does_not_replay_the_journal_of_the_original(tmp_path: Path) -> None:
    """A genuine journal whose folder was copied (new inodes) is refused, not replayed."""
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    temp = temp_path(src / "config.json")
    temp.write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": False}))
    (src / JOURNAL).write_text(journal(entry_for(temp, "config.json")))
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    before = tree_hashes(copy)
    with pytest.raises(TiecheckError, match="copied folder"):
        tiecheck.fix(copy, to="untied", in_place=True)
    assert tree_hashes(copy) == before
    # the original folder's own journal is still finished (the recovery path works)
    result = tiecheck.fix(src, to="untied", in_place=True)
    assert result.recovered == ["config.json"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: "[" * 100_000 + "]" * 100_000, id="deeply-nested"),
        pytest.param(lambda: '{"renames": [["a", "b"]]}', id="old-format"),
        pytest.param(lambda: journal({"temp": 1, "final": 2}), id="malformed-entry"),
        pytest.param(
            lambda: journal(
                {
                    "temp": ".x.tiecheck-tmp",
                    "final": "model.safetensors",
                    "dev": 1,
                    "ino": 2,
                    "size": 3,
                }
            ),
            id="temp-for-another-name",
        ),
        pytest.param(lambda: "\xff not json", id="not-json"),
        pytest.param(
            lambda: journal(
                {"temp": ".a.tiecheck-tmp", "final": "a", "dev": 10**30, "ino": 1, "size": 1}
            ),
            id="absurd-number",
        ),
    ],
)
def test_malformed_journals_are_refused_with_one_line(tmp_path: Path, content) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    (src / JOURNAL).write_text(content(), encoding="utf-8", errors="surrogateescape")
    before = tree_hashes(src)
    run = run_cli("fix", src, "--to", "tied", "--in-place")
    assert run.code == 2, run.stderr
    assert run.stderr.startswith("tiecheck: error: ") and run.stderr.count("\n") == 1
    assert JOURNAL in run.stderr
    assert tree_hashes(src) == before


def test_a_journal_that_is_a_link_or_too_big_is_refused(tmp_path: Path, victim: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    (src / JOURNAL).symlink_to(victim)
    with pytest.raises(TiecheckError, match="not a regular file"):
        tiecheck.fix(src, to="tied", in_place=True)
    (src / JOURNAL).unlink()
    with (src / JOURNAL).open("wb") as f:
        f.truncate(64 << 20)  # sparse: claims 64 MiB
    with pytest.raises(TiecheckError, match="more than any journal"):
        tiecheck.fix(src, to="tied", in_place=True)
    assert victim.read_text() == "precious"


def test_a_journal_that_would_replace_a_folder_is_refused(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    (src / "sub").mkdir()
    temp = src / ".sub.tiecheck-tmp"
    temp.write_text("x")
    (src / JOURNAL).write_text(journal(entry_for(temp, "sub")))
    with pytest.raises(TiecheckError, match="would replace the folder"):
        tiecheck.fix(src, to="tied", in_place=True)
    assert (src / "sub").is_dir()


# -- files read through links ------------------------------------------------------------------


def test_extra_files_that_link_out_of_the_folder_are_not_copied(
    tmp_path: Path, victim: Path
) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    (src / "README.md").symlink_to(victim)
    (src / "tokenizer_config.json").symlink_to(os.path.relpath(victim, src))
    (src / "notes.txt").symlink_to(src / "tokenizer.json")  # a link inside the folder: fine
    os.mkfifo(src / "vocab.txt")  # a FIFO would block a copy forever
    out = tmp_path / "out"
    started = time.monotonic()
    result = tiecheck.fix(src, to="tied", output=out)
    assert time.monotonic() - started < 30
    copied = sorted(p.name for p in out.iterdir())
    assert "README.md" not in copied and "tokenizer_config.json" not in copied
    assert "vocab.txt" not in copied
    assert (out / "notes.txt").read_text() == (src / "tokenizer.json").read_text()
    assert not (out / "notes.txt").is_symlink()
    assert all("precious" not in p.read_text(errors="ignore") for p in out.iterdir())
    notes = "\n".join(result.plan.notes)
    assert "README.md is a symbolic link to" in notes and "not copied" in notes
    assert "vocab.txt is not a regular file" in notes


def test_a_config_that_links_out_of_the_folder_is_not_read(tmp_path: Path, victim: Path) -> None:
    secret = victim.with_name("config.json")
    secret.write_text(json.dumps({"model_type": "llama", "tie_word_embeddings": False}))
    src = write_model(tmp_path / "src", tensors(head="none"), tied=True)
    (src / "config.json").unlink()
    (src / "config.json").symlink_to(secret)
    report = tiecheck.inspect(src)
    assert report.checkpoint.config is None
    tc001 = [f for f in report.findings if f.code == "TC001"]
    assert tc001 and "outside the model folder; not read" in tc001[0].message
    before = tree_hashes(tmp_path)
    run = run_cli("fix", src, "--to", "tied", "-o", tmp_path / "out")
    assert run.code == 2 and "config" in run.stderr
    after = tree_hashes(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


# -- writes that a planted link would redirect ---------------------------------------------------


def test_planted_temporaries_that_are_links_never_redirect_a_write(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True, shards=2)
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    names = [
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
        "tokenizer.json",
        JOURNAL,
    ]
    for name in names:  # dangling links: a plain open(..., "w") would create their targets
        temp_path(out / name).symlink_to(elsewhere / f"created-{name}")
    result = tiecheck.fix(src, to="tied", output=out, overwrite=True)
    assert list(elsewhere.iterdir()) == []
    assert leftovers(out) == []
    assert result.after is not None and result.after.verdict.value == "tied"


def test_an_output_sub_folder_that_is_a_link_is_refused(tmp_path: Path, victim: Path) -> None:
    """Shards in a sub-folder (an index naming ``shards/x.safetensors``) whose counterpart in
    the output folder is a link elsewhere: refused, nothing written there."""
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True, shards=2)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    (src / "shards").mkdir()
    for shard in set(index["weight_map"].values()):
        (src / shard).rename(src / "shards" / shard)
    index["weight_map"] = {k: f"shards/{v}" for k, v in index["weight_map"].items()}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "out"
    out.mkdir()
    (out / "shards").symlink_to(victim.parent)
    before = tree_hashes(victim.parent)
    with pytest.raises(TiecheckError, match="does not write through links"):
        tiecheck.fix(src, to="tied", output=out, overwrite=True)
    assert tree_hashes(victim.parent) == before


def test_an_output_that_is_the_source_through_a_link_is_refused(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    alias = tmp_path / "alias"
    alias.symlink_to(src)
    before = tree_hashes(src)
    for output in (alias, tmp_path / "src" / ".." / "src"):
        with pytest.raises(TiecheckError, match="is the source folder"):
            tiecheck.fix(src, to="tied", output=output, overwrite=True)
    assert tree_hashes(src) == before


def test_an_output_that_is_the_source_through_a_bind_mount_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to bind-mount")
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(mount)], capture_output=True).returncode:
        pytest.skip("bind mounts are not permitted here")
    try:
        before = tree_hashes(src)
        run = run_cli("fix", src, "--to", "tied", "-o", mount, "--overwrite")
        assert run.code == 2 and "is the source folder" in run.stderr
        assert tree_hashes(src) == before
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# -- two runs, one folder -----------------------------------------------------------------------


def test_a_second_fix_into_a_locked_folder_exits_2(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    out = tmp_path / "out"
    out.mkdir()
    with Folder(out) as held:
        held.lock()
        run = run_cli("fix", src, "--to", "tied", "-o", out)
        assert run.code == 2
        assert "another 'tiecheck fix' is writing into this folder" in run.stderr
        run = run_cli("fix", src, "--to", "tied", "--in-place", "-q")
        assert run.code == 0  # a different folder is not locked
    with Folder(src) as held:
        held.lock()
        run = run_cli("fix", src, "--to", "untied", "--in-place")
        assert run.code == 2 and "another 'tiecheck fix'" in run.stderr
    assert list(out.iterdir()) == []


def test_racing_runs_into_one_output_folder_leave_one_complete_result(tmp_path: Path) -> None:
    """Four real processes into one new folder at once: at most one commits, the others exit
    2 (locked, or the folder is no longer empty), and the folder is complete and verified."""
    r = np.random.default_rng(1)
    weights = tensors(head="copy", vocab=4096, hidden=512)  # 8 MiB embedding and copy
    weights["model.layers.0.mlp.up_proj.weight"] = r.standard_normal((512, 512)).astype(np.float16)
    src = write_model(tmp_path / "src", weights, tied=True, shards=3)
    out = tmp_path / "out"
    env = {**os.environ, "NO_COLOR": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tiecheck",
                "fix",
                str(src),
                "--to",
                "tied",
                "-o",
                str(out),
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes.count(0) == 1, results
    assert all(code == 2 for code in codes[1:]), results
    for code, err in results:
        if code == 2:
            assert "another 'tiecheck fix'" in err or "folder is not empty" in err, err
    assert leftovers(out) == []
    report = tiecheck.inspect(out, expect="tied")
    assert report.verdict.value == "tied"
    assert not [f for f in report.findings if f.severity.value == "error"]


# -- replaced files keep their mode and owner ------------------------------------------------------


def test_in_place_keeps_mode_and_owner_of_replaced_files(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    modes = {"model.safetensors": 0o600, "config.json": 0o640}
    for name, mode in modes.items():
        (src / name).chmod(mode)
    owner = None
    if os.geteuid() == 0:
        owner = (4321, 8765)
        for name in modes:
            os.chown(src / name, *owner)
    tiecheck.fix(src, to="untied", in_place=True)
    with safe_open(str(src / "model.safetensors"), "np") as f:
        assert HEAD in set(f.keys())
    assert json.loads((src / "config.json").read_text())["tie_word_embeddings"] is False
    for name, mode in modes.items():
        st = (src / name).stat()
        assert stat.S_IMODE(st.st_mode) == mode, name
        if owner is not None:
            assert (st.st_uid, st.st_gid) == owner, name


def test_temporaries_left_in_sub_folders_and_links_are_cleaned_not_followed(
    tmp_path: Path,
) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    target = tmp_path / "keep-me.txt"
    target.write_text("keep")
    temp_path(src / "model.safetensors").symlink_to(target)
    (src / ".dir.tiecheck-tmp").mkdir()  # a folder with a temporary's name is left alone
    tiecheck.fix(src, to="tied", in_place=True)
    assert target.read_text() == "keep"
    assert leftovers(src) == [".dir.tiecheck-tmp"]


def test_a_long_fix_holds_its_lock_until_it_ends(tmp_path: Path) -> None:
    """While a real run writes, taking the folder's lock fails; after it, it succeeds."""
    weights = tensors(head="copy", vocab=8192, hidden=1024)  # 32 MiB each
    src = write_model(tmp_path / "src", weights, tied=True)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiecheck", "fix", str(src), "--to", "untied", "-o", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    saw_busy = threading.Event()

    def probe() -> None:
        while proc.poll() is None:
            if any(p.name.endswith(".tiecheck-tmp") for p in out.glob(".*")):
                try:
                    with Folder(out) as f:
                        f.lock()
                except TiecheckError:
                    saw_busy.set()
                    return
            time.sleep(0.005)

    thread = threading.Thread(target=probe)
    thread.start()
    assert proc.wait(timeout=120) == 0
    thread.join()
    with Folder(out) as f:
        f.lock()  # released at exit
    if not saw_busy.is_set():
        pytest.skip("the run finished before a temporary could be observed")


def test_names_too_long_for_the_file_system_are_one_line_errors(tmp_path: Path) -> None:
    src = write_model(tmp_path / "src", tensors(head="copy"), tied=True)
    long = tmp_path / ("c" * 300)
    for args in (
        ["fix", long, "--to", "tied", "-o", tmp_path / "out"],
        ["fix", src, "--to", "tied", "-o", long],
        ["inspect", long, "-q"],
    ):
        run = run_cli(*args)
        assert run.code == 2, run.stderr
        assert run.stderr.startswith("tiecheck: error: ") and run.stderr.count("\n") == 1
        assert "File name too long" in run.stderr
