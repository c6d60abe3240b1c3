"""Helpers for the CI-gate tests (formats, policies, integrations): tiny real checkpoints and a
CLI runner.

Imported by name (``from ci_helpers import ...``; pytest puts ``tests/`` on ``sys.path``).
Every checkpoint is written with ``safetensors.numpy.save_file`` into the test's ``tmp_path``:
a Qwen2- or Llama-shaped model of vocabulary 64 and width 16, whose head is absent, an identical
copy or a diverged copy, optionally sharded with an index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "src" / "tiecheck" / "schema"
DATA = Path(__file__).resolve().parent / "data"
FIXTURES = REPO / "fixtures"
EMB = "model.embed_tokens.weight"
HEAD = "lm_head.weight"
VOCAB, HIDDEN = 64, 16


def weights(head: str, *, embedding: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny decoder's tensors. ``head``: ``absent``, ``copy`` or ``diverged``."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    tensors: dict[str, np.ndarray] = {}
    if embedding:
        tensors[EMB] = emb
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        tensors[f"model.layers.0.self_attn.{proj}.weight"] = rng.standard_normal(
            (HIDDEN, HIDDEN)
        ).astype(np.float32)
    tensors["model.layers.0.input_layernorm.weight"] = np.full(HIDDEN, 1.5, np.float32)
    tensors["model.norm.weight"] = np.full(HIDDEN, 0.5, np.float32)
    if head == "copy":
        tensors[HEAD] = emb.copy()
    elif head == "diverged":
        shifted = emb.copy()
        shifted[:8] += 0.5
        tensors[HEAD] = shifted
    elif head != "absent":
        raise ValueError(head)
    return tensors


def config(model_type: str, tied: bool | None) -> dict[str, Any]:
    arch = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "gemma": "GemmaForCausalLM"}
    data: dict[str, Any] = {
        "architectures": [arch[model_type]],
        "model_type": model_type,
        "hidden_size": HIDDEN,
        "vocab_size": VOCAB,
        "num_hidden_layers": 1,
    }
    if tied is not None:
        data["tie_word_embeddings"] = tied
    return data


def write_model(
    folder: Path,
    *,
    head: str = "absent",
    tied: bool | None = True,
    model_type: str = "qwen2",
    with_config: bool = True,
    shards: int = 1,
    embedding: bool = True,
) -> Path:
    """Write a model folder (``model.safetensors`` or shards + index, and ``config.json``)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = weights(head, embedding=embedding)
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        names = sorted(tensors)
        weight_map, total = {}, 0
        for i in range(shards):
            part = names[i::shards]
            shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(folder / shard), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, shard))
            total += sum(tensors[n].nbytes for n in part)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if with_config:
        (folder / "config.json").write_text(json.dumps(config(model_type, tied), indent=2))
    return folder


@dataclass(frozen=True)
class Case:
    """A checkpoint to build and what tiecheck must say about it."""

    name: str
    kwargs: dict[str, Any]
    codes: frozenset[str]
    verdict: str


CASES = [
    Case("tied-clean", {"head": "absent", "tied": True}, frozenset(), "tied"),
    Case(
        "untied-head-missing",
        {"head": "absent", "tied": False, "model_type": "llama"},
        frozenset({"TC101"}),
        "inconsistent",
    ),
    Case("tied-diverged", {"head": "diverged", "tied": True}, frozenset({"TC102"}), "inconsistent"),
    Case("tied-duplicate", {"head": "copy", "tied": True}, frozenset({"TC103"}), "tied"),
    Case(
        "embedding-missing",
        {"head": "copy", "tied": True, "embedding": False},
        frozenset({"TC104"}),
        "inconsistent",
    ),
    Case(
        "untied-identical",
        {"head": "copy", "tied": False, "model_type": "llama"},
        frozenset({"TC105"}),
        "untied",
    ),
    Case(
        "flag-absent",
        {"head": "absent", "tied": None, "model_type": "gemma"},
        frozenset({"TC106"}),
        "tied",
    ),
    Case("no-config", {"head": "absent", "with_config": False}, frozenset({"TC111"}), "tied"),
    Case(
        "sharded-untied",
        {"head": "diverged", "tied": False, "model_type": "llama", "shards": 3},
        frozenset(),
        "untied",
    ),
]
CASE = {c.name: c for c in CASES}


def build(root: Path, name: str) -> Path:
    case = CASE[name]
    return write_model(root / name, **case.kwargs)


def fixture_cases() -> list[Path]:
    """The committed fixture folders (fixtures/generate.py), when they exist."""
    if not (FIXTURES / "README.md").is_file():
        return []
    return sorted(p for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, stdin: str | None = None) -> Result:
    """Run the Typer app in-process (the current folder is the caller's)."""
    from tiecheck.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# validators of the machine-readable formats: tiecheck's own JSON Schemas, and the published
# SARIF 2.1.0 schema and Jenkins xUnit XSD in tests/data (see its README)


def report_schema() -> dict[str, Any]:
    return load_json(SCHEMAS / "report.schema.json")


def fix_schema() -> dict[str, Any]:
    return load_json(SCHEMAS / "fix.schema.json")


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that does not say
    otherwise: validating against it proves every field the tool writes is documented."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validate_report(document: Any) -> None:
    """``inspect --format json`` against ``tiecheck schema``, as published and strict."""
    schema = report_schema()
    jsonschema.Draft202012Validator(schema).validate(document)
    jsonschema.Draft202012Validator(strict(schema)).validate(document)


def validate_fix(document: Any) -> None:
    """``fix --format json`` against ``tiecheck schema fix``, as published and strict; its
    ``after`` refers to the report schema by ``$id``, resolved from the packaged file."""
    from referencing import Registry, Resource

    for make in (lambda s: s, strict):
        report = make(report_schema())
        registry = Registry().with_resource(report["$id"], Resource.from_contents(report))
        jsonschema.Draft202012Validator(make(fix_schema()), registry=registry).validate(document)


def sarif_validator() -> jsonschema.Draft4Validator:
    schema = load_json(DATA / "sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def sarif_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in sarif_validator().iter_errors(document)
    ]


def junit_schema() -> Any:
    etree = pytest.importorskip("lxml.etree")
    return etree.XMLSchema(etree.parse(str(DATA / "junit-10.xsd")))


def parse_junit(text: str) -> Any:
    """The JUnit document, validated against the Jenkins xUnit XSD."""
    etree = pytest.importorskip("lxml.etree")
    document = etree.fromstring(text.encode("utf-8"))
    schema = junit_schema()
    assert schema.validate(document), schema.error_log
    return document
