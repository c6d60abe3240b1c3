"""Which files a source means (as loaders choose them), and whether an index agrees with its
shards. Expected sizes are computed from the arrays written, not taken from tiecheck."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import (
    LLAMA,
    QWEN2,
    codes,
    decoder_arrays,
    findings_with,
    model_folder,
    payload_bytes,
    save_numpy,
    serious,
    write_config,
    write_index,
)
from tiecheck.errors import SourceError
from tiecheck.model import SourceKind
from tiecheck.readers.discover import plan_source
from tiecheck.readers.safetensors_format import read_header


def shard(folder: Path, tensors: dict[str, np.ndarray], names: list[str], file: str) -> dict:
    save_numpy(folder / file, {n: tensors[n] for n in names})
    return dict.fromkeys(names, file)


def sharded_model(folder: Path, seed: int = 0, config: dict | None = None) -> dict:
    """Three shards of an untied Llama; returns the tensors written."""
    tensors = decoder_arrays(seed)
    names = list(tensors)
    weight_map = {}
    for i, part in enumerate((names[:3], names[3:5], names[5:]), 1):
        weight_map.update(shard(folder, tensors, part, f"model-{i:05d}-of-00003.safetensors"))
    write_index(folder, weight_map, payload_bytes(tensors.values()))
    write_config(folder, **(config or {**LLAMA, "tie_word_embeddings": False}))
    return tensors


# -- discovery -------------------------------------------------------------------------------------


def test_both_formats_reads_safetensors_and_says_so(fixtures_dir: Path) -> None:
    report = tiecheck.inspect(fixtures_dir / "both-formats")
    assert list(report.checkpoint.files) == ["model.safetensors"]
    assert any("pytorch_model.bin" in n and "not read" in n for n in report.notes)
    # the stale .bin beside it has a diverged head; it is not what loaders use, so not judged
    assert "TC102" not in codes(report)
    assert report.verdict.value == "tied"


def test_single_file_wins_over_an_index_beside_it(tmp_path: Path) -> None:
    tensors = decoder_arrays(1, head=None)
    model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    write_index(tmp_path, dict.fromkeys(tensors, "model.safetensors"), 0)
    plan = plan_source(str(tmp_path))
    assert plan.kind is SourceKind.SAFETENSORS_FILE
    assert plan.index is None
    assert any("model.safetensors.index.json" in n for n in plan.notes)
    # the index's wrong total_size is not judged: the index is not what gets loaded
    assert "TC007" not in codes(tiecheck.inspect(tmp_path))


def test_folder_index_file_and_shard_as_sources(tmp_path: Path) -> None:
    tensors = sharded_model(tmp_path)
    by_folder = tiecheck.inspect(tmp_path)
    by_index = tiecheck.inspect(tmp_path / "model.safetensors.index.json")
    for report in (by_folder, by_index):
        assert report.checkpoint.kind is SourceKind.SAFETENSORS_SHARDED
        assert {t.name for t in report.checkpoint.tensors} == set(tensors)
        assert report.checkpoint.config is not None
        assert serious(report) == set()
        assert report.verdict.value == "untied"
    # one shard alone would look like a model without its head or embedding (a false TC101):
    # it is read with its sibling index, and the report says so
    one = tiecheck.inspect(tmp_path / "model-00001-of-00003.safetensors")
    assert one.checkpoint.kind is SourceKind.SAFETENSORS_SHARDED
    assert {t.name for t in one.checkpoint.tensors} == set(tensors)
    assert serious(one) == set() and one.verdict.value == "untied"
    assert any("is one shard of model.safetensors.index.json" in n for n in one.notes)
    # a file named like a shard with no index beside it is read on its own
    lone = tmp_path / "lone"
    lone.mkdir()
    (tmp_path / "model-00001-of-00003.safetensors").rename(
        lone / "model-00001-of-00003.safetensors"
    )
    alone = tiecheck.inspect(lone / "model-00001-of-00003.safetensors")
    assert alone.checkpoint.kind is SourceKind.SAFETENSORS_FILE


def test_loose_safetensors_without_index_are_read_together(tmp_path: Path) -> None:
    tensors = decoder_arrays(2)
    names = list(tensors)
    save_numpy(tmp_path / "part-a.safetensors", {n: tensors[n] for n in names[:4]})
    save_numpy(tmp_path / "part-b.safetensors", {n: tensors[n] for n in names[4:]})
    report = tiecheck.inspect(tmp_path)
    assert report.checkpoint.kind is SourceKind.SAFETENSORS_SET
    assert {t.name for t in report.checkpoint.tensors} == set(tensors)
    assert any("no index file" in n for n in report.notes)


def test_several_index_files_pick_one_and_note_the_rest(tmp_path: Path) -> None:
    tensors = decoder_arrays(3)
    save_numpy(tmp_path / "weights.safetensors", tensors)
    for name in ("a.safetensors.index.json", "b.safetensors.index.json"):
        (tmp_path / name).write_text(
            json.dumps(
                {
                    "metadata": {"total_size": payload_bytes(tensors.values())},
                    "weight_map": dict.fromkeys(tensors, "weights.safetensors"),
                }
            )
        )
    plan = plan_source(str(tmp_path))
    assert plan.index is not None and plan.index.name == "a.safetensors.index.json"
    assert any("b.safetensors.index.json" in n for n in plan.notes)


def test_unusual_file_names_are_sniffed(tmp_path: Path) -> None:
    tensors = decoder_arrays(4)
    st_path = save_numpy(tmp_path / "st" / "weights.bin.dat", tensors)
    assert plan_source(str(st_path)).kind is SourceKind.SAFETENSORS_FILE
    assert {t.name for t in tiecheck.inspect(st_path).checkpoint.tensors} == set(tensors)
    torch = pytest.importorskip("torch")
    pt_path = tmp_path / "pt" / "weights.model"
    pt_path.parent.mkdir()
    torch.save({"w": torch.ones(2)}, pt_path)
    assert plan_source(str(pt_path)).kind is SourceKind.PICKLE_FILE
    assert [t.name for t in tiecheck.inspect(pt_path).checkpoint.tensors] == ["w"]


def test_a_folder_of_model_folders_names_them(tmp_path: Path) -> None:
    """An adapter beside its base, or a folder of releases: the error says which folders
    below hold a checkpoint and how to inspect them, and ignores the ones that do not."""
    top = tmp_path / "my runs"  # a space: the suggested commands are quoted for a shell
    for name in ("base", "adapter", "logs", ".git"):
        (top / name).mkdir(parents=True)
    (top / "base" / "config.json").write_text("{}")
    (top / "adapter" / "adapter_config.json").write_text("{}")
    (top / ".git" / "config.json").write_text("{}")
    (top / "logs" / "events.txt").write_text("")
    elsewhere = tmp_path / "elsewhere"  # a link out of the folder is never looked into
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    (top / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SourceError) as caught:
        tiecheck.inspect(top)
    message = str(caught.value)
    assert f"it has model folders (adapter, base): inspect one as '{top}/adapter'" in message
    assert f"or all as '{top}/*'" in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError) as caught:
        tiecheck.inspect(tmp_path / "empty")
    assert "model folders" not in str(caught.value)


def test_a_folder_of_many_model_folders_shows_a_few(tmp_path: Path) -> None:
    """Hundreds of model folders: the hint names the first few (sorted among those seen)
    and says there are more, instead of a line per folder."""
    from tiecheck.readers.discover import HINT_SCAN, HINT_SHOWN

    top = tmp_path / "many"
    for i in range(HINT_SCAN + 50):
        (top / f"m{i:04}").mkdir(parents=True)
        (top / f"m{i:04}" / "model.safetensors").write_bytes(b"")
    with pytest.raises(SourceError) as caught:
        tiecheck.inspect(top)
    listed = str(caught.value).split("it has model folders (", 1)[1].split(")", 1)[0]
    assert listed.endswith(" ...")
    assert len(listed.removesuffix(" ...").split(", ")) == HINT_SHOWN


def test_unreadable_sources_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        tiecheck.inspect(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no weights found"):
        tiecheck.inspect(tmp_path / "empty")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SourceError, match="not a checkpoint"):
        tiecheck.inspect(text)
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SourceError, match="broken symbolic link"):
        tiecheck.inspect(link)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(SourceError, match="adapter_model"):
        tiecheck.inspect(adapter)


def test_adapter_folder_is_read_as_an_adapter_even_with_a_config(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "peft-adapter" / "adapter"
    plan = plan_source(str(folder))
    assert plan.kind is SourceKind.PEFT_ADAPTER
    assert plan.weights == [folder / "adapter_model.safetensors"]
    assert plan_source(str(folder / "adapter_model.safetensors")).kind is SourceKind.PEFT_ADAPTER


# -- index against shards --------------------------------------------------------------------------


def test_clean_sharded_fixtures(fixtures_dir: Path) -> None:
    for case, verdict in (
        ("sharded-safetensors", "untied"),
        ("index-single-file", "tied"),
        ("one-tensor-per-file", "tied"),
        ("sharded-bin", "untied"),
    ):
        report = tiecheck.inspect(fixtures_dir / case)
        assert report.checkpoint.index is not None, case
        assert report.findings == [], (case, report.findings)
        assert report.verdict.value == verdict, case
        index = json.loads(report.checkpoint.index.path.read_text())
        assert {t.name for t in report.checkpoint.tensors} == set(index["weight_map"]), case
        assert set(report.checkpoint.files) == set(index["weight_map"].values()), case


def test_sharded_broken_fixture_reports_every_index_problem(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "sharded-broken"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    present = {p.name for p in folder.glob("*.safetensors")}
    # what the files say, independently of tiecheck
    missing_files = set(index["weight_map"].values()) - present
    assert missing_files == {"model-00003-of-00003.safetensors"}
    stored = {name: {e.name for e in read_header(folder / name).entries} for name in present}
    listed_not_stored = sorted(
        k for k, v in index["weight_map"].items() if v in present and k not in stored[v]
    )
    stored_not_listed = sorted(
        k for v in present for k in stored[v] if k not in index["weight_map"]
    )
    in_two = sorted(k for k in stored[sorted(present)[0]] if k in stored[sorted(present)[1]])
    assert listed_not_stored == ["model.layers.1.self_attn.k_proj.weight"]
    assert stored_not_listed == ["model.layers.1.self_attn.v_proj.weight"]
    assert in_two == ["model.layers.0.input_layernorm.weight"]

    report = tiecheck.inspect(folder)
    (tc003,) = findings_with(report, "TC003")
    assert tc003.file == "model-00003-of-00003.safetensors"
    assert "2 tensors" in tc003.message  # model.norm.weight and lm_head.weight
    (tc004,) = findings_with(report, "TC004")
    assert list(tc004.keys) == listed_not_stored
    (tc005,) = findings_with(report, "TC005")
    assert list(tc005.keys) == stored_not_listed
    assert tc005.severity.value == "warning"
    (tc006,) = findings_with(report, "TC006")
    assert list(tc006.keys) == in_two
    # the head lives in the missing shard: that is TC003, not an untied model without a head
    assert "TC101" not in codes(report)
    # nor can total_size be judged while a shard is missing
    assert "TC007" not in codes(report)
    assert serious(report) == {"TC003", "TC004", "TC005", "TC006"}


def test_wrong_total_size_fixture(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "sharded-wrong-total-size"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    stored = sum(
        e.span.length for p in folder.glob("*.safetensors") for e in read_header(p).entries
    )
    assert index["metadata"]["total_size"] == stored + 4096
    report = tiecheck.inspect(folder)
    (tc007,) = findings_with(report, "TC007")
    assert tc007.details == {"declared": stored + 4096, "stored": stored}
    assert tc007.severity.value == "warning"
    assert codes(report) == {"TC007"}


@pytest.mark.parametrize("as_float", [False, True])
def test_total_size_matching_exactly_is_accepted_also_as_float(
    tmp_path: Path, as_float: bool
) -> None:
    tensors = sharded_model(tmp_path, seed=5)
    total = payload_bytes(tensors.values())
    data = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    data["metadata"]["total_size"] = float(total) if as_float else total
    data["metadata"]["total_parameters"] = sum(t.size for t in tensors.values())
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(data))
    assert codes(tiecheck.inspect(tmp_path)) == set()


def test_pickle_index_total_size_per_tensor_or_per_storage(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    emb = torch.randn(8, 4)
    parts = [
        {"model.embed_tokens.weight": emb, "lm_head.weight": emb},
        {"model.norm.weight": torch.randn(4)},
    ]
    weight_map = {}
    for i, part in enumerate(parts, 1):
        torch.save(part, tmp_path / f"pytorch_model-{i}.bin")
        weight_map.update(dict.fromkeys(part, f"pytorch_model-{i}.bin"))
    write_config(tmp_path, **QWEN2, tie_word_embeddings=True)
    per_tensor = (8 * 4 * 2 + 4) * 4
    per_storage = (8 * 4 + 4) * 4
    for total, expected in ((per_tensor, False), (per_storage, False), (per_storage + 4, True)):
        (tmp_path / "pytorch_model.bin.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
        )
        report = tiecheck.inspect(tmp_path)
        assert report.checkpoint.kind is SourceKind.PICKLE_SHARDED
        assert ("TC007" in codes(report)) is expected, total


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not an object"),
        ('{"metadata": {}}', "weight_map"),
        ('{"weight_map": {"a": 3}}', "not a file name"),
        ('{"weight_map": {}, "metadata": {"total_size": "12"}}', "not a number"),
        ('{"weight_map": {}, "metadata": {"total_size": true}}', "not a number"),
    ],
)
def test_invalid_index_is_tc001(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(content)
    report = tiecheck.inspect(tmp_path)
    (tc001,) = findings_with(report, "TC001")
    assert tc001.file == "model.safetensors.index.json"
    assert match in tc001.message


def test_duplicate_keys_in_the_index_are_tc006(tmp_path: Path) -> None:
    tensors = sharded_model(tmp_path, seed=6)
    text = (tmp_path / "model.safetensors.index.json").read_text()
    data = json.loads(text)
    first = next(iter(data["weight_map"]))
    text = text.replace(
        '"weight_map": {', f'"weight_map": {{"{first}": "model-00002-of-00003.safetensors", ', 1
    )
    (tmp_path / "model.safetensors.index.json").write_text(text)
    report = tiecheck.inspect(tmp_path)
    assert any(f.keys == (first,) for f in findings_with(report, "TC006"))
    assert {t.name for t in report.checkpoint.tensors} == set(tensors)


@pytest.mark.parametrize(
    "name", ["../outside.safetensors", "{absolute}", "sub/../../outside.safetensors"]
)
def test_shard_names_escaping_the_folder_are_never_opened(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    outside = save_numpy(tmp_path / "outside.safetensors", {"secret.weight": np.ones(3, "f4")})
    name = name.format(absolute=outside)
    assert (folder / name).resolve() == outside.resolve()  # each name does reach the file
    tensors = decoder_arrays(7)
    weight_map = shard(folder, tensors, list(tensors), "model-00001-of-00002.safetensors")
    weight_map["secret.weight"] = name
    write_index(folder, weight_map, payload_bytes(tensors.values()) + 12)
    report = tiecheck.inspect(folder)
    assert "secret.weight" not in {t.name for t in report.checkpoint.tensors}
    assert list(report.checkpoint.files) == ["model-00001-of-00002.safetensors"]
    assert any(name in f.message and f.code == "TC001" for f in report.findings)


def test_shard_that_is_not_safetensors_is_tc001_and_others_still_read(tmp_path: Path) -> None:
    tensors = sharded_model(tmp_path, seed=8)
    broken = tmp_path / "model-00002-of-00003.safetensors"
    broken.write_bytes(broken.read_bytes()[:40])
    report = tiecheck.inspect(tmp_path)
    (tc001,) = findings_with(report, "TC001")
    assert tc001.file == "model-00002-of-00003.safetensors"
    names = {t.name for t in report.checkpoint.tensors}
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    assert names == {k for k, v in index.items() if v != broken.name}
    assert names < set(tensors)
    # tensors the unreadable shard would hold are not also reported as missing
    assert "TC004" not in codes(report) and "TC007" not in codes(report)


def test_symlinked_shards_are_followed(tmp_path: Path) -> None:
    # the Hugging Face cache layout: snapshots/<revision>/ files are symlinks into blobs/, the
    # one place outside a model folder a shard may lead (tests/corpus has links elsewhere)
    repo = tmp_path / "models--org--name"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / ("0" * 40)
    tensors = sharded_model(blobs, seed=9)
    snapshot.mkdir(parents=True)
    for p in blobs.iterdir():
        (snapshot / p.name).symlink_to(os.path.relpath(p, snapshot))
    report = tiecheck.inspect(snapshot)
    assert {t.name for t in report.checkpoint.tensors} == set(tensors)
    assert serious(report) == set()


def test_alias_record_in_index_metadata(tmp_path: Path) -> None:
    tensors = decoder_arrays(10, head=None)
    weight_map = shard(tmp_path, tensors, list(tensors), "model-00001-of-00001.safetensors")
    write_index(
        tmp_path,
        weight_map,
        payload_bytes(tensors.values()),
        **{"lm_head.weight": "model.embed_tokens.weight"},
    )
    # no config: the record alone declares the tie, and it is consistent with the files
    report = tiecheck.inspect(tmp_path)
    assert report.declared.tied is True
    assert "alias record" in report.declared.source
    assert "TC108" not in codes(report)
    assert "TC111" not in codes(report)
    assert report.verdict.value == "tied"


def test_stale_alias_record_fixture(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "alias-record-stale"
    metadata = read_header(folder / "model.safetensors").metadata
    assert metadata["model.embed_tokens.weight"] == "lm_head.weight"
    report = tiecheck.inspect(folder)
    (tc108,) = findings_with(report, "TC108")
    assert tc108.keys == ("model.embed_tokens.weight", "lm_head.weight")
    assert "not stored" in tc108.message
    assert codes(report) == {"TC108"}


def test_alias_record_naming_two_stored_tensors_is_stale(tmp_path: Path) -> None:
    tensors = decoder_arrays(11, head=None)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    model_folder(
        tmp_path,
        tensors,
        {**QWEN2, "tie_word_embeddings": True},
        **{"lm_head.weight": "model.embed_tokens.weight"},
    )
    report = tiecheck.inspect(tmp_path)
    (tc108,) = findings_with(report, "TC108")
    assert "both are stored" in tc108.message
    assert codes(report) == {"TC108", "TC103"}


def test_fixtures_are_not_modified_by_inspection(fixtures_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fixtures_dir / "sharded-broken", copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    tiecheck.inspect(copy)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_other_dotted_metadata_is_not_an_alias_record(tmp_path: Path) -> None:
    # Stability's ModelSpec keys are dotted, and so are some values; none of them is a tie
    tensors = {
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (
            np.ones((8, 4), dtype=np.float32)
        ),
        "model.diffusion_model.out.2.weight": np.zeros((4, 4), dtype=np.float32),
    }
    save_numpy(
        tmp_path / "model.safetensors",
        tensors,
        **{
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-xl-v1-base",
            "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
            "modelspec.date": "2023-07-26",
        },
    )
    report = tiecheck.inspect(tmp_path)
    assert "TC108" not in codes(report)
    assert report.declared.tied is None  # nothing declares a tie
    assert codes(report) == {"TC111"}
