"""The README is part of the interface: its rule table, its commands and its promises about
the CLI must match the code, or a user copying from it is misled."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tiecheck.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _rules_table() -> list[list[str]]:
    start = README.index("<!-- rules-table:")
    end = README.index("<!-- end rules-table -->")
    rows = [line for line in README[start:end].splitlines() if line.startswith("| TC")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_readme_rule_table_is_every_rule_as_defined() -> None:
    """One row per rule, in code order, with the severity, name and summary rules.py gives."""
    rows = _rules_table()
    assert [row[0] for row in rows] == [str(code) for code in RULES]
    for code, severity, name, summary in rows:
        rule = next(r for c, r in RULES.items() if str(c) == code)
        assert severity == rule.severity.value, code
        assert name == f"`{rule.name}`", code
        assert summary.replace("\\|", "|") == rule.summary, code


def test_readme_test_command_is_what_ci_runs() -> None:
    """`.ci/run` runs exactly the README's test command, and installs what the README says."""
    section = README[README.index("## Tests") :]
    opening = section.index("```bash") + len("```bash")
    block = section[opening : section.index("```", opening)]
    install, command = block.strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    steps = [s.strip() for s in ci.splitlines() if s.strip() and not s.startswith("#")]
    assert steps[-1] == command
    for requirement in shlex.split(install)[2:]:
        if requirement != "-e":
            assert requirement in ci.replace('"$TORCH"', '"torch==2.13.0"'), requirement


def test_readme_inner_loop_command_selects_the_markers_pytest_knows() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'python -m pytest -m "not slow and not interop"' in README
    for marker in ("slow", "interop"):
        assert re.search(rf'^\s*"{marker}:', pyproject, re.M), marker


def test_readme_options_exist() -> None:
    """Every ``--option`` the README's synopses name is an option of that command."""
    from typer.main import get_command

    from tiecheck.cli import app

    click_app = get_command(app)
    for command in ("inspect", "fix"):
        synopsis = README[README.index(f"```\ntiecheck {command} SOURCE") + 4 :]
        synopsis = synopsis[: synopsis.index("```")]
        named = set(re.findall(r"(--[a-z][a-z-]*|-[a-zA-Z]\b)", synopsis))
        known = {
            opt
            for param in click_app.commands[command].params  # type: ignore[attr-defined]
            for opt in (*param.opts, *param.secondary_opts)
        }
        assert named <= known, (command, named - known)
