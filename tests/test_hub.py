"""Hub sources: huggingface_hub's real client against a Hub stand-in on 127.0.0.1.

``hub_server.HubServer`` serves repos from folders in ``tmp_path`` the way the Hub does
(model-info and tree endpoints, ``/resolve/`` with ``HEAD``, redirects and ``Range``); the
library is pointed at it with ``HF_ENDPOINT`` (and its import-time constants) and an isolated
``HF_HOME``. Every connection attempt off loopback fails the test.

What is checked: remote findings equal local findings of the same files; the server saw only
headers plus the ranges of candidate tensors (never a whole shard; nothing past the headers
with ``no_data``); source spellings; local paths winning over repo ids; the cache and offline
mode; every error as one clean line (library and CLI, exit 2).
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiecheck
from core_helpers import FIXTURES, QWEN2, only_report, save_numpy, write_config
from hub_server import UNSET_ENV, HubServer, hub_environment, loopback_only
from tiecheck.analysis.compare import comparison_plan
from tiecheck.errors import SourceError
from tiecheck.readers.hub import FIRST_READ, parse_hub_source
from tiecheck.readers.safetensors_format import read_header
from tiecheck.readers.tensor_data import CHUNK_BYTES

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
LLAMA_UNTIED = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}

# ---------------------------------------------------------------------------------------------
# repos: big enough that a shard is far more than its 64 KiB first read


VOCAB, HIDDEN, INTER = 1024, 64, 256


def arrays(seed: int, head: str = "copy", layers: int = 2) -> dict[str, np.ndarray]:
    """A Llama-shaped state dict (f32, every tensor distinct). ``head``: 'copy' (identical
    to the embedding), 'diverged' (a few rows changed), 'own' (trained apart) or 'absent'."""
    g = np.random.default_rng(seed)

    def arr(*shape: int) -> np.ndarray:
        return (g.standard_normal(shape) * 0.02).astype(np.float32)

    out = {"model.embed_tokens.weight": arr(VOCAB, HIDDEN)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = 1 + arr(HIDDEN)
        out[p + "self_attn.q_proj.weight"] = arr(HIDDEN, HIDDEN)
        out[p + "self_attn.o_proj.weight"] = arr(HIDDEN, HIDDEN)
        out[p + "mlp.up_proj.weight"] = arr(INTER, HIDDEN)
        out[p + "mlp.down_proj.weight"] = arr(HIDDEN, INTER)
    out["model.norm.weight"] = 1 + arr(HIDDEN)
    embedding = out["model.embed_tokens.weight"]
    if head == "copy":
        out["lm_head.weight"] = embedding.copy()
    elif head == "diverged":
        out["lm_head.weight"] = embedding.copy()
        out["lm_head.weight"][5:9] += 0.5
    elif head == "own":
        out["lm_head.weight"] = arr(VOCAB, HIDDEN)
    return out


def sharded(folder: Path, tensors: dict[str, np.ndarray], shards: int, config: dict | None) -> Path:
    """``save_pretrained``-style shards + index (+ config.json); head in the last shard."""
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for k in range(shards):
        part = names[k * per : (k + 1) * per]
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        save_numpy(folder / shard, {n: tensors[n] for n in part})
        weight_map.update(dict.fromkeys(part, shard))
    index = {
        "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
        "weight_map": weight_map,
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if config is not None:
        write_config(folder, **config)
    return folder


def single(folder: Path, tensors: dict[str, np.ndarray], config: dict | None) -> Path:
    save_numpy(folder / "model.safetensors", tensors)
    if config is not None:
        write_config(folder, **config)
    return folder


def pickled(folder: Path, tensors: dict[str, np.ndarray], config: dict | None) -> Path:
    torch = pytest.importorskip("torch")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, folder / "pytorch_model.bin")
    if config is not None:
        write_config(folder, **config)
    return folder


TIED = {**QWEN2, "tie_word_embeddings": True}
UNTIED = {**LLAMA_UNTIED, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test repos (built once; tests only read them)."""
    root = tmp_path_factory.mktemp("repos")
    out = {
        "dup": sharded(root / "dup", arrays(1, "copy"), 3, TIED),
        "diverged": single(root / "diverged", arrays(2, "diverged"), TIED),
        "dedup": single(root / "dedup", arrays(3, "absent"), TIED),
        "untied": sharded(root / "untied", arrays(4, "own"), 2, UNTIED),
        "missing-head": single(root / "missing-head", arrays(5, "absent"), UNTIED),
    }
    # one file whose header is longer than the first 64 KiB read
    # (long names, and shapes no other tensor has, so they are not compared and stay cheap)
    many = arrays(6, "copy", layers=1)
    pad = "x" * 150
    many.update({f"extra.{i:03d}.{pad}.scale": np.full(i + 1, i, np.float32) for i in range(300)})
    out["big-header"] = single(root / "big-header", many, TIED)
    # a repo whose model lives in a subfolder; its root holds only a README
    (root / "nested").mkdir()
    (root / "nested" / "README.md").write_text("# nested\n")
    single(root / "nested" / "sub", arrays(7, "diverged"), TIED)
    # pickles only, plus an unrelated pickle in a subfolder that must never be downloaded
    out["bin"] = pickled(root / "bin", arrays(8, "copy"), TIED)
    pickled(root / "bin" / "extra", arrays(9, "own"), None)
    out["nested"] = root / "nested"
    out["empty"] = root / "empty"
    write_config(out["empty"], **TIED)
    (out["empty"] / "README.md").write_text("no weights here\n")
    out["v1"] = single(root / "v1", arrays(10, "diverged"), TIED)
    # an index whose shards live in a folder below it, plus names that must never be fetched
    hostile = sharded(root / "nested-shards", arrays(12, "copy"), 2, TIED)
    index = json.loads((hostile / "model.safetensors.index.json").read_text())
    (hostile / "shards").mkdir()
    for shard in set(index["weight_map"].values()):
        (hostile / shard).rename(hostile / "shards" / shard)
    index["weight_map"] = {k: f"shards/{v}" for k, v in index["weight_map"].items()}
    index["weight_map"]["evil.weight"] = "../../secret.safetensors"
    index["weight_map"]["gone.weight"] = "shards/model-00009-of-00009.safetensors"
    (hostile / "model.safetensors.index.json").write_text(json.dumps(index))
    out["nested-shards"] = hostile
    return out


