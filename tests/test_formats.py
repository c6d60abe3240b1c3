"""Output formats of ``tiecheck inspect``: json (against its published JSON Schema), sarif
(against the OASIS SARIF 2.1.0 schema and GitHub code scanning's requirements), github
(workflow-command escaping), junit (against the Jenkins xUnit XSD) and markdown.

Every test runs the real CLI on tiny real checkpoints (``ci_helpers``); the schemas are the
published artifacts in ``tests/data`` (see its README) and the package's own
``schema/report.schema.json``.
"""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jsonschema
import pytest

from ci_helpers import (
    CASE,
    CASES,
    build,
    fixture_cases,
    parse_junit,
    report_schema,
    run_cli,
    sarif_errors,
    strict,
    validate_report,
    write_model,
)
from tiecheck.render import OutputFormat, renderer
from tiecheck.render.github import escape_data, escape_property
from tiecheck.rules import RULES, Severity

# ---------------------------------------------------------------------------------------------
# the registry


def test_every_format_has_a_renderer_and_renders_an_empty_run() -> None:
    from tiecheck.run import Run

    documents = {OutputFormat.JSON, OutputFormat.SARIF, OutputFormat.JUNIT, OutputFormat.MARKDOWN}
    for fmt in OutputFormat:
        render = renderer(fmt)
        assert callable(render)
        out = io.StringIO()
        render(Run(), out)
        # a document for the file-based formats; nothing to say for the line-based ones
        assert bool(out.getvalue().strip()) is (fmt in documents), fmt


