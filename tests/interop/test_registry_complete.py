"""The packaged family registry against the installed transformers: fails when transformers
knows a model type, a head class or a tie that ``tiecheck/data/registry.json`` lacks or
records differently. The fix is to regenerate the file::

    python scripts/generate_registry.py

Cheap by design (it runs in CI): static checks of every model type and class transformers
lists in its auto mappings (names, kinds, config defaults, declared ties), a regeneration of a
small sample on the meta device compared with the file, and real ``save_pretrained`` /
``from_pretrained`` round trips of a few tiny models checking the on-disk names. Each check
collects every difference before failing, so one run lists all that is stale.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.interop

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tiecheck.analysis import registry  # noqa: E402

from .helpers import TF_VERSION, load_model, stored_tensors, tiny_of_type  # noqa: E402

REGENERATE = "regenerate it: python scripts/generate_registry.py"
ROOT = Path(__file__).resolve().parents[2]
DATA = json.loads(
    resources.files("tiecheck").joinpath("data").joinpath("registry.json").read_text()
)
RECORDED = str(DATA["environment"]["transformers"])


@pytest.fixture(scope="module", autouse=True)
def same_major_release() -> None:
    """transformers 4.x has another tie model (list-form ``_tied_weights_keys``, no expanded
    maps): a file generated under 5.x is not stale there, it is for another major release."""
    if RECORDED.split(".")[0] != str(TF_VERSION.major):
        pytest.skip(f"registry generated with transformers {RECORDED}, installed {TF_VERSION}")


@cache
def generator() -> Any:
    """scripts/generate_registry.py as a module: the sample regeneration uses the same code."""
    path = ROOT / "scripts" / "generate_registry.py"
    spec = importlib.util.spec_from_file_location("generate_registry", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def tf() -> Any:
    return generator().Transformers()


@cache
def classes_by_type() -> dict[str, dict[str, set[str]]]:
    return tf().classes_by_type()


def lm_classes() -> Iterator[tuple[str, str, set[str]]]:
    lm_kinds = generator().LM_KINDS
    for model_type, classes in sorted(classes_by_type().items()):
        for name, kinds in sorted(classes.items()):
            if kinds & lm_kinds:
                yield model_type, name, kinds


def fail_listing(problems: list[str], what: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        pytest.fail(
            f"{len(problems)} {what} (registry from transformers {RECORDED}, installed "
            f"{TF_VERSION}); {REGENERATE}\n  {shown}{more}"
        )


# ---------------------------------------------------------------------------------------------
# static checks of everything


def test_every_model_type_with_a_head_is_recorded() -> None:
    config_names = tf().config_names()
    problems = []
    for model_type, name, kinds in lm_classes():
        if model_type not in config_names:
            continue
        heads = DATA["model_types"].get(model_type, {}).get("heads", {})
        if model_type not in DATA["model_types"]:
            problems.append(f"model type {model_type} missing (head {name})")
        elif name not in heads:
            problems.append(f"{model_type}: head class {name} missing")
        elif set(heads[name]["kinds"]) != kinds:
            problems.append(f"{model_type} {name}: kinds {heads[name]['kinds']} != {sorted(kinds)}")
    fail_listing(problems, "head classes missing or different")


def test_no_recorded_entry_is_stale() -> None:
    config_names = tf().config_names()
    problems = []
    for model_type, entry in sorted(DATA["model_types"].items()):
        if model_type not in config_names:
            problems.append(f"model type {model_type} no longer exists")
            continue
        if entry["config_class"] not in (None, config_names[model_type]):
            problems.append(
                f"{model_type}: config class {entry['config_class']}, "
                f"now {config_names[model_type]}"
            )
        known = classes_by_type().get(model_type, {})
        for name, head in sorted(entry["heads"].items()):
            if name not in known:
                problems.append(f"{model_type}: class {name} no longer mapped")
            elif set(head["kinds"]) != known[name]:
                problems.append(
                    f"{model_type} {name}: kinds {head['kinds']} != {sorted(known[name])}"
                )
    fail_listing(problems, "recorded entries that transformers no longer has")


def _flag_default(config_cls: type) -> tuple[bool, bool | None]:
    """(built, default): whether the defaults build, and the flag they hold (None: absent)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = config_cls()
    except Exception:
        return False, None
    return True, generator()._flag_value(config)


def test_config_flag_defaults_match() -> None:
    """The flag's class default, read from the config classes (no model is built)."""
    problems = []
    for model_type, entry in sorted(DATA["model_types"].items()):
        if entry["static_only"] is not None:
            continue
        built, default = _flag_default(tf().config_class(model_type))
        if not built:
            problems.append(f"{model_type}: default config no longer builds")
        elif default != entry["flag"]["default"]:
            problems.append(
                f"{model_type}: flag default {default}, recorded {entry['flag']['default']}"
            )
    fail_listing(problems, "tie flag defaults different")