# ---------------------------------------------------------------------------------------------
# the server and an isolated huggingface_hub


@dataclass
class Hub:
    server: HubServer
    home: Path
    env: dict[str, str]

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def child_env(self, **env: str) -> dict[str, str]:
        """The environment of a ``python -m tiecheck`` child pointed at the server, with a
        ``sitecustomize`` that refuses any connection off the loopback interface; inherited
        settings that would change a run (debug, time limit) are dropped unless given."""
        guard = self.home.parent / "guard"
        guard.mkdir(exist_ok=True)
        (guard / "sitecustomize.py").write_text(
            "from hub_server import install_loopback_guard\ninstall_loopback_guard()\n"
        )
        full = {
            **{k: v for k, v in os.environ.items() if k not in UNSET_ENV},
            **self.env,
            "PYTHONPATH": os.pathsep.join([str(guard), str(TESTS), str(SRC)]),
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        full.pop("TIECHECK_DEBUG", None)
        full.pop("TIECHECK_HUB_TIMEOUT", None)
        return full | env

    def serve_all(self, repos: dict[str, Path]) -> None:
        s = self.server
        s.add_repo("org/dup", repos["dup"])
        s.add_repo("org/diverged", repos["diverged"])
        s.add_repo("org/dedup", repos["dedup"], branches={"v1": repos["v1"]})
        s.add_repo("org/untied", repos["untied"])
        s.add_repo("org/missing-head", repos["missing-head"])
        s.add_repo("org/big-header", repos["big-header"])
        s.add_repo("org/nested", repos["nested"])
        s.add_repo("org/bin", repos["bin"])
        s.add_repo("org/empty", repos["empty"])
        s.add_repo("org/private", repos["dup"], private=True, tokens={"hf_reader"})
        s.add_repo("org/gated", repos["dup"], gated=True, tokens={"hf_accepted"})
        s.add_repo("org/nested-shards", repos["nested-shards"])


def _point_library_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> dict:
    """Environment plus the constants huggingface_hub computed from it at import time."""
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    env = hub_environment(endpoint, home)
    for key in UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    patches = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
        "HF_HOME": str(home),
        "HF_HUB_CACHE": env["HF_HUB_CACHE"],
        "HUGGINGFACE_HUB_CACHE": env["HF_HUB_CACHE"],
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": env["HF_XET_CACHE"],
        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"],
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    close_session()  # a fresh httpx client: no pooled connection to an earlier server
    return env


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repos: dict[str, Path]) -> Iterator[Hub]:
    from huggingface_hub.utils import close_session

    server = HubServer().start()
    home = tmp_path / "hf-home"
    env = _point_library_at(monkeypatch, server.endpoint, home)
    h = Hub(server, home, env)
    h.serve_all(repos)
    try:
        with loopback_only():
            yield h
    finally:
        server.stop()
        close_session()


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------------------------------------
# comparing reports


