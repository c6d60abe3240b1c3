"""Inputs that are large in count, not in bytes: thousands of shards, tens of thousands of names.

Each runs the real command line in a child process with a generous bound where the bug took
minutes or crashed: one descriptor per shard (EMFILE under ``ulimit -n 256``), one scan of all
names per matched name (quadratic), every duplicate set tested against every tie group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tiecheck
from core_helpers import LLAMA, examples, save_numpy, write_config, write_index
from hostile_helpers import run_bounded
from tiecheck.analysis.families import every_family
from tiecheck.analysis.groups import _Names

# -- descriptors ------------------------------------------------------------------------------

SHARDS = 1200
"""Well above the 256 descriptors the child may open."""


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama folder of one-tensor shards whose head is a copy of its embedding, untied."""
    folder = tmp_path_factory.mktemp("shards")
    g = np.random.default_rng(0)
    embedding = g.standard_normal((64, 16)).astype(np.float32)
    arrays = {"model.embed_tokens.weight": embedding, "lm_head.weight": embedding.copy()}
    for i in range(SHARDS - 2):  # one shape, so every one of them is compared
        arrays[f"model.layers.{i}.mlp.weight"] = g.standard_normal((64, 16)).astype(np.float32)
    weight_map = {}
    for i, (name, array) in enumerate(arrays.items()):
        shard = f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors"
        save_numpy(folder / shard, {name: array})
        weight_map[name] = shard
    write_index(folder, weight_map, sum(a.nbytes for a in arrays.values()))
    write_config(folder, **LLAMA, tie_word_embeddings=False)
    return folder


@pytest.mark.slow
def test_inspecting_thousands_of_shards_under_a_256_descriptor_limit(
    many_shards: Path, tmp_path: Path
) -> None:
    run = run_bounded(
        "inspect", many_shards, "--json", "-q", workdir=tmp_path, max_files=256, timeout=120
    )
    assert "Too many open files" not in run.stderr
    assert run.code == 0, run.stderr
    doc = run.report()
    assert doc["data_compared"] is True
    assert doc["bytes_read"] >= SHARDS * 64 * 16 * 4  # every tensor read: all one shape
    assert [f["code"] for f in doc["findings"]] == ["TC105"]  # the head is an identical copy
    assert run.seconds < 60


@pytest.mark.slow
def test_fixing_thousands_of_shards_under_a_256_descriptor_limit(
    many_shards: Path, tmp_path: Path
) -> None:
    """fix copies every tensor (``copy_file_range`` from a pinned descriptor) and verifies it
    (``TensorData.blocks``), one shard after another."""
    out = tmp_path / "out"
    run = run_bounded(
        "fix", many_shards, "--to", "tied", "-o", out, workdir=tmp_path / "run", max_files=256
    )
    assert "Too many open files" not in run.stderr
    assert run.code == 0, run.stderr
    assert len(list(out.glob("*.safetensors"))) == SHARDS - 1  # the head's shard is gone
    weight_map = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert "lm_head.weight" not in weight_map
    assert len(weight_map) == SHARDS - 1
    after = tiecheck.inspect(out, expect="tied")
    assert after.verdict.value == "tied"
    assert {f.code for f in after.findings if f.severity.value != "info"} == set()


# -- tens of thousands of names ---------------------------------------------------------------

NAMES = 40_000
BOUND = 45.0
"""Seconds for 40,000 names. Before the fix, a mix of registry names took 45 s (82 s with
data) and phi's layer-numbered heads over 10 minutes; now each takes a few seconds to inspect,
plus several more for the child to render tens of thousands of groups and findings as JSON,
on a CI machine that may be shared."""

EMBEDDINGS = [
    "layers.{}.model.embed_tokens.weight",  # Llama's, under a prefix per layer
    "x.{}.transformer.wte.weight",  # GPT-2's
    "m.{}.word_embeddings.weight",  # BLOOM's short form
    "t.{}.shared.weight",  # T5's, with encoder/decoder aliases expected
    "x.{}.layers.0.wte.weight",  # phi MixFormer: head 'layers.#.linear.weight' per prefix
    "x.{}.layers.1.linear.weight",
    "y.{}.layers.0.wte.weight",
    "y.{}.layers.1.linear.weight",
]
"""Pairs in turn hold identical values: (Llama, GPT-2) and (BLOOM, T5) pairs are in no group
together, so thousands of identical sets must each be told apart from tens of thousands of
groups; the phi pairs are their group's embedding and head."""
REGISTRY_EMBEDDINGS = 6
"""Patterns above that a registry layout matches, one group each per prefix."""


