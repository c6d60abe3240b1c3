"""Golden snapshots: the exact output of every format for a fixed set of committed fixtures.

Each file in ``tests/golden`` is what one ``tiecheck`` command prints (run in-process through
the real typer app, from the repository root, on relative ``fixtures/...`` paths as a CI job
would), so a change to any report is seen and reviewed as a diff of the output a user gets:

- ``inspect`` of six fixtures in every ``--format`` (table, concise, json, sarif, github,
  junit, markdown), plus the stderr of the table run (the one-line summary);
- one multi-source run (clean, failing, warning, unreadable) in every format, and its stderr;
- ``--statistics`` as text and json; ``tiecheck rules`` (list, explained at width 100, json);
- ``fix --dry-run`` plans as table and json, and ``fix -q``'s one line.

The table is rendered as piped output: no colour, and the 120 columns ``render/table.py``
gives a pipe (it ignores ``COLUMNS`` there); ``rules`` explained is wrapped at ``COLUMNS=100``.
Two things are redacted: the repository's absolute path (``<REPO>``; only SARIF's
``originalUriBaseIds`` may hold it, see ``test_no_absolute_path_leaks``) and the version of
tiecheck (``<VERSION>``). Nothing else varies run to run (checked under several
``PYTHONHASHSEED`` values); the network is never involved (``HF_HUB_OFFLINE=1``).

Every JSON-shaped golden is also validated: report json against ``tiecheck schema``, fix json
against ``tiecheck schema fix``, SARIF against the OASIS 2.1.0 schema and JUnit against the
Jenkins xUnit XSD (``ci_helpers``).

To accept a change, rewrite the files and review the diff::

    TIECHECK_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
    git diff tests/golden

Without ``TIECHECK_UPDATE_GOLDEN=1`` a difference fails with a unified diff.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ci_helpers import REPO, parse_junit, run_cli, sarif_errors, validate_fix, validate_report
from tiecheck import __version__
from tiecheck.rules import RULES

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TIECHECK_UPDATE_GOLDEN") == "1"

SINGLE = {
    "tied-deduplicated": "fixtures/tied-deduplicated",  # clean pass, head deduplicated
    "tied-head-diverged": "fixtures/tied-head-diverged",  # TC102 error, group distinct
    "t5-shared": "fixtures/t5-shared",  # TC103 warnings, a four-member group
    "legacy-pickle": "fixtures/legacy-pickle",  # pre-zip pickle, shared storage, infos
    "sharded-broken": "fixtures/sharded-broken",  # index over shards, one missing
    "peft-adapter": "fixtures/peft-adapter/adapter",  # TC201 against ../base
}
MULTI = (
    "fixtures/tied-deduplicated",  # passes
    "fixtures/untied-head-missing",  # fails (TC101)
    "fixtures/tied-head-duplicate",  # a warning below fail-on: passes
    # cannot be opened: an error outcome, exit 2 (the suffix keeps it local: a missing
    # 'fixtures/no-such-model' would read as a Hub repo id)
    "fixtures/no-such-model.safetensors",
)
SUFFIX = {
    "table": "table.txt",
    "concise": "concise.txt",
    "json": "json",
    "sarif": "sarif.json",
    "github": "github.txt",
    "junit": "junit.xml",
    "markdown": "md",
}


def _validate_report(text: str) -> None:
    validate_report(json.loads(text))


def _validate_fix(text: str) -> None:
    validate_fix(json.loads(text))


def _validate_sarif(text: str) -> None:
    assert sarif_errors(json.loads(text)) == []


def _validate_junit(text: str) -> None:
    parse_junit(text)


def _is_json(text: str) -> None:
    json.loads(text)


VALIDATE: dict[str, Callable[[str], None]] = {
    "json": _validate_report,
    "sarif": _validate_sarif,
    "junit": _validate_junit,
}


@dataclass(frozen=True)
class Golden:
    """One command and the files its output is compared with."""

    name: str
    """the stdout golden's file name; the stderr golden replaces the suffix."""
    args: tuple[str, ...]
    code: int
    validate: Callable[[str], None] | None = None
    stderr: bool = False
    """also compare stderr (``<stem>.stderr.txt``)."""
    env: dict[str, str] = field(default_factory=dict)


def _inspect_cases() -> list[Golden]:
    codes = {
        "tied-deduplicated": 0,
        "tied-head-diverged": 1,
        "t5-shared": 0,
        "legacy-pickle": 0,
        "sharded-broken": 1,
        "peft-adapter": 1,
        "multi": 2,
    }
    runs = {**{name: (source,) for name, source in SINGLE.items()}, "multi": MULTI}
    cases = []
    for name, sources in runs.items():
        for fmt, suffix in SUFFIX.items():
            table = fmt == "table"  # the table run keeps stderr: its summary is a golden too
            args = ("inspect", *sources, "--no-config", "-f", fmt, *(() if table else ("-q",)))
            cases.append(
                Golden(f"{name}.{suffix}", args, codes[name], VALIDATE.get(fmt), stderr=table)
            )
    return cases