def summary(report: Any) -> dict[str, Any]:
    """Everything a report says about the checkpoint, without where it was read from."""
    return {
        "kind": report.checkpoint.kind,
        "verdict": report.verdict,
        "declared": (report.declared.tied, report.declared.source),
        "findings": [(f.code, f.severity, f.keys, f.file, f.message) for f in report.findings],
        "groups": [
            (g.kind, g.state, g.declared, g.stored_members, g.max_abs_diff)
            for g in report.tie_groups
        ],
        "duplicates": report.duplicates,
        "tensors": sorted(
            (t.name, t.file, t.dtype, t.shape, t.span) for t in report.checkpoint.tensors
        ),
        "files": sorted(report.checkpoint.files),
        "unreadable": sorted(report.checkpoint.unreadable),
        "bytes_read": report.bytes_read,
    }


@functools.cache
def header_end(path: Path) -> int:
    return read_header(path).data_start


def check_transfers(hub: Hub, repo_id: str, folder: Path, report: Any, *, no_data: bool) -> None:
    """What the server sent for one inspection: headers, then only candidate tensor ranges."""
    reads = [r for r in hub.server.file_reads(repo_id) if r.file.endswith(".safetensors")]
    assert reads, "no weight bytes were read"
    candidates: dict[str, list[tuple[int, int]]] = {}
    for t in comparison_plan_tensors(report):
        candidates.setdefault(t.file, []).append((t.span.start, t.span.end))
    for spans in candidates.values():
        spans.sort()
    header_bytes = data_bytes = 0
    per_file: dict[str, list[tuple[int, int]]] = {}
    for r in reads:
        assert r.span is not None
        start, end = r.span
        end_of_header = header_end(folder / r.file)
        per_file.setdefault(r.file, []).append(r.span)
        if start < end_of_header:  # a header read: the first 64 KiB, or the rest of the header
            assert end <= max(FIRST_READ, end_of_header), r
            assert start in (0, FIRST_READ), r
            header_bytes += end - start
            continue
        assert not no_data, f"tensor bytes read with no_data: {r}"
        assert end - start <= CHUNK_BYTES
        spans = candidates.get(r.file, [])
        i = bisect.bisect_right(spans, (start, float("inf"))) - 1
        assert i >= 0 and end <= spans[i][1], f"read outside every candidate tensor: {r}"
        data_bytes += end - start
    for name, served in per_file.items():
        size = (folder / name).stat().st_size
        covered = union_length(served)
        assert covered < size or size <= FIRST_READ, f"{name}: the whole shard was transferred"
        if no_data:
            assert covered <= max(FIRST_READ, header_end(folder / name))
    assert data_bytes == report.bytes_read
    if no_data:
        assert report.bytes_read == 0
    small = sum(
        r.body_bytes for r in hub.server.file_reads(repo_id) if not r.file.endswith(".safetensors")
    )
    assert report.bytes_transferred == header_bytes + data_bytes + small


