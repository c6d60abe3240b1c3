"""The ``tiecheck`` command as CI runs it: exit codes, the JSON document, the main options.

Expected values in the JSON are recomputed from the files (header entries, file sizes), not
copied from an earlier run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tiecheck
from core_helpers import QWEN2, decoder_arrays, model_folder, run_cli, run_cli_process
from tiecheck.readers.safetensors_format import read_header
from tiecheck.rules import RULES

REPORT_FIELDS = {
    "source",
    "config",
    "tensors",
    "total_bytes",
    "verdict",
    "tie_groups",
    "shared_storage",
    "duplicates",
    "findings",
}


def strict_json(text: str) -> object:
    def no_constants(name: str) -> object:
        raise ValueError(f"{name} in JSON output")

    return json.loads(text, parse_constant=no_constants)


def strict_report(text: str) -> dict:  # type: ignore[type-arg]
    """The one report of a single-source JSON document (schema 2)."""
    document = strict_json(text)
    assert isinstance(document, dict) and document["schema_version"] == 2
    (report,) = document["reports"]
    assert document["errors"] == []
    return report


# -- exit codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "args", "code"),
    [
        ("tied-deduplicated", [], 0),
        ("tied-head-diverged", [], 1),
        ("tied-head-diverged", ["--fail-on", "never"], 0),
        ("tied-head-duplicate", [], 0),  # TC103 is a warning
        ("tied-head-duplicate", ["--fail-on", "warning"], 1),
        ("untied-identical", [], 0),  # TC105 is info
        ("untied-identical", ["--fail-on", "warning"], 0),
        ("untied-identical", ["--fail-on", "info"], 1),
        ("tied-deduplicated", ["--fail-on", "info"], 0),  # no finding at all
        ("tied-deduplicated", ["--expect", "tied"], 0),
        ("tied-deduplicated", ["--expect", "untied"], 1),
        ("truncated-safetensors", [], 1),
    ],
)
def test_exit_codes(fixtures_dir: Path, case: str, args: list[str], code: int) -> None:
    result = run_cli("inspect", fixtures_dir / case, "-q", *args)
    assert result.code == code, result.stderr


def test_missing_source_exits_2_with_a_message(tmp_path: Path) -> None:
    result = run_cli("inspect", tmp_path / "nope")
    assert result.code == 2
    assert "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_source_is_not_hidden_by_a_good_one(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    result = run_cli("inspect", fixtures_dir / "tied-deduplicated", tmp_path / "nope", "--json")
    assert result.code == 2
    # the readable source is still reported
    assert "tied-deduplicated" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "--no-such-option", "x"],
        ["inspect", "x", "--fail-on", "sometimes"],
        ["inspect", "x", "--expect", "maybe"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert run_cli(*args).code == 2


def test_version_and_rules() -> None:
    version = run_cli("--version")
    assert version.code == 0
    assert tiecheck.__version__ in version.stdout
    listing = run_cli("rules")
    assert listing.code == 0
    for code, rule in RULES.items():
        assert code in listing.stdout and rule.name in listing.stdout
    one = run_cli("rules", "TC102")
    assert one.code == 0 and "tied-but-diverged" in one.stdout
    assert run_cli("rules", "TC999").code == 2


# -- --json ----------------------------------------------------------------------------------------


def test_json_document_fields_and_values(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "tied-head-diverged"
    result = run_cli("inspect", folder, "--json")
    assert result.code == 1
    doc = strict_report(result.stdout)
    assert set(doc) >= REPORT_FIELDS

    header = read_header(folder / "model.safetensors")
    assert doc["tensors"] == len(header.entries)
    assert doc["total_bytes"] == sum(e.span.length for e in header.entries)
    assert doc["source"]["path"] == str(folder)
    assert doc["source"]["format"] == "safetensors"
    (file,) = doc["source"]["files"]
    assert file["name"] == "model.safetensors"
    assert file["size"] == (folder / "model.safetensors").stat().st_size
    assert file["tensors"] == len(header.entries)

    assert doc["config"]["model_type"] == "qwen2"
    assert doc["config"]["declared_tie"] is True
    assert doc["config"]["defaulted"] is False
    assert doc["verdict"] == "inconsistent"

    (group,) = doc["tie_groups"]
    assert group["members"] == ["model.embed_tokens.weight", "lm_head.weight"]
    assert group["state"] == "distinct"
    assert group["declared"] is True
    assert group["stored_members"] == group["members"]
    # 8 of 64 rows were shifted by 0.5 when the fixture was generated
    assert group["differing_fraction"] == pytest.approx(8 / 64, abs=0.02)
    assert 0.45 < group["max_abs_diff"] < 0.55
    assert doc["shared_storage"] == []
    assert doc["duplicates"] == []
    (finding,) = doc["findings"]
    assert finding["code"] == "TC102"
    assert finding["severity"] == "error"
    assert finding["name"] == "tied-but-diverged"
    assert finding["keys"] == ["model.embed_tokens.weight", "lm_head.weight"]
    assert doc["data_compared"] is True
    assert doc["bytes_read"] > 0


def test_json_no_data(fixtures_dir: Path) -> None:
    result = run_cli("inspect", fixtures_dir / "tied-head-duplicate", "--json", "--no-data")
    doc = strict_report(result.stdout)
    assert doc["bytes_read"] == 0
    assert doc["data_compared"] is False
    assert doc["duplicates"] is None
    (group,) = doc["tie_groups"]
    assert group["state"] == "not-compared"
    assert group["max_abs_diff"] is None
    assert [f["code"] for f in doc["findings"]] == ["TC113"]
    assert result.code == 0  # TC113 is a warning


def test_json_shared_storage(fixtures_dir: Path) -> None:
    doc = strict_report(run_cli("inspect", fixtures_dir / "pickle-views", "--json").stdout)
    (shared,) = doc["shared_storage"]
    assert shared["kind"] == "disjoint-views"
    assert shared["file"] == "pytorch_model.bin"
    assert sorted(shared["keys"]) == [
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.v_proj.weight",
    ]


def test_json_expect_adds_tc112(fixtures_dir: Path) -> None:
    result = run_cli("inspect", fixtures_dir / "tied-deduplicated", "--json", "--expect", "untied")
    assert result.code == 1
    doc = strict_report(result.stdout)
    assert doc["verdict"] == "tied"
    assert [f["code"] for f in doc["findings"]] == ["TC112"]


def test_json_several_sources(fixtures_dir: Path) -> None:
    result = run_cli(
        "inspect",
        fixtures_dir / "tied-deduplicated",
        fixtures_dir / "untied-head-missing",
        "--json",
    )
    assert result.code == 1
    doc = strict_json(result.stdout)
    assert isinstance(doc, dict) and doc["schema_version"] == 2
    verdicts = [r["verdict"] for r in doc["reports"]]
    assert verdicts == ["tied", "inconsistent"]


def test_output_file(fixtures_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli("inspect", fixtures_dir / "tied-deduplicated", "--json", "-o", out)
    assert result.code == 0
    assert result.stdout == ""
    assert strict_report(out.read_text())["verdict"] == "tied"


def test_table_output_names_the_verdict_and_codes(fixtures_dir: Path) -> None:
    result = run_cli("inspect", fixtures_dir / "untied-head-missing")
    assert result.code == 1
    assert "inconsistent" in result.stdout
    assert "TC101" in result.stdout
    assert "lm_head.weight" in result.stdout


def test_a_changed_file_changes_the_answer(tmp_path: Path) -> None:
    # the same command over two states of one folder: the exit code follows the files
    tensors = decoder_arrays(0, head=None)
    model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    assert run_cli("inspect", tmp_path, "-q").code == 0
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"] * 2
    model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    assert run_cli("inspect", tmp_path, "-q").code == 1


def test_in_process_runner_matches_the_real_process(fixtures_dir: Path) -> None:
    """The suite runs the command line in-process (``run_cli``); a real ``python -m
    tiecheck`` must answer the same, byte for byte, on every stream."""
    for args in (
        ("inspect", fixtures_dir / "embedding-missing", "--json", "--no-config"),
        ("inspect", fixtures_dir / "tied-head-diverged", fixtures_dir / "nope", "--no-config"),
        ("inspect", "--fail-on", "bogus", fixtures_dir / "no-config"),
    ):
        inside, child = run_cli(*args), run_cli_process(*args)
        assert (inside.code, inside.stdout, inside.stderr) == (
            child.code,
            child.stdout,
            child.stderr,
        ), args


def test_json_stays_strict_when_a_difference_is_infinite(tmp_path: Path) -> None:
    tensors = decoder_arrays(1, head=None)
    head = tensors["model.embed_tokens.weight"].copy()
    head[0, 0] = np.inf
    head[1, 1] = np.nan
    tensors["lm_head.weight"] = head
    model_folder(tmp_path, tensors, {**QWEN2, "tie_word_embeddings": True})
    result = run_cli("inspect", tmp_path, "--json")
    doc = strict_report(result.stdout)  # no bare Infinity/NaN tokens
    (group,) = doc["tie_groups"]
    assert group["max_abs_diff"] == "inf"
    assert group["differing_fraction"] == pytest.approx(2 / head.size)
    assert [f["code"] for f in doc["findings"]] == ["TC102"]


@pytest.mark.parametrize("command", ["inspect", "fix", "rules", "schema"])
def test_help_placeholders_read_as_words(command: str) -> None:
    """Every argument and option value is shown by a word (SOURCE, SIZE, STATE) or its
    choices, never by a Python type such as ``<list[str]>`` or ``<float>``."""
    from typer.testing import CliRunner

    from tiecheck.cli import app

    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    for python_type in ("<list[", "<str>", "<float>", "<int>", "<path>", "<bool>"):
        assert python_type not in result.stdout, (python_type, result.stdout)
    usage = result.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: tiecheck {command} [OPTIONS]"), usage
    assert "{" not in usage, usage  # a required argument is SOURCE, not {SOURCE}