def test_declared_ties_and_prefixes_match() -> None:
    """Each recorded class's ``_tied_weights_keys`` and ``base_model_prefix``, and every mapped
    class that declares ties is recorded (static: classes are imported, no model is built)."""
    problems = []
    for model_type, classes in sorted(classes_by_type().items()):
        heads = DATA["model_types"].get(model_type, {}).get("heads", {})
        for name in sorted(classes):
            try:
                cls = tf().model_class(name)
            except Exception:
                continue  # an optional dependency is missing here; the generator records that
            if isinstance(getattr(cls, "_tied_weights_keys", None), property):
                continue  # computed per instance (DEIMv2): the sample regeneration covers it
            declared = tf().declared_ties(cls)
            head = heads.get(name)
            if head is None:
                if declared:
                    problems.append(f"{model_type}: {name} declares ties {declared}, not recorded")
                continue
            if declared != head["declared_ties"]:
                problems.append(
                    f"{model_type} {name}: declares {declared}, recorded {head['declared_ties']}"
                )
            prefix = getattr(cls, "base_model_prefix", "") or ""
            if prefix != head["base_model_prefix"]:
                problems.append(
                    f"{model_type} {name}: base_model_prefix {prefix!r}, "
                    f"recorded {head['base_model_prefix']!r}"
                )
    fail_listing(problems, "declared ties or prefixes different")


# ---------------------------------------------------------------------------------------------
# a sample regenerated on the meta device

SAMPLE = (
    "bert",
    "blip-2",
    "esm",
    "gemma3",
    "gpt2",
    "gpt_neox",
    "llama",
    "llava",
    "mt5",
    "pix2struct",
    "qwen2_vl",
    "rwkv",
    "smolvlm",
    "t5",
    "whisper",
)


@pytest.mark.parametrize("model_type", SAMPLE)
def test_sample_regenerates_identically(model_type: str) -> None:
    """The generator's own code, run now on the meta device, writes what the file holds."""
    gen = generator()
    fresh = gen.type_record(tf(), model_type, classes_by_type()[model_type], lambda _m: None)
    recorded = DATA["model_types"].get(model_type)
    if fresh == recorded:
        return
    problems = []
    for key in sorted(set(fresh or {}) | set(recorded or {})):
        if key == "heads":
            continue
        if (fresh or {}).get(key) != (recorded or {}).get(key):
            problems.append(f"{key}: now {fresh.get(key)!r}, recorded {recorded.get(key)!r}")
    fresh_heads, old_heads = (fresh or {}).get("heads", {}), (recorded or {}).get("heads", {})
    for name in sorted(set(fresh_heads) | set(old_heads)):
        now, old = fresh_heads.get(name, {}), old_heads.get(name, {})
        for key in sorted(set(now) | set(old)):
            if now.get(key) != old.get(key):
                problems.append(f"{name}.{key}: now {now.get(key)!r}, recorded {old.get(key)!r}")
    fail_listing(problems, f"differences in {model_type}")


# ---------------------------------------------------------------------------------------------
# on-disk names checked against real saves (tiny models, independent of the generator)

ROUND_TRIP = ("llama", "qwen2", "gpt2", "gpt_neox", "t5", "mt5", "bart", "gemma3", "qwen2_vl")


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("model_type", ROUND_TRIP)
def test_save_pretrained_writes_the_recorded_names(
    model_type: str, tie: bool, tmp_path: Path
) -> None:
    """A tiny model saved by transformers stores each tie source under its recorded saved
    name, drops each tie target, and stores the head when it is not tied."""
    model = tiny_of_type(model_type, tie)
    entry = registry.lookup(model_type)
    assert entry is not None
    head = entry.head(type(model).__name__)
    assert head is not None and head.static_only is None
    ties = head.ties(tie)
    assert ties is not None
    live = model.get_expanded_tied_weights_keys(all_submodels=True)
    assert live == ties, "the tiny model ties what the registry says the defaults tie"
    model.save_pretrained(tmp_path)
    stored = set(stored_tensors(tmp_path))
    problems = []
    for target, source in sorted(ties.items()):
        if head.saved_name(source) not in stored:
            problems.append(f"tie source {source} not stored as {head.saved_name(source)}")
        if head.saved_name(target) in stored:
            problems.append(f"tie target {target} stored as {head.saved_name(target)}")
    for name in (head.input_embedding, head.output_embedding):
        if name and name not in ties and head.saved_name(name) not in stored:
            problems.append(f"{name} not stored as {head.saved_name(name)}")
    assert not problems, f"{model_type} saved {sorted(stored)}: {problems}"


@pytest.mark.parametrize("model_type", ["gemma3", "qwen2_vl", "gpt_neox"])
def test_every_recorded_disk_name_loads(model_type: str, tmp_path: Path) -> None:
    """Each on-disk name the registry records for the embedding and the head (the saved name,
    the in-memory name, the legacy names) is accepted by from_pretrained: the tensor stored
    under it loads into that parameter, with no missing or unexpected key."""
    model = tiny_of_type(model_type, False)
    model.save_pretrained(tmp_path)
    head = registry.lookup(model_type).head(type(model).__name__)  # type: ignore[union-attr]
    assert head is not None
    params = [n for n in (head.input_embedding, head.output_embedding) if n]
    assert any(len(head.disk_names(n)) > 1 for n in params), "expected renamed names here"
    path = tmp_path / "model.safetensors"
    saved_state = load_file(path)
    for name in params:
        state = dict(saved_state)
        original = state.pop(head.saved_name(name))
        for disk_name in head.disk_names(name):
            save_file({**state, disk_name: original}, path, metadata={"format": "pt"})
            loaded, info = load_model(tmp_path, type(model))
            assert not info["missing_keys"], (disk_name, info["missing_keys"])
            assert not info["unexpected_keys"], (disk_name, info["unexpected_keys"])
            assert torch.equal(loaded.get_parameter(name), original), disk_name
