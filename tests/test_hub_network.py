"""Hub sources on the wire: time limits, branch resolution, how many requests a run makes,
spellings that must never reach the Hub, offline runs, and one file discovery for folders and
repos.

Everything runs huggingface_hub's real client against ``hub_server.HubServer`` on 127.0.0.1
(the ``hub`` fixture of test_hub.py), which logs every request, and can stall chosen requests:
'silent' (the request is read and never answered) or 'body' (headers and half the body, then
nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import test_hub
import tiecheck
from core_helpers import codes, only_report
from hub_server import UNSET_ENV, Record
from test_hub import SRC, TESTS, TIED, Hub, arrays, offline, single, summary
from tiecheck.errors import SourceError
from tiecheck.readers.discover import Choice, FolderListing, choose
from tiecheck.readers.hub import FIRST_READ, PARALLEL_READS, HubRef, RepoListing
from tiecheck.readers.hub_net import HubTimeout

hub = test_hub.hub  # the fixtures: a Hub stand-in with the test repos
repos = test_hub.repos

LIMIT = 1.0
"""The time limit the stall tests give (seconds)."""
BOUND = 10.0
"""What they allow a stalled run in all: one time limit plus start-up. Without a limit the
first stall never ended; with only the library's own, one stalled download took minutes."""


def route(r: Record) -> str:
    """A request as 'METHOD kind[/api route][ range]' for counting."""
    if r.kind == "api":
        parts = r.path.strip("/").split("/")
        name = parts[4] if len(parts) > 4 else "model-info"
        return f"{r.method} api/{'model-info' if name == 'revision' else name}"
    return f"{r.method} {r.kind}{' range' if r.range else ''}"


def hub_requests(hub: Hub) -> Counter[str]:
    """Requests to the Hub, less the library's once-a-day agent registry fetch."""
    return Counter(route(r) for r in hub.server.log if r.path != "/api/agent-harnesses")