def test_only_the_table_format_imports_rich(tmp_path: Path) -> None:
    model = build(tmp_path, "tied-duplicate")
    code = (
        "import io, sys\n"
        "from tiecheck.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"for fmt in {[f.value for f in OutputFormat if f is not OutputFormat.TABLE]!r}:\n"
        f"    args = ['inspect', {str(model)!r}, '-q', '--no-config', '-f', fmt]\n"
        "    CliRunner().invoke(app, args)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# json: the published schema


def test_schema_command_prints_the_packaged_schema() -> None:
    result = run_cli("schema")
    assert result.code == 0
    printed = json.loads(result.stdout)
    assert printed == report_schema()
    jsonschema.Draft202012Validator.check_schema(printed)


def test_schema_enums_match_the_code() -> None:
    from tiecheck.analysis.groups import GroupKind, Role
    from tiecheck.analysis.sharing import SharingKind
    from tiecheck.analysis.ties import GroupState, Relation, Verdict
    from tiecheck.model import FileFormat, SourceKind

    defs = report_schema()["$defs"]
    group, detail = defs["tie_group"], defs["tie_group"]["properties"]["detail"]["items"]
    pairs = [
        (defs["report"]["properties"]["verdict"]["enum"], Verdict),
        (defs["source"]["properties"]["format"]["enum"], SourceKind),
        (
            defs["source"]["properties"]["files"]["items"]["properties"]["format"]["enum"],
            FileFormat,
        ),
        (group["properties"]["kind"]["enum"], GroupKind),
        (group["properties"]["state"]["enum"], GroupState),
        (detail["properties"]["role"]["enum"], Role),
        (detail["properties"]["relation"]["enum"], Relation),
        (defs["shared_storage"]["properties"]["kind"]["enum"], SharingKind),
        (defs["finding"]["properties"]["severity"]["enum"], Severity),
    ]
    for listed, enum in pairs:
        assert sorted(listed) == sorted(m.value for m in enum), enum.__name__
    # codes and names are patterns, not lists: a newer tiecheck's rules still validate
    code = re.compile(defs["finding"]["properties"]["code"]["pattern"])
    name = re.compile(defs["finding"]["properties"]["name"]["pattern"])
    for rule in RULES.values():
        assert code.fullmatch(rule.code) and name.fullmatch(rule.name), rule.code


@pytest.mark.parametrize("case", [c.name for c in CASES])
@pytest.mark.parametrize("no_data", [False, True], ids=["data", "no-data"])
def test_json_report_of_each_built_case_matches_the_schema(
    tmp_path: Path, case: str, no_data: bool
) -> None:
    model = build(tmp_path, case)
    args = ["inspect", model, "--format", "json", "--no-config", "-q", "--fail-on", "never"]
    result = run_cli(*args, *(["--no-data"] if no_data else []))
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    validate_report(document)
    (report,) = document["reports"]
    assert report["data_compared"] is not no_data
    if not no_data:
        assert {f["code"] for f in report["findings"]} == CASE[case].codes
        assert report["verdict"] == CASE[case].verdict


def test_multi_source_json_document_matches_the_schema(tmp_path: Path) -> None:
    models = [build(tmp_path, c.name) for c in CASES]
    result = run_cli("inspect", *models, "--json", "--no-config", "-q")
    assert result.code == 1  # some cases have errors
    document = json.loads(result.stdout)
    validate_report(document)
    assert [r["source"]["path"] for r in document["reports"]] == [str(m) for m in models]


def _fixture_source(folder: Path) -> Path:
    return folder / "adapter" if (folder / "adapter").is_dir() else folder


@pytest.mark.parametrize("folder", fixture_cases(), ids=lambda p: p.name)
def test_json_report_of_each_committed_fixture_matches_the_schema(folder: Path) -> None:
    result = run_cli("inspect", _fixture_source(folder), "--json", "--no-config", "-q")
    assert result.code in (0, 1), result.stderr
    validate_report(json.loads(result.stdout))


def test_all_committed_fixtures_in_one_document_match_the_schema() -> None:
    folders = fixture_cases()
    if not folders:
        pytest.skip("fixtures/ not generated")
    result = run_cli("inspect", *map(_fixture_source, folders), "--json", "--no-config", "-q")
    assert result.code in (0, 1), result.stderr
    validate_report(json.loads(result.stdout))


def test_schema_rejects_a_report_with_a_wrong_field() -> None:
    """The schema is not vacuous: a wrong verdict or a missing key fails validation."""
    report = {
        "source": {
            "path": "x",
            "format": "safetensors",
            "index": None,
            "files": [],
            "unreadable": [],
            "origin": "local",
        },
        "config": None,
        "tensors": 0,
        "total_bytes": 0,
        "data_compared": True,
        "bytes_read": 0,
        "bytes_transferred": None,
        "verdict": "tied",
        "tie_groups": [],
        "shared_storage": [],
        "duplicates": [],
        "findings": [],
        "summary": {"error": 0, "warning": 0, "info": 0},
        "notes": [],
        "policy": {"expect": None, "fail_on": "error", "disabled": []},
        "passed": True,
    }
    document = {
        "schema_version": 2,
        "tool": {"name": "tiecheck", "version": "0"},
        "policy": {"config_file": None, "table": None, "isolated": False, "exit_zero": False},
        "exit_code": 0,
        "summary": {
            "sources": 1,
            "passed": 1,
            "failed": 0,
            "errors": 0,
            "findings": {"error": 0, "warning": 0, "info": 0},
        },
        "reports": [report],
        "errors": [],
    }
    validate_report(document)
    bad = copy.deepcopy(document)
    bad["reports"][0]["verdict"] = "sort-of-tied"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(bad)
    bad = copy.deepcopy(document)
    del bad["reports"][0]["summary"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(bad)
    bad = copy.deepcopy(document)
    del bad["errors"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(bad)
    bad = copy.deepcopy(document)
    bad["reports"][0]["undocumented"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(strict(report_schema())).validate(bad)


# ---------------------------------------------------------------------------------------------
# sarif


def _sarif(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    result = run_cli("inspect", *args, "--format", "sarif", "--no-config", "-q")
    return result.code, json.loads(result.stdout), result.stderr


def test_sarif_of_a_mixed_run_is_valid_and_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["tied-clean", "untied-head-missing", "tied-duplicate", "flag-absent"]
    for name in names:
        build(Path(), name)
    code, document, _ = _sarif(*names, "does-not-exist")
    assert sarif_errors(document) == []
    assert code == 2  # an unreadable source

    (run,) = document["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "tiecheck"
    rules = driver["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    for entry in rules:
        rule = RULES[entry["id"]]
        assert entry["name"] == rule.name
        assert entry["shortDescription"]["text"] == rule.summary
        assert entry["fullDescription"]["text"] == rule.explanation
        assert rule.how_to_fix in entry["help"]["text"]
        assert rule.why_it_matters in entry["help"]["markdown"]
        level = {"error": "error", "warning": "warning", "info": "note"}[rule.severity.value]
        assert entry["defaultConfiguration"]["level"] == level

    results = run["results"]
    assert sorted(r["ruleId"] for r in results) == ["TC101", "TC103", "TC106"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        # GitHub rejects the whole file when a result lacks a physical location or its uri
        (location,) = result["locations"]
        artifact = location["physicalLocation"]["artifactLocation"]
        assert artifact["uri"] and artifact["uriBaseId"] == "%SRCROOT%"
        assert (tmp_path / unquote(artifact["uri"])).is_file()
        assert result["partialFingerprints"]["primaryLocationLineHash"]
    by_rule = {r["ruleId"]: r for r in results}
    tc101 = by_rule["TC101"]
    assert tc101["level"] == "error"
    physical = tc101["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "untied-head-missing/config.json"
    line = physical["region"]["startLine"]
    config_lines = (tmp_path / "untied-head-missing/config.json").read_text().splitlines()
    assert '"tie_word_embeddings": false' in config_lines[line - 1]
    tc103 = by_rule["TC103"]
    assert tc103["level"] == "warning"
    assert tc103["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "tied-duplicate/model.safetensors"
    )
    assert "region" not in tc103["locations"][0]["physicalLocation"]  # a binary file
    assert by_rule["TC106"]["level"] == "note"

    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    (notification,) = invocation["toolExecutionNotifications"]
    assert notification["level"] == "error"
    assert "does-not-exist" in notification["message"]["text"]


def test_sarif_fingerprints_are_stable_across_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    build(Path(), "tied-duplicate")
    first = _sarif("tied-duplicate")[1]["runs"][0]["results"]
    second = _sarif("tied-duplicate")[1]["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in first] == [r["partialFingerprints"] for r in second]


def test_sarif_locates_a_missing_shard_at_the_index_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = build(Path(), "sharded-untied")
    (model / "model-00003-of-00003.safetensors").unlink()
    code, document, _ = _sarif(model)
    assert sarif_errors(document) == []
    assert code == 1
    tc003 = [r for r in document["runs"][0]["results"] if r["ruleId"] == "TC003"]
    assert len(tc003) == 1
    physical = tc003[0]["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "sharded-untied/model.safetensors.index.json"
    index_lines = (model / "model.safetensors.index.json").read_text().splitlines()
    assert "model-00003-of-00003.safetensors" in index_lines[physical["region"]["startLine"] - 1]


def test_sarif_uses_absolute_file_uris_outside_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build(tmp_path / "elsewhere with space", "tied-diverged")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, document, _ = _sarif(model)
    assert code == 1
    assert sarif_errors(document) == []
    (result,) = document["runs"][0]["results"]
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert "uriBaseId" not in artifact
    parsed = urlparse(artifact["uri"])
    assert parsed.scheme == "file"
    assert " " not in artifact["uri"]
    assert Path(unquote(parsed.path)) == model / "model.safetensors"


def test_sarif_of_a_clean_run_has_no_results_and_succeeds(tmp_path: Path) -> None:
    code, document, _ = _sarif(build(tmp_path, "tied-clean"))
    assert code == 0
    assert sarif_errors(document) == []
    assert document["runs"][0]["results"] == []
    assert document["runs"][0]["invocations"][0]["executionSuccessful"] is True


@pytest.mark.parametrize("folder", fixture_cases(), ids=lambda p: p.name)
def test_sarif_of_each_committed_fixture_is_valid(folder: Path) -> None:
    code, document, stderr = _sarif(_fixture_source(folder))
    assert code in (0, 1), stderr
    assert sarif_errors(document) == []
    for result in document["runs"][0]["results"]:
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]


def test_sarif_schema_is_not_vacuous(tmp_path: Path) -> None:
    _, document, _ = _sarif(build(tmp_path, "tied-duplicate"))
    bad = copy.deepcopy(document)
    bad["runs"][0]["results"][0]["level"] = "fatal"
    assert sarif_errors(bad)
    bad = copy.deepcopy(document)
    del bad["version"]
    assert sarif_errors(bad)


# ---------------------------------------------------------------------------------------------
# github annotations


def unescape(text: str) -> str:
    return re.sub(r"%(25|0D|0A|3A|2C)", lambda m: bytes.fromhex(m[1]).decode(), text)


def parse_annotation(line: str) -> tuple[str, dict[str, str], str]:
    match = re.fullmatch(r"::(\w+) ([^:]*)::(.*)", line)
    assert match, line
    props = dict(p.split("=", 1) for p in match[2].split(","))
    return match[1], {k: unescape(v) for k, v in props.items()}, unescape(match[3])


def test_workflow_command_escaping() -> None:
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert escape_data("a:b,c") == "a:b,c"
    assert escape_property("dir,a:b/50%\n") == "dir%2Ca%3Ab/50%25%0A"


def test_github_annotations_locate_and_escape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tricky = "run,1:final%"
    write_model(Path(tricky), head="absent", tied=False, model_type="llama")
    build(Path(), "tied-duplicate")
    build(Path(), "flag-absent")
    result = run_cli(
        "inspect", tricky, "tied-duplicate", "flag-absent", "-f", "github", "--no-config", "-q"
    )
    assert result.code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    parsed = [parse_annotation(line) for line in lines]
    for line in lines:
        # nothing unescaped that would end a property or the command early
        props = line.split("::")[1].split(" ", 1)[1]
        assert props.count(",") == len(parse_annotation(line)[1]) - 1
        assert "\n" not in line
    (error,) = [p for p in parsed if p[0] == "error"]
    _, props, message = error
    assert props["file"] == f"{tricky}/config.json"
    assert props["title"] == "TC101 untied-head-missing"
    config_lines = (Path(tricky) / "config.json").read_text().splitlines()
    assert "tie_word_embeddings" in config_lines[int(props["line"]) - 1]
    assert message.startswith(f"{tricky}: declared untied")
    assert "\n\nHow to fix: " in message and "tiecheck fix" in message
    (warning,) = [p for p in parsed if p[0] == "warning"]
    assert warning[1]["file"] == "tied-duplicate/model.safetensors"
    assert "line" not in warning[1]
    (notice,) = [p for p in parsed if p[0] == "notice"]
    assert notice[1]["title"] == "TC106 tie-flag-defaulted"


def test_github_format_reports_an_unreadable_source(tmp_path: Path) -> None:
    result = run_cli("inspect", tmp_path / "missing", "-f", "github", "--no-config", "-q")
    assert result.code == 2
    (line,) = result.stdout.splitlines()
    command, props, message = parse_annotation(line)
    assert command == "error" and "file" not in props
    assert props["title"] == "tiecheck: cannot inspect source"
    assert "no such file or folder" in message


# ---------------------------------------------------------------------------------------------
# junit


def test_junit_one_case_per_source_and_rule(tmp_path: Path) -> None:
    clean = build(tmp_path, "tied-clean")
    broken = build(tmp_path, "untied-head-missing")
    duplicate = build(tmp_path, "tied-duplicate")
    result = run_cli(
        "inspect",
        clean,
        broken,
        duplicate,
        tmp_path / "missing",
        "-f",
        "junit",
        "--no-config",
        "-q",
    )
    assert result.code == 2
    root = parse_junit(result.stdout)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        str(clean),
        str(broken),
        str(duplicate),
        str(tmp_path / "missing"),
    ]
    for suite in suites[:3]:
        cases = suite.findall("testcase")
        assert [c.get("name") for c in cases] == [f"{r.code} {r.name}" for r in RULES.values()]
        assert suite.get("tests") == str(len(RULES))
    assert suites[0].get("failures") == "0"
    (failed,) = [c for c in suites[1].findall("testcase") if c.find("failure") is not None]
    failure = failed.find("failure")
    assert failed.get("name") == "TC101 untied-head-missing"
    assert failure.get("type") == "TC101"
    assert "config.json" in failure.text and "How to fix" in failure.text
    # a warning below --fail-on error: a passing case that still shows the finding
    (shown,) = [c for c in suites[2].findall("testcase") if c.find("system-out") is not None]
    assert shown.get("name") == "TC103 tied-duplicate-copy"
    assert shown.find("failure") is None
    assert suites[2].get("failures") == "0"
    unreadable = suites[3]
    assert unreadable.get("errors") == "1"
    assert unreadable.find("testcase/error").get("type") == "SourceError"
    assert root.get("tests") == str(3 * len(RULES) + 1)
    assert root.get("failures") == "1" and root.get("errors") == "1"


def test_junit_fail_on_and_policy_are_reflected(tmp_path: Path) -> None:
    duplicate = build(tmp_path, "tied-duplicate")
    result = run_cli(
        "inspect", duplicate, "-f", "junit", "--no-config", "--fail-on", "warning",
        "--ignore", "TC106,TC111", "-q",
    )  # fmt: skip
    assert result.code == 1
    root = parse_junit(result.stdout)
    (suite,) = root.findall("testsuite")
    cases = {c.get("name").split()[0]: c for c in suite.findall("testcase")}
    assert cases["TC103"].find("failure") is not None
    assert cases["TC106"].find("skipped") is not None
    assert cases["TC111"].find("skipped") is not None
    assert suite.get("skipped") == "2"
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["fail-on"] == "warning" and props["verdict"] == "tied"


def test_junit_survives_control_characters_in_tensor_names(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    model = tmp_path / "odd"
    model.mkdir()
    same = np.arange(32, dtype=np.float32)
    save_file({"a\x01b": same, "c<&>": same.copy()}, str(model / "model.safetensors"))
    result = run_cli("inspect", model, "-f", "junit", "--no-config", "--fail-on", "info", "-q")
    root = parse_junit(result.stdout)
    text = "".join(root.itertext())
    assert "TC114" in text and "c<&>" in text


# ---------------------------------------------------------------------------------------------
# markdown


def test_markdown_escapes_table_and_emphasis_characters() -> None:
    from tiecheck.render.markdown import code, escape

    assert escape("a|b *c* _d_ <e>") == "a\\|b \\*c\\* \\_d\\_ \\<e\\>"
    assert code("x|y") == "`x\\|y`"
    assert code("a`b") == "``a`b``"