STATISTICS_SOURCES = (*SINGLE.values(), *MULTI[1:3])
FIX_CASES = {
    name: tuple(args.split())
    for name, args in {
        "fix-tied-head-duplicate-to-tied": "fixtures/tied-head-duplicate --to tied",
        "fix-sharded-safetensors-to-tied-keep-head": (
            "fixtures/sharded-safetensors --to tied --keep head"
        ),
        "fix-legacy-pickle-to-untied": "fixtures/legacy-pickle --to untied",
    }.items()
}

CASES = [
    *_inspect_cases(),
    Golden(
        "statistics.txt",
        ("inspect", *STATISTICS_SOURCES, "--no-config", "--statistics", "-q"),
        1,
    ),
    Golden(
        "statistics.json",
        ("inspect", *STATISTICS_SOURCES, "--no-config", "--statistics", "--json", "-q"),
        1,
        _is_json,
    ),
    Golden("rules.txt", ("rules",), 0),
    Golden("rules.json", ("rules", "--format", "json"), 0, _is_json),
    # every rule explained, wrapped at COLUMNS (the command caps it at 100)
    Golden("rules-explained.txt", ("rules", *RULES), 0, env={"COLUMNS": "100"}),
    *(
        Golden(f"{name}.table.txt", ("fix", *args, "--dry-run"), 0)
        for name, args in FIX_CASES.items()
    ),
    *(
        Golden(f"{name}.json", ("fix", *args, "--dry-run", "-f", "json"), 0, _validate_fix)
        for name, args in FIX_CASES.items()
    ),
    Golden(
        "fix-tied-head-duplicate-to-tied.line.txt",
        ("fix", *FIX_CASES["fix-tied-head-duplicate-to-tied"], "--dry-run", "-q"),
        0,
    ),
]

# The version is redacted where it stands alone (not inside a longer number or name), so a
# version "0.1" cannot eat the "0.1" of "0.102".
_VERSION = re.compile(rf"(?<![\w.]){re.escape(__version__)}(?![\w.])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters other than tab and newline: none may reach a golden (ANSI colour
included: the table is piped, and colour is off)."""


def redact(text: str) -> str:
    """The output with what depends on the machine replaced by fixed tokens."""
    for path, token in ((REPO.as_uri(), "file://<REPO>"), (str(REPO), "<REPO>")):
        text = text.replace(path, token)
    return _VERSION.sub("<VERSION>", text)


# Environment that would change rich's output of a pipe (colour forced on, a width) or the
# width ``rules`` reads; each case sets what it needs.
_ENVIRONMENT = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Run from the repository root, in a fixed environment; a golden never depends on the
    network (a source mistaken for a repo id fails the same way everywhere)."""
    monkeypatch.chdir(REPO)
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return monkeypatch


def compare(name: str, actual: str) -> None:
    """Compare with ``tests/golden/<name>``, or rewrite it in update mode."""
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8", newline="")
        return
    assert path.is_file(), f"no golden {path.name}: run TIECHECK_UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"tests/golden/{name} (expected)",
            f"tests/golden/{name} (actual)",
        )
        pytest.fail(
            f"{name} differs from its golden (TIECHECK_UPDATE_GOLDEN=1 rewrites it):\n"
            + "".join(diff),
            pytrace=False,
        )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Golden, in_repo: pytest.MonkeyPatch) -> None:
    for name, value in case.env.items():
        in_repo.setenv(name, value)
    result = run_cli(*case.args)
    assert result.code == case.code, result.stderr
    assert result.stdout.endswith("\n") or not result.stdout  # line formats: nothing to say
    assert not _CONTROL.search(result.stdout), repr(_CONTROL.search(result.stdout))
    if case.validate is not None:
        case.validate(result.stdout)  # the real output, before redaction
    compare(case.name, redact(result.stdout))
    if case.stderr:
        compare(case.name.split(".")[0] + ".stderr.txt", redact(result.stderr))
    elif result.code != 2:
        assert result.stderr == "", "-q prints nothing on stderr but the sources it cannot read"


def _golden_files() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if p.name != "README.md")


def test_no_absolute_path_leaks() -> None:
    """Sources are given relative to the folder the command runs in; every path shown must be
    too (a CI log, a SARIF file or a PR comment must not carry the runner's folders). The one
    exception is SARIF's ``originalUriBaseIds``, whose purpose is to say where ``%SRCROOT%``
    was."""
    leaking = []
    for path in _golden_files():
        text = path.read_text("utf-8")
        if path.name.endswith(".sarif.json"):
            document = json.loads(text)
            for run in document["runs"]:
                assert run.pop("originalUriBaseIds") == {"%SRCROOT%": {"uri": "file://<REPO>/"}}
            text = json.dumps(document)
        if "<REPO>" in text:
            leaking.append(path.name)
    assert leaking == []


def test_every_golden_belongs_to_a_case() -> None:
    """A golden no case writes any more is stale (update mode removes it)."""
    expected = {c.name for c in CASES} | {
        c.name.split(".")[0] + ".stderr.txt" for c in CASES if c.stderr
    }
    present = {p.name for p in _golden_files()}
    if UPDATE:
        for name in present - expected:
            (GOLDEN / name).unlink()
        return
    assert sorted(present - expected) == []
    assert sorted(expected - present) == []