def names_file(folder: Path, patterns: list[str]) -> Path:
    """``NAMES`` tiny tensors named after ``patterns`` in turn; pairs hold identical values,
    so with data there are thousands of identical sets to explain."""
    names = [patterns[i % len(patterns)].format(i // len(patterns)) for i in range(NAMES)]
    tensors = {n: np.full((2, 2), i // 2, dtype=np.float32) for i, n in enumerate(names)}
    return save_numpy(folder / "model.safetensors", tensors)


@pytest.mark.slow
@pytest.mark.parametrize("data", [False, True], ids=["no-data", "data"])
@pytest.mark.parametrize(
    ("patterns", "groups"),
    [
        (EMBEDDINGS, NAMES // len(EMBEDDINGS) * REGISTRY_EMBEDDINGS),
        # GGUF's head name 'output.weight' under 40,000 prefixes: with no declared family a
        # layout only counts unprefixed (a layer's attention output is not a head), so none
        (["blk.{}.output.weight"], 0),
        # phi's layer-numbered head: every name matches, one prefix, one group (its last layer)
        (["layers.{}.linear.weight"], 1),
    ],
    ids=["embeddings", "gguf-heads", "phi-heads"],
)
def test_tens_of_thousands_of_embedding_and_head_names(
    tmp_path: Path, patterns: list[str], groups: int, data: bool
) -> None:
    path = names_file(tmp_path, patterns)
    args = ["inspect", path, "--json", "-q", *([] if data else ["--no-data"])]
    run = run_bounded(*args, workdir=tmp_path / "run", timeout=600)
    assert run.code in (0, 1), run.stderr
    doc = run.report()
    assert len(doc["tie_groups"]) == groups
    if data:
        assert len(doc["duplicates"]) == NAMES // 2  # the identical pairs
    else:
        assert doc["duplicates"] is None
    assert run.seconds < BOUND


# -- what the indexes must keep meaning -------------------------------------------------------


def test_a_layer_numbered_head_pattern_gives_one_group_per_prefix(tmp_path: Path) -> None:
    """phi MixFormer stores its head as the last ``layers.N.linear.weight``: without an
    embedding, each prefix is one group with its last layer, not one group per layer."""
    names = [f"{p}layers.{i}.linear.weight" for p in ("", "a.") for i in range(12)]
    save_numpy(tmp_path / "model.safetensors", {n: np.zeros((4, 4), np.float32) for n in names})
    write_config(tmp_path, model_type="phi-msft")
    report = tiecheck.inspect(tmp_path, no_data=True)
    heads = sorted(g.group.names[-1] for g in report.tie_groups)
    assert heads == ["a.layers.11.linear.weight", "layers.11.linear.weight"]
    assert {f.code for f in report.findings} >= {"TC104"}


def test_nested_weight_names_belong_to_their_nearest_weight(tmp_path: Path) -> None:
    """A side-car ``X.weight.<rest>`` hangs off its last ``.weight``: a chain of 1,500 nested
    embedding-like names gives each member one side-car, not all the names below it (which
    was quadratic in count and cubic in bytes)."""
    chain = [".".join(["embed.weight"] * i) for i in range(1, 1501)]
    save_numpy(tmp_path / "model.safetensors", {n: np.zeros((2, 2), np.float32) for n in chain})
    report = tiecheck.inspect(tmp_path, no_data=True)
    sidecars = {m.name: m.sidecars for g in report.tie_groups for m in g.group.members}
    assert sidecars["embed.weight"] == {".weight.embed.weight": "embed.weight.embed.weight"}
    assert sum(len(s) for s in sidecars.values()) < 2 * len(chain)


REGISTRY_PATTERNS = sorted(
    {
        p
        for f in every_family()
        for layout in f.layouts
        for p in (layout.embedding, layout.head, *layout.aliases)
    }
)


def _scan(pattern: str, names: set[str]) -> list[tuple[str, str]]:
    """The plain way the index replaces: one anchored regex tried on every name."""
    body = re.escape(pattern).replace(r"\#", r"\d+")
    regex = re.compile(f"^(?P<prefix>(?:.+\\.)?){body}$")
    return [(m["prefix"], n) for n in sorted(names) if (m := regex.match(n))]


COMPONENTS = ["model", "layers", "0", "7", "12", "wte", "weight", "lm_head", "", "embed_tokens"]
COMPONENTS += ["linear", "shared", "x", "\u0663", "output"]  # U+0663: a digit to regexes, not ASCII


@settings(max_examples=examples(200), deadline=None)
@given(
    st.sets(
        st.lists(
            st.sampled_from(COMPONENTS),
            min_size=1,
            max_size=6,
        ).map(".".join),
        max_size=40,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(REGISTRY_PATTERNS),
            st.sampled_from(["", "p.", "a.1.", "."]),
            st.integers(0, 30),
        ),
        max_size=12,
    ),
)
def test_the_name_index_finds_what_a_regex_scan_finds(
    junk: set[str], placed: list[tuple[str, str, int]]
) -> None:
    """Names with any prefix, layer numbers, empty components: the same matches, in the same
    order, and the same expected head per prefix as scanning every name."""
    names = junk | {prefix + p.replace("#", str(n)) for p, prefix, n in placed}
    index = _Names(frozenset(names))
    for pattern in REGISTRY_PATTERNS:
        found = _scan(pattern, names)
        assert index.matches(pattern) == found
        for prefix in {p for p, _ in found} | {""}:
            under = [n for p, n in found if p == prefix]
            last = max(under, key=lambda n: (len(n), n)) if under else prefix + pattern
            assert index.expected(pattern, prefix) == (last if "#" in pattern else prefix + pattern)
