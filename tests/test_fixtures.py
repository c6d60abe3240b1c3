"""Every committed fixture, with the codes and verdict it must give (see fixtures/README.md).

The table is written from what each case was built to be (fixtures/generate.py), and every
folder must be in it, so a new fixture cannot go untested. Positive cases must exit 0 and
negative ones 1 (findings) through the command line (typer's runner, in process), and the
JSON findings must be the library's. The last test regenerates all fixtures into a temporary
folder and compares bytes: the committed files are exactly what the generator writes.
"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tiecheck
from core_helpers import FIXTURES, only_report
from tiecheck.cli import app


class Case:
    def __init__(
        self,
        codes: set[str],
        verdict: str,
        exit_code: int,
        target: str = "",
        cwd: str | None = None,
    ) -> None:
        self.codes, self.verdict, self.exit_code = codes, verdict, exit_code
        self.target, self.cwd = target, cwd


CASES: dict[str, Case] = {
    "tied-deduplicated": Case(set(), "tied", 0),
    "untied-head-missing": Case({"TC101"}, "inconsistent", 1),
    "tied-head-diverged": Case({"TC102"}, "inconsistent", 1),
    "tied-head-duplicate": Case({"TC103"}, "tied", 0),
    "embedding-missing": Case({"TC104"}, "inconsistent", 1),
    "untied-identical": Case({"TC105"}, "untied", 0),
    "flag-absent-gemma": Case({"TC106"}, "tied", 0),
    "nested-flags-disagree": Case({"TC107"}, "untied", 0),
    "alias-record-stale": Case({"TC108"}, "tied", 0),
    "pickle-shared-storage": Case({"TC109"}, "tied", 0),
    "pickle-views": Case({"TC110"}, "untied", 0),
    "no-config": Case({"TC111"}, "tied", 0),
    "sharded-safetensors": Case(set(), "untied", 0),
    "sharded-broken": Case({"TC003", "TC004", "TC005", "TC006"}, "untied", 1),
    "sharded-wrong-total-size": Case({"TC007"}, "untied", 0),
    "sharded-bin": Case(set(), "untied", 0),
    "index-single-file": Case(set(), "tied", 0),
    "one-tensor-per-file": Case(set(), "tied", 0),
    "legacy-pickle": Case({"TC106", "TC109"}, "tied", 0),
    "lightning-ckpt": Case(set(), "untied", 0),
    "both-formats": Case(set(), "tied", 0),
    # base_model_name_or_path is "../base", a path from the adapter folder
    "peft-adapter": Case({"TC201"}, "inconsistent", 1, target=".", cwd="adapter"),
    "t5-shared": Case({"TC103"}, "untied", 0),
    "bert-bias": Case({"TC103", "TC106"}, "tied", 0),
    "mlx-quantized": Case(set(), "untied", 0),
    "hostile-pickle": Case({"TC002"}, "not-applicable", 1),
    "truncated-safetensors": Case({"TC001"}, "not-applicable", 1),
    "not-a-pickle": Case({"TC001"}, "not-applicable", 1),
}


def test_every_fixture_folder_is_in_the_table(fixtures_dir: Path) -> None:
    folders = {p.name for p in fixtures_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    folders.discard("__pycache__")
    assert folders == set(CASES)
    readme = (fixtures_dir / "README.md").read_text()
    for name in CASES:
        assert f"`{name}`" in readme


def _where(fixtures_dir: Path, name: str, scratch: Path) -> tuple[str, Path]:
    """The source to inspect and the folder to run from: a scratch folder unless the case
    needs its own (so nothing, not even a hostile payload gone wrong, writes into fixtures/)."""
    case = CASES[name]
    cwd = fixtures_dir / name / case.cwd if case.cwd else scratch
    return case.target or str(fixtures_dir / name), cwd


@pytest.mark.parametrize("name", list(CASES))
def test_fixture_codes_and_verdict(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    case = CASES[name]
    target, cwd = _where(fixtures_dir, name, tmp_path)
    monkeypatch.chdir(cwd)
    report = tiecheck.inspect(target)
    assert {f.code for f in report.findings} == case.codes
    assert report.verdict.value == case.verdict


@pytest.mark.parametrize("name", list(CASES))
def test_fixture_through_the_cli(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # in-process (typer's runner) to keep the suite fast; test_cli.py runs real processes
    case = CASES[name]
    target, cwd = _where(fixtures_dir, name, tmp_path)
    monkeypatch.chdir(cwd)
    # --no-config: the repository's own pyproject.toml must not change what a fixture gives
    result = CliRunner().invoke(app, ["inspect", target, "--json", "--no-config", "-q"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == case.exit_code, result.output
    doc = only_report(json.loads(result.stdout))
    assert {f["code"] for f in doc["findings"]} == case.codes
    assert doc["verdict"] == case.verdict


def test_generator_reproduces_the_committed_fixtures(fixtures_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "fixtures"
    subprocess.run(
        [sys.executable, str(FIXTURES / "generate.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    produced = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(fixtures_dir)
        for p in fixtures_dir.rglob("*")
        if p.is_file() and p.name != "generate.py" and "__pycache__" not in p.parts
    )
    assert produced == committed
    different = [
        str(rel)
        for rel in produced
        if not filecmp.cmp(out / rel, fixtures_dir / rel, shallow=False)
    ]
    assert different == [], "fixtures are stale: run python fixtures/generate.py"