def run_cli(hub: Hub, command: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m tiecheck COMMAND ...`` in a child pointed at the server, loopback-guarded."""
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", command, *args],
        capture_output=True,
        text=True,
        env=hub.child_env(**env),
        cwd=hub.home.parent,
        timeout=120,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.args, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tiecheck: error:"), proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 1. time limits


@pytest.mark.slow  # waits out real time limits
@pytest.mark.parametrize("given", ["--timeout", "TIECHECK_HUB_TIMEOUT"])
def test_a_hub_that_never_answers_ends_the_run(hub: Hub, given: str) -> None:
    """Connections accepted, requests read, nothing ever answered."""
    hub.server.state.stall = lambda r: "silent"
    flag = ("--timeout", f"{LIMIT:g}") if given == "--timeout" else ()
    env = {"TIECHECK_HUB_TIMEOUT": f"{LIMIT:g}"} if given != "--timeout" else {}
    start = time.monotonic()
    proc = run_cli(hub, "inspect", "org/dup", "-q", *flag, **env)
    elapsed = time.monotonic() - start
    line = one_error_line(proc)
    assert f"127.0.0.1:{hub.server.port}" in line and f"{LIMIT:g} s" in line, line
    assert elapsed < BOUND
    assert sum(hub_requests(hub).values()) == 1  # asked once, never retried


def _stalled(hub: Hub, how: str, picks: Any) -> list[Record]:
    """Stall the requests ``picks`` chooses; returns the list they are recorded in."""
    seen: list[Record] = []

    def stall(r: Record) -> str | None:
        if picks(r):
            if all(s is not r for s in seen):
                seen.append(r)
            return how
        return None

    hub.server.state.stall = stall
    return seen


def _is_header_read(r: Record) -> bool:
    return r.kind == "cdn" and bool(r.range) and r.range.startswith("bytes=0-")


def _is_tensor_read(r: Record) -> bool:
    return r.kind == "cdn" and bool(r.range) and not r.range.startswith("bytes=0-")


STALLS = {
    # what stalls: (how, which requests, the call, host that is named)
    "config and index download": (
        "silent",
        lambda r: r.kind == "resolve" and not r.range,
        lambda out: tiecheck.inspect("org/dup", timeout=LIMIT),
        "127.0.0.1",
    ),
    "header range read, mid-body": (
        "body",
        _is_header_read,
        lambda out: tiecheck.inspect("org/dup", no_data=True, timeout=LIMIT),
        "localhost",
    ),
    "tensor range reads, mid-body": (
        "body",
        _is_tensor_read,
        lambda out: tiecheck.inspect("org/dup", timeout=LIMIT),
        "localhost",
    ),
    "pickle download, mid-body": (
        "body",
        lambda r: r.kind == "cdn" and r.file == "pytorch_model.bin",
        lambda out: tiecheck.inspect("org/bin", download=True, timeout=LIMIT),
        "localhost",
    ),
    "fix's download, mid-body": (
        "body",
        lambda r: r.kind == "cdn",
        lambda out: tiecheck.fix("org/dup", to="tied", output=out, timeout=LIMIT),
        "localhost",
    ),
}


@pytest.mark.slow  # waits out real time limits
@pytest.mark.parametrize("case", list(STALLS))
def test_a_stall_anywhere_costs_one_time_limit(hub: Hub, tmp_path: Path, case: str) -> None:
    """Every kind of request tiecheck makes, stalled: one clear error within one time limit.
    Without the guard the library retries: a metadata HEAD again with 60 s and backoff, a
    download resumed five times; range reads had no limit of their own."""
    how, picks, call, host = STALLS[case]
    stalled = _stalled(hub, how, picks)
    start = time.monotonic()
    with pytest.raises(HubTimeout) as info:
        call(tmp_path / "out")
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert f"{host}:{hub.server.port}" in message and f"{LIMIT:g} s" in message, message
    assert "\n" not in message
    assert elapsed < BOUND
    # none of them asked again: only what was already in flight together stalled
    assert 1 <= len(stalled) <= (PARALLEL_READS if "range" in case else 1)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_time_limit_values_are_checked(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(SourceError, match="not a time limit"):
            tiecheck.inspect("org/dup", timeout=bad)
    monkeypatch.setenv("TIECHECK_HUB_TIMEOUT", "soon")
    with pytest.raises(SourceError, match="TIECHECK_HUB_TIMEOUT='soon': not a number"):
        tiecheck.inspect("org/dup")
    assert hub.server.log == []


@pytest.mark.slow  # waits out real time limits
def test_a_slow_hub_within_the_limit_is_fine(tmp_path: Path) -> None:
    """Requests that each take a while, but less than the limit, are not cut short."""
    from hub_server import HubServer, hub_environment

    # its own server with a round trip of 0.3 s, pointed at by a child process
    folder = single(tmp_path / "m", arrays(31, "copy"), TIED)
    with HubServer(latency=0.3) as server:
        server.add_repo("org/slow", folder)
        env = {
            **{k: v for k, v in os.environ.items() if k not in UNSET_ENV},
            **hub_environment(server.endpoint, tmp_path / "home"),
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)]),
        }
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tiecheck",
                "inspect",
                "org/slow",
                "--json",
                "-q",
                *("--timeout", "1"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    assert proc.returncode in (0, 1), proc.stderr
    assert only_report(json.loads(proc.stdout))["source"]["origin"] == "hub"


def test_a_server_that_ignores_ranges_is_not_read_to_the_end(hub: Hub, repos: dict) -> None:
    """A storage host answering 200 with the whole file: a header read takes its first bytes
    and hangs up; a read further in is a finding (TC001), not a whole-shard download."""
    hub.server.state.ignore_range = lambda r: r.kind == "cdn"
    report = tiecheck.inspect("org/dup")
    local = tiecheck.inspect(repos["dup"])
    assert [t.name for t in report.checkpoint.tensors] == [t.name for t in local.checkpoint.tensors]
    assert any(f.code == "TC001" and "ignored the byte range" in f.message for f in report.findings)
    small = sum(p.stat().st_size for p in repos["dup"].glob("*.json"))
    assert report.bytes_transferred <= 3 * FIRST_READ + small  # the three header reads


# ---------------------------------------------------------------------------------------------
# 2. a branch is resolved by the Hub before the cache is used


@pytest.mark.slow
def test_a_moved_branch_is_read_at_its_new_commit(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants, snapshot_download

    a = single(tmp_path / "a", arrays(20, "copy"), TIED)
    b = single(tmp_path / "b", arrays(20, "diverged"), TIED)
    hub.server.add_repo("org/moving", a)
    commit_a = hub.server.commit("org/moving")
    snapshot_download("org/moving")  # a complete snapshot of commit A in the cache

    hub.server.clear_log()
    first = tiecheck.inspect("org/moving")
    assert first.checkpoint.origin == "hub-cache" and first.checkpoint.commit == commit_a
    assert any(commit_a in n for n in first.notes)
    assert hub_requests(hub) == {"GET api/model-info": 1}  # what main is now; nothing else
    assert summary(first) == summary(tiecheck.inspect(a))

    commit_b = hub.server.move_branch("org/moving", b)  # a push: main's head has diverged
    hub.server.clear_log()
    second = tiecheck.inspect("org/moving")
    assert second.checkpoint.commit == commit_b and second.checkpoint.origin == "hub"
    assert any(commit_b in n for n in second.notes)
    assert summary(second) == summary(tiecheck.inspect(b)) != summary(first)
    assert "TC102" in codes(second) and "TC102" not in codes(first)

    # offline: main resolves (in the cache) to B, whose weights are not cached: no stale A
    offline(monkeypatch)
    hub.server.clear_log()
    with pytest.raises(SourceError, match="does not hold this revision's weights"):
        tiecheck.inspect("org/moving")
    proc = run_cli(hub, "inspect", "org/moving", "-q", "--offline")
    assert "HF_HUB_OFFLINE" not in one_error_line(proc)  # said by --offline itself
    assert hub.server.log == []

    # once B is downloaded, offline runs read it, and say so, without a request
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    snapshot_download("org/moving")
    hub.server.clear_log()
    third = tiecheck.inspect("org/moving", offline=True)
    assert third.checkpoint.commit == commit_b and third.checkpoint.origin == "hub-cache"
    assert summary(third) == summary(second)
    assert any(commit_b in n and "not checked against the Hub" in n for n in third.notes)
    proc = run_cli(hub, "inspect", "org/moving", "--json", "-q", "--offline")
    assert only_report(json.loads(proc.stdout))["source"]["commit"] == commit_b, proc.stderr
    assert hub.server.log == []


@pytest.mark.slow
def test_the_json_report_names_the_commit(hub: Hub, repos: dict[str, Path]) -> None:
    proc = run_cli(hub, "inspect", "org/dedup@v1", "--json", "-q")
    commit = hub.server.commit("org/dedup", "v1")
    assert only_report(json.loads(proc.stdout))["source"]["commit"] == commit
    local = run_cli(hub, "inspect", str(repos["v1"]), "--json", "-q")
    assert only_report(json.loads(local.stdout))["source"]["commit"] is None


# ---------------------------------------------------------------------------------------------
# 3. one round of metadata


def test_a_sharded_repo_costs_one_metadata_request(hub: Hub) -> None:
    """Before: model-info and a tree listing from HfApi, then the revision and the listing
    again from HfFileSystem (4 metadata requests); now one model-info with file sizes."""
    report = tiecheck.inspect("org/dup", no_data=True)  # 3 shards, an index, a config
    assert len(report.checkpoint.files) == 3
    assert hub_requests(hub) == {
        "GET api/model-info": 1,
        "HEAD resolve": 2,  # index and config, downloaded into the cache
        "GET resolve": 2,
        "GET resolve range": 3,  # one header read per shard: the Hub's redirect...
        "GET cdn range": 3,  # ...and the storage host's bytes
    }
    hub.server.clear_log()
    tiecheck.inspect("org/dup", no_data=True)  # index and config now cached
    assert hub_requests(hub) == {
        "GET api/model-info": 1,
        "GET resolve range": 3,
        "GET cdn range": 3,
    }


# ---------------------------------------------------------------------------------------------
# 4. local-looking spellings never reach the Hub; --offline makes no request


LOCAL_LOOKING = [
    "models/my-model/sub",
    "./org/name",
    "../org/name",
    "~/org/name",
    "/no/such/org/name",
    "org\\name",
    "C:/models/name",
    "org/model.safetensors",
    "org/pytorch_model.bin",
    "org/model.pt",
    "org/config.json",
    "org/model.safetensors.index.json",
    "org/model.gguf",
    "org/model.safetensors@main",
]


@pytest.mark.parametrize("source", LOCAL_LOOKING)
def test_local_looking_paths_never_reach_the_hub(hub: Hub, tmp_path: Path, source: str) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        tiecheck.inspect(source)
    with pytest.raises(SourceError, match="no such file or folder"):
        tiecheck.fix(source, to="tied", output=tmp_path / "out")
    assert hub.server.log == []


def test_org_name_beside_a_local_org_folder_is_a_path(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fixtures/no-such-model`` where ``fixtures/`` is a folder here is a mistyped path: no
    request, and the message says how to name the repo instead."""
    (tmp_path / "org").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match="hf://org/dup"):
        tiecheck.inspect("org/dup")
    assert hub.server.log == []
    assert tiecheck.inspect("hf://org/dup", no_data=True).checkpoint.origin != "local"