def union_length(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for start, end in sorted(spans):
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def comparison_plan_tensors(report: Any) -> list[Any]:
    return [t for group in comparison_plan(report.checkpoint.tensors) for t in group]


# ---------------------------------------------------------------------------------------------
# remote findings == local findings, and the bytes that moved


@pytest.mark.parametrize(
    "name", ["dup", "diverged", "dedup", "untied", "missing-head", "big-header", "nested-shards"]
)
@pytest.mark.parametrize("no_data", [False, True], ids=["data", "no-data"])
def test_remote_matches_local(hub: Hub, repos: dict[str, Path], name: str, no_data: bool) -> None:
    local = tiecheck.inspect(repos[name], no_data=no_data)
    hub.server.clear_log()
    remote = tiecheck.inspect(f"org/{name}", no_data=no_data)
    assert remote.checkpoint.origin == "hub"
    assert summary(remote) == summary(local)
    check_transfers(hub, f"org/{name}", repos[name], remote, no_data=no_data)


def test_duplicate_head_streams_exactly_the_two_copies(hub: Hub, repos: dict[str, Path]) -> None:
    """Sampling separates every other candidate; only the identical pair is read in full."""
    report = tiecheck.inspect("org/dup")
    assert "TC103" in {f.code for f in report.findings}
    heavy: dict[str, int] = {}
    tensors = {(t.file, t.span.start): t for t in report.checkpoint.tensors}
    for r in hub.server.file_reads("org/dup"):
        for (file, start), t in tensors.items():
            if r.file == file and r.span and start <= r.span[0] < t.span.end:
                heavy[t.name] = heavy.get(t.name, 0) + r.body_bytes
    full = {n for n, sent in heavy.items() if sent >= VOCAB * HIDDEN * 4}
    assert full == {"model.embed_tokens.weight", "lm_head.weight"}


def test_index_with_shards_in_a_folder_and_hostile_names(hub: Hub) -> None:
    report = tiecheck.inspect("org/nested-shards", no_data=True)
    codes = {f.code for f in report.findings}
    assert {"TC001", "TC003"} <= codes  # '..' refused, missing shard reported
    assert sorted(report.checkpoint.files) == [
        "shards/model-00001-of-00002.safetensors",
        "shards/model-00002-of-00002.safetensors",
    ]
    assert not any("secret" in r.path or "00009" in r.path for r in hub.server.log)


def test_header_longer_than_first_read_takes_two_requests(hub: Hub, repos: dict[str, Path]) -> None:
    end = header_end(repos["big-header"] / "model.safetensors")
    assert end > FIRST_READ
    tiecheck.inspect("org/big-header", no_data=True)
    spans = [r.span for r in hub.server.file_reads("org/big-header") if r.file != "config.json"]
    assert spans == [(0, FIRST_READ), (FIRST_READ, end)]


def test_no_data_cost_does_not_grow_with_the_weights(hub: Hub, tmp_path: Path) -> None:
    """Sparse shards 10x apart in size: the same kilobytes per shard go over the wire."""
    sent = []
    for scale, repo_id in ((1, "org/sparse-small"), (10, "org/sparse-large")):
        folder = tmp_path / repo_id.split("/")[1]
        folder.mkdir()
        weight_map = {}
        for k in range(4):
            shard = f"model-{k + 1:05d}-of-00004.safetensors"
            n = 512 * scale
            header = {"__metadata__": {"format": "pt"}}
            offset = 0
            for j in range(8):
                key = f"model.layers.{k * 8 + j}.mlp.weight"
                size = n * 1024 * 2
                header[key] = {
                    "dtype": "BF16",
                    "shape": [n, 1024],
                    "data_offsets": [offset, offset + size],
                }
                weight_map[key] = shard
                offset += size
            raw = json.dumps(header).encode()
            raw += b" " * (-len(raw) % 8)
            with (folder / shard).open("wb") as f:
                f.write(len(raw).to_bytes(8, "little") + raw)
                f.truncate(8 + len(raw) + offset)
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
        write_config(folder, **UNTIED)
        hub.server.add_repo(repo_id, folder)
        hub.server.clear_log()
        report = tiecheck.inspect(repo_id, no_data=True)
        weights = sum(f.size for f in report.checkpoint.files.values())
        assert report.bytes_read == 0
        per_shard = [
            r.body_bytes for r in hub.server.file_reads(repo_id) if r.file.endswith(".safetensors")
        ]
        assert len(per_shard) == 4 and max(per_shard) <= FIRST_READ
        sent.append((weights, report.bytes_transferred))
    (small_w, small_t), (large_w, large_t) = sent
    assert large_w > 9 * small_w
    assert abs(large_t - small_t) < 64  # only the digits of the offsets differ


# ---------------------------------------------------------------------------------------------
# spellings, revisions, subfolders, local paths


def test_source_spellings(hub: Hub, repos: dict[str, Path]) -> None:
    ep = hub.endpoint
    commit = hub.server.commit("org/dedup", "v1")
    main = summary(tiecheck.inspect(repos["dedup"]))
    v1 = summary(tiecheck.inspect(repos["v1"]))
    nested = summary(tiecheck.inspect(repos["nested"] / "sub"))
    cases = {
        "org/dedup": main,
        "org/dedup@v1": v1,
        f"org/dedup@{commit}": v1,
        "hf://org/dedup": main,
        "hf://org/dedup@v1": v1,
        "hf://models/org/dedup@v1": v1,
        "hf://org/nested/sub": nested,
        "hf://org/nested@main/sub": nested,
        f"{ep}/org/dedup": main,
        f"{ep}/org/dedup/tree/v1": v1,
        f"{ep}/org/nested/tree/main/sub": nested,
        f"{ep}/org/nested/blob/main/sub/model.safetensors": nested,
        "https://huggingface.co/org/dedup": main,  # read through HF_ENDPOINT, like the library
    }
    for source, expected in cases.items():
        report = tiecheck.inspect(source)
        assert report.checkpoint.origin == "hub", source
        assert summary(report) == expected, source
    assert summary(tiecheck.inspect("org/dedup", revision="v1")) == v1


def test_parse_hub_source() -> None:
    assert parse_hub_source("org/name@v2") == parse_hub_source("hf://org/name@v2")
    ref = parse_hub_source("hf://org/name@refs/pr/3/sub/dir")
    assert (ref.repo_id, ref.revision, ref.subfolder) == ("org/name", "refs/pr/3", "sub/dir")
    ref = parse_hub_source("https://huggingface.co/org/name/blob/main/x/model.safetensors")
    assert (ref.subfolder, ref.filename) == ("x", "model.safetensors")
    assert parse_hub_source("./org/name") is None
    assert parse_hub_source("org/name/extra") is None
    assert parse_hub_source("https://example.com/org/name") is None
    with pytest.raises(SourceError, match="dataset"):
        parse_hub_source("hf://datasets/org/data")
    with pytest.raises(SourceError):
        parse_hub_source("hf://single-segment")


def test_revision_given_twice_is_refused(hub: Hub) -> None:
    with pytest.raises(SourceError, match="revision given twice"):
        tiecheck.inspect("org/dedup@v1", revision="main")


def test_local_path_wins_over_repo_id(
    hub: Hub, repos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    single(work / "org" / "dup", arrays(11, "diverged"), TIED)
    monkeypatch.chdir(work)
    hub.server.clear_log()
    report = tiecheck.inspect("org/dup")
    assert report.checkpoint.origin == "local"
    assert "TC102" in {f.code for f in report.findings}  # the local diverged copy, not the repo
    assert hub.server.log == []
    # a local path that does not exist is not silently turned into a repo either
    with pytest.raises(SourceError, match="no such"):
        tiecheck.inspect("./org/nothing")


# ---------------------------------------------------------------------------------------------
# authentication


def test_private_repo_with_token(
    hub: Hub, repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    local = summary(tiecheck.inspect(repos["dup"]))
    assert summary(tiecheck.inspect("org/private", token="hf_reader")) == local
    assert all(r.authorized for r in hub.server.log if r.kind in ("api", "resolve"))
    # the CDN redirect target is signed: the token must not travel there
    cdn = [r for r in hub.server.log if r.kind == "cdn"]
    assert cdn and not any(r.authorized for r in cdn)
    monkeypatch.setenv("HF_TOKEN", "hf_reader")
    assert summary(tiecheck.inspect("org/private")) == local


def test_gated_repo_with_accepted_token(hub: Hub, repos: dict[str, Path]) -> None:
    local = summary(tiecheck.inspect(repos["dup"]))
    assert summary(tiecheck.inspect("org/gated", token="hf_accepted")) == local


# ---------------------------------------------------------------------------------------------
# errors: one line each, from the library and from the command line


ERRORS = {
    "org/nope": "repository not found",
    "org/private": "repository not found",
    "org/gated": "gated repository",
    "org/dedup@no-such-branch": "revision 'no-such-branch' not found",
    "org/empty": "no weights found in this repository",
    "org/bin": "pickles must be downloaded to be inspected",
    "hf://org/dedup/no/such/folder": "no such file or folder in the repository",
}


@pytest.mark.parametrize("source", list(ERRORS))
def test_errors_from_the_library(hub: Hub, source: str) -> None:
    with pytest.raises(SourceError) as info:
        tiecheck.inspect(source)
    message = str(info.value)
    assert ERRORS[source] in message
    assert "\n" not in message


def test_no_weights_names_the_folders(hub: Hub) -> None:
    with pytest.raises(
        SourceError, match=r"it has model folders \(sub\): inspect one as hf://org/nested/sub"
    ):
        tiecheck.inspect("org/nested")


def test_wrong_token_errors(hub: Hub) -> None:
    with pytest.raises(SourceError, match="cannot read it"):
        tiecheck.inspect("org/private", token="hf_wrong")
    with pytest.raises(SourceError, match="has not been granted access"):
        tiecheck.inspect("org/gated", token="hf_wrong")


def test_unreachable_hub(hub: Hub) -> None:
    hub.server.stop()
    with pytest.raises(SourceError, match=r"cannot reach the Hub at http://127\.0\.0\.1") as info:
        tiecheck.inspect("org/dedup")
    assert "\n" not in str(info.value)


def test_failure_while_comparing_is_a_finding(hub: Hub) -> None:
    """Headers read, then the CDN refuses tensor ranges: TC001, not a crash or a hang."""
    hub.server.state.fault = lambda r: (
        403 if r.kind == "cdn" and r.range and not r.range.startswith("bytes=0-") else None
    )
    report = tiecheck.inspect("org/dup")
    assert any(
        f.code == "TC001" and "cannot read tensor data" in f.message for f in report.findings
    )


def test_pickle_repo_needs_download(hub: Hub, repos: dict[str, Path]) -> None:
    with pytest.raises(SourceError, match=r"pytorch_model\.bin, .*--download"):
        tiecheck.inspect("org/bin")
    assert not any(r.file and r.file.endswith(".bin") for r in hub.server.log)
    report = tiecheck.inspect("org/bin", download=True)
    assert report.checkpoint.origin == "hub-cache"
    assert summary(report) == summary(tiecheck.inspect(repos["bin"]))
    fetched = {r.file for r in hub.server.file_reads("org/bin")}
    assert fetched == {"pytorch_model.bin", "config.json"}  # never extra/pytorch_model.bin
    blobs = list((hub.home / "hub" / "models--org--bin" / "blobs").iterdir())
    assert len(blobs) == 2


def _cli(hub: Hub, *args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen:
    """``python -m tiecheck`` in a child, pointed at the server, with the loopback guard."""
    return subprocess.Popen(
        [sys.executable, "-m", "tiecheck", "inspect", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hub.child_env(**env),
        cwd=cwd or hub.home.parent,
    )


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_errors_from_the_cli(hub: Hub) -> None:
    closed = HubServer().start()
    closed_endpoint = closed.endpoint
    closed.stop()
    cases = [(source, expected, {}) for source, expected in ERRORS.items()]
    cases += [
        ("org/dedup", "cannot reach the Hub", {"HF_ENDPOINT": closed_endpoint}),
        ("org/dedup", "HF_HUB_OFFLINE is set", {"HF_HUB_OFFLINE": "1"}),
    ]
    procs = [(_cli(hub, source, "-q"), expected) for source, expected, env in cases[:-2]]
    procs += [(_cli(hub, s, "-q", **env), expected) for s, expected, env in cases[-2:]]
    for proc, expected in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (proc.args, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], err
        assert lines[0].startswith("tiecheck: error:"), err
        assert "Traceback" not in err


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_nothing_leaves_loopback(hub: Hub) -> None:
    """The guard is on, in this process and in the CLI children."""
    import socket

    from hub_server import NonLoopbackConnection

    with pytest.raises(NonLoopbackConnection):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(NonLoopbackConnection):
        socket.getaddrinfo("huggingface.co", 443)
    proc = _cli(hub, "org/dedup", "-q", HF_ENDPOINT="https://huggingface.co")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "tried to resolve 'huggingface.co'" in err


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_cli_reads_hf_token_and_reports(hub: Hub, repos: dict[str, Path]) -> None:
    proc = _cli(hub, "org/private", "--json", "-q", HF_TOKEN="hf_reader")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reports = json.loads(out)["reports"]
    text = json.dumps(reports)
    assert "TC103" in text


# ---------------------------------------------------------------------------------------------
# the cache and offline mode


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_cached_snapshot_is_used_offline(
    hub: Hub, repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import snapshot_download

    local = summary(tiecheck.inspect(repos["dup"]))
    snapshot_download("org/dup")
    hub.server.stop()
    hub.server.clear_log()
    report = tiecheck.inspect("org/dup")  # server gone, not offline: unreachable, the cache answers
    assert report.checkpoint.origin == "hub-cache"
    assert summary(report) == local
    offline(monkeypatch)
    report = tiecheck.inspect("org/dup")
    assert report.checkpoint.origin == "hub-cache"
    assert summary(report) == local
    assert hub.server.log == []
    proc = _cli(hub, "org/dup", "--json", "-q", HF_HUB_OFFLINE="1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "TC103" in out


def test_cached_revision_and_subfolder(
    hub: Hub, repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download("org/dedup", revision="v1")
    snapshot_download("org/nested")
    hub.server.stop()
    offline(monkeypatch)
    assert summary(tiecheck.inspect("org/dedup@v1")) == summary(tiecheck.inspect(repos["v1"]))
    nested = tiecheck.inspect("hf://org/nested/sub")
    assert summary(nested) == summary(tiecheck.inspect(repos["nested"] / "sub"))
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE"):
        tiecheck.inspect("org/dedup")  # main was never downloaded


def test_partial_cache_is_not_mistaken_for_a_snapshot(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote inspection caches config and index only; offline, that is not enough."""
    tiecheck.inspect("org/dup", no_data=True)
    offline(monkeypatch)
    with pytest.raises(SourceError, match="does not hold this revision's weights"):
        tiecheck.inspect("org/dup")


def test_downloaded_pickles_are_used_offline(
    hub: Hub, repos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiecheck.inspect("org/bin", download=True)
    hub.server.stop()
    offline(monkeypatch)
    report = tiecheck.inspect("org/bin")
    assert report.checkpoint.origin == "hub-cache"
    assert summary(report) == summary(tiecheck.inspect(repos["bin"]))


def test_remote_inspection_uses_only_the_metadata_endpoints(hub: Hub) -> None:
    """model-info, tree and /resolve/ (HEAD for small files, ranged GETs for weights)."""
    tiecheck.inspect("org/dup")
    routes = set()
    for r in hub.server.log:
        parts = r.path.strip("/").split("/")
        route = parts[4] if r.kind == "api" and len(parts) > 4 else "info"
        routes.add((r.method, r.kind, route if r.kind == "api" else ""))
    assert routes <= {
        ("GET", "api", "info"),
        ("GET", "api", "revision"),
        ("GET", "api", "tree"),
        ("HEAD", "resolve", ""),
        ("GET", "resolve", ""),
        ("GET", "cdn", ""),
    }
    weights = [r for r in hub.server.log if r.kind == "cdn"]
    assert weights and all(r.range for r in weights)  # weights: range requests only


# ---------------------------------------------------------------------------------------------
# the committed fixtures, served as repos: same findings remotely


def _fixture_cases() -> list[str]:
    if not (FIXTURES / "README.md").is_file():
        return []
    return sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("case", _fixture_cases())
def test_fixture_remote_matches_local(hub: Hub, case: str) -> None:
    """Every committed fixture, served as a repo (pickles with download=True)."""
    folder = FIXTURES / case
    sub = ""
    if not any(p.is_file() for p in folder.iterdir()):  # e.g. peft-adapter: adapter/, base/
        sub = sorted(p.name for p in folder.iterdir() if p.is_dir())[0]
    hub.server.add_repo(f"fixtures/{case}", folder)
    source = f"hf://fixtures/{case}/{sub}".rstrip("/")
    try:
        local = summary(tiecheck.inspect(folder / sub))
    except SourceError:
        with pytest.raises(SourceError):
            tiecheck.inspect(source, download=True)
        return
    remote = tiecheck.inspect(source, download=True)
    assert remote.checkpoint.origin in ("hub", "hub-cache")
    assert summary(remote) == local


# ---------------------------------------------------------------------------------------------
# the CLI's Hub options, the report's transfer fields, and fix on a repo id


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_cli_revision_option_and_transfer_fields(hub: Hub, repos: dict[str, Path]) -> None:
    """--revision picks the branch; the JSON report says where the bytes came from and how
    many moved, and that count is what the server sent."""
    before = hub.server.bytes_sent()
    proc = _cli(hub, "org/dedup", "--revision", "v1", "--json", "-q")
    out, err = proc.communicate(timeout=60)
    report = only_report(json.loads(out))
    local = tiecheck.inspect(repos["v1"])
    assert proc.returncode == (1 if local.fails(tiecheck.Severity.ERROR) else 0), err
    assert report["source"]["origin"] == "hub"
    assert sorted(f["code"] for f in report["findings"]) == sorted(f.code for f in local.findings)
    assert report["bytes_transferred"] > 0
    assert report["bytes_transferred"] <= hub.server.bytes_sent() - before
    local_json = only_report(
        json.loads(
            subprocess.run(
                [sys.executable, "-m", "tiecheck", "inspect", str(repos["v1"]), "--json", "-q"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        )
    )
    assert local_json["source"]["origin"] == "local"
    assert local_json["bytes_transferred"] is None


@pytest.mark.slow  # a child process per run: HF_HOME is read at import
def test_cli_download_option_reads_pickles(hub: Hub, repos: dict[str, Path]) -> None:
    refused = _cli(hub, "org/bin", "-q")
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2 and "--download" in err
    proc = _cli(hub, "org/bin", "--download", "--json", "-q")
    out, err = proc.communicate(timeout=60)
    report = only_report(json.loads(out))
    assert report["source"]["origin"] == "hub-cache"
    assert report["bytes_transferred"] >= (repos["bin"] / "pytorch_model.bin").stat().st_size
    assert {f["code"] for f in report["findings"]} == {
        f.code for f in tiecheck.inspect(repos["bin"]).findings
    }


def test_fix_on_a_repo_id_downloads_then_writes_to_output(
    hub: Hub, repos: dict[str, Path], tmp_path: Path
) -> None:
    """fix fetches what it reads into the cache, writes -o, and refuses --in-place."""
    with pytest.raises(SourceError, match="--in-place is refused"):
        tiecheck.fix("org/dup", to="tied", in_place=True)
    out = tmp_path / "fixed"
    result = tiecheck.fix("org/dup", to="tied", output=out)
    assert result.after is not None and result.after.verdict.value == "tied"
    assert not [f for f in result.after.findings if f.code in ("TC103", "TC112")]
    assert (out / "config.json").is_file()
    # the cache holds the source snapshot, and its blobs were not touched by the rewrite
    cache = Path(hub.env["HF_HUB_CACHE"])
    blobs = [p for p in cache.rglob("blobs/*") if p.is_file()]
    assert blobs
    for shard in repos["dup"].glob("*.safetensors"):
        assert any(b.read_bytes() == shard.read_bytes() for b in blobs), shard.name