def test_local_looking_path_from_the_cli(hub: Hub) -> None:
    line = one_error_line(run_cli(hub, "inspect", "models/my-model.safetensors", "-q"))
    assert "no such file or folder" in line
    assert hub.server.log == []


@pytest.mark.slow
def test_offline_flag_makes_no_request(hub: Hub, tmp_path: Path) -> None:
    for command, extra in (("inspect", ()), ("fix", ("--to", "tied", "-o", str(tmp_path / "o")))):
        line = one_error_line(run_cli(hub, command, "org/dup", "-q", "--offline", *extra))
        assert "does not hold this revision's weights, and --offline was given" in line
    with pytest.raises(SourceError, match="--offline"):
        tiecheck.inspect("org/dup", offline=True)
    assert hub.server.log == []


def test_unreachable_hub_falls_back_on_the_cache_and_says_so(hub: Hub) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download("org/dup")
    hub.server.stop()
    report = tiecheck.inspect("org/dup")
    assert report.checkpoint.origin == "hub-cache"
    assert report.checkpoint.commit == hub.server.commit("org/dup")
    assert any("cannot be reached" in n for n in report.notes)


# ---------------------------------------------------------------------------------------------
# 5. one discovery: a folder and the same files as a repo choose alike


LAYOUTS: dict[str, tuple[list[str], str | None]] = {
    "both formats": (["model.safetensors", "pytorch_model.bin", "config.json"], None),
    "single beside index": (["model.safetensors", "model.safetensors.index.json"], None),
    "two indexes": (
        ["a.safetensors.index.json", "b.safetensors.index.json", "w.safetensors"],
        None,
    ),
    "loose shards": (["part-a.safetensors", "part-b.safetensors", "README.md"], None),
    "pickles only": (["x.pt", "y.pth", "config.json"], None),
    "pickle index": (["pytorch_model.bin.index.json", "pytorch_model-00001.bin"], None),
    "adapter": (["adapter_config.json", "adapter_model.safetensors", "config.json"], None),
    "adapter pickle": (["adapter_config.json", "adapter_model.bin"], None),
    "adapter without weights": (["adapter_config.json", "README.md"], None),
    "no weights": (["README.md", "config.json", "deeper/model.safetensors"], None),
    "one shard": (
        ["s-1.safetensors", "s-2.safetensors", "s.safetensors.index.json"],
        "s-2.safetensors",
    ),
    "an index": (
        ["s-1.safetensors", "s.safetensors.index.json", "config.json"],
        "s.safetensors.index.json",
    ),
    "adapter file": (
        ["adapter_config.json", "adapter_model.safetensors"],
        "adapter_model.safetensors",
    ),
    "config names the folder": (["model.safetensors", "config.json"], "config.json"),
    "unknown suffix": (["weights.dat", "config.json"], "weights.dat"),
}


def _choice_or_error(listing: Any, target: str | None) -> Choice | str:
    try:
        return choose(listing, "src", target)
    except SourceError as e:
        return str(e).split("; it has model folders")[0].replace(listing.where, "<where>")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_folder_and_repo_choose_the_same_files(hub: Hub, tmp_path: Path, layout: str) -> None:
    """The repo's listing comes from the real client's model-info answer; the files sit in a
    subfolder with more below it, which must count as neither names nor weights."""
    from huggingface_hub import HfApi

    names, target = LAYOUTS[layout]
    repo = tmp_path / "repo"
    for name in [*names, "below/model.safetensors"]:
        path = repo / "sub" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (repo / "model.safetensors").write_bytes(b"x")  # beside the subfolder, not in it
    hub.server.add_repo("org/layout", repo)
    ref = HubRef("org/layout", None, "sub", target)
    listing = RepoListing.from_info(ref, HfApi().model_info("org/layout", files_metadata=True))
    local = _choice_or_error(FolderListing(repo / "sub"), target)
    remote = _choice_or_error(listing, target)
    if layout == "unknown suffix":  # only a local file's first bytes can be sniffed for free
        assert isinstance(remote, str) and "not a checkpoint" in remote
        return
    assert remote == local
    if layout == "no weights":
        hint = r"it has model folders \(below, deeper\): inspect one as hf://org/layout/sub/below"
        with pytest.raises(SourceError, match=hint):
            choose(listing, "src")
