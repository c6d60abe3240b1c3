"""Policies: configuration files, command-line flags, several sources, exit codes, and the
``rules`` documentation that every format shares.

The CLI runs in-process in a temporary folder holding the configuration and tiny real
checkpoints; exit codes are the contract (0 clean, 1 findings at or above fail-on, 2 errors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ci_helpers import CASES, build, run_cli, write_model
from tiecheck.cli.sources import expand_globs, group_by_checkpoint, read_source_list
from tiecheck.config import (
    Config,
    ConfigError,
    Layer,
    Policy,
    discover_config,
    find_config,
    glob_matches,
    load_config,
    parse_codes,
)
from tiecheck.options import Expect, FailOn
from tiecheck.rules import RULES, Severity


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the current folder, with no configuration above it that
    could leak in (tmp_path's parents are checked too)."""
    assert find_config(tmp_path) is None, "a configuration above tmp_path would leak into tests"
    monkeypatch.chdir(tmp_path)
    return tmp_path


def codes_of(stdout: str) -> list[str]:
    reports = json.loads(stdout)["reports"]
    return [f["code"] for r in reports for f in r["findings"]]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# finding the configuration


def test_config_is_found_from_the_current_folder_upward(work: Path) -> None:
    write(work / "pyproject.toml", '[project]\nname = "x"\n\n[tool.tiecheck]\nfail-on = "info"\n')
    sub = work / "models" / "deep"
    sub.mkdir(parents=True)
    write(sub / "pyproject.toml", '[project]\nname = "inner, without tiecheck"\n')
    assert find_config(sub) == work / "pyproject.toml"
    write(work / "models" / "tiecheck.toml", 'fail-on = "warning"\n')
    assert find_config(sub) == work / "models" / "tiecheck.toml"
    # in one folder, tiecheck.toml wins over pyproject.toml
    write(work / "tiecheck.toml", 'fail-on = "never"\n')
    assert find_config(work) == work / "tiecheck.toml"
    assert discover_config(work).base.fail_on == "never"


def test_config_in_a_parent_folder_applies_to_a_run_started_below(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(work / "pyproject.toml", '[tool.tiecheck]\nfail-on = "warning"\n')
    build(work, "tied-duplicate")
    monkeypatch.chdir(work / "tied-duplicate")
    assert run_cli("inspect", ".", "-q").code == 1
    assert run_cli("inspect", ".", "-q", "--no-config").code == 0


# ---------------------------------------------------------------------------------------------
# each key


def test_fail_on_from_config_and_the_flag_overrides_it(work: Path) -> None:
    build(work, "tied-duplicate")  # TC103, a warning
    assert run_cli("inspect", "tied-duplicate", "-q").code == 0
    write(work / "tiecheck.toml", 'fail-on = "warning"\n')
    assert run_cli("inspect", "tied-duplicate", "-q").code == 1
    assert run_cli("inspect", "tied-duplicate", "-q", "--fail-on", "error").code == 0
    write(work / "tiecheck.toml", 'fail-on = "never"\n')
    assert run_cli("inspect", build(work, "tied-diverged"), "-q").code == 0


def test_expect_from_config_adds_tc112(work: Path) -> None:
    build(work, "sharded-untied")
    write(work / "pyproject.toml", '[tool.tiecheck]\nexpect = "tied"\n')
    result = run_cli("inspect", "sharded-untied", "--json", "-q")
    assert result.code == 1
    assert codes_of(result.stdout) == ["TC112"]
    assert "expected the model to be tied, found untied" in result.stdout
    # the flag overrides the configuration
    assert run_cli("inspect", "sharded-untied", "-q", "--expect", "untied").code == 0


def test_ignore_removes_findings_before_rendering_and_exit_code(work: Path) -> None:
    build(work, "untied-head-missing")
    write(work / "tiecheck.toml", 'ignore = ["TC101"]\n')
    result = run_cli("inspect", "untied-head-missing", "--json", "-q")
    assert result.code == 0
    document = json.loads(result.stdout)["reports"][0]
    assert document["findings"] == []
    assert document["summary"] == {"error": 0, "warning": 0, "info": 0}
    assert document["verdict"] == "inconsistent"  # a fact about the weights, not a finding
    assert any("TC101" in note for note in document["notes"])
    # every format sees the filtered report
    sarif = json.loads(run_cli("inspect", "untied-head-missing", "-f", "sarif", "-q").stdout)
    assert sarif["runs"][0]["results"] == []
    assert run_cli("inspect", "untied-head-missing", "-f", "github", "-q").stdout == ""


def test_ignore_accepts_rule_names(work: Path) -> None:
    build(work, "tied-duplicate")
    write(work / "tiecheck.toml", 'fail-on = "warning"\nignore = ["tied-duplicate-copy"]\n')
    assert run_cli("inspect", "tied-duplicate", "-q").code == 0


def test_select_reports_only_the_selected_rules(work: Path) -> None:
    build(work, "flag-absent")  # TC106 (info)
    build(work, "untied-head-missing")  # TC101 (error)
    write(work / "tiecheck.toml", 'select = ["TC106"]\n')
    result = run_cli("inspect", "flag-absent", "untied-head-missing", "--json", "-q")
    assert codes_of(result.stdout) == ["TC106"]
    assert result.code == 0
    # --select replaces the configured selection
    result = run_cli(
        "inspect", "flag-absent", "untied-head-missing", "--json", "-q", "--select", "TC101"
    )
    assert codes_of(result.stdout) == ["TC101"]
    assert result.code == 1


def test_overrides_apply_to_matching_sources_only(work: Path) -> None:
    build(work / "models", "tied-duplicate")
    build(work / "legacy", "tied-duplicate")
    write(
        work / "pyproject.toml",
        "[tool.tiecheck]\n"
        'fail-on = "warning"\n'
        "\n"
        "[[tool.tiecheck.overrides]]\n"
        'path = "legacy/**"\n'
        'ignore = ["TC103"]\n',
    )
    result = run_cli("inspect", "models/tied-duplicate", "legacy/tied-duplicate", "--json")
    reports = json.loads(result.stdout)["reports"]
    assert [[f["code"] for f in r["findings"]] for r in reports] == [["TC103"], []]
    assert result.code == 1
    assert "1 passed, 1 failed" in result.stderr
    assert "configuration: pyproject.toml [tool.tiecheck]" in result.stderr


def test_later_overrides_win_and_flags_win_over_all(work: Path) -> None:
    build(work / "models", "tied-duplicate")
    write(
        work / "tiecheck.toml",
        'fail-on = "error"\n'
        "[[overrides]]\n"
        'path = "models"\n'
        'fail-on = "warning"\n'
        "[[overrides]]\n"
        'path = ["nothing-here", "tied-duplicate"]\n'
        'fail-on = "info"\n'
        'expect = "untied"\n',
    )
    config = discover_config()
    policy = config.policy_for("models/tied-duplicate")
    assert policy.fail_on is FailOn.INFO and policy.expect is Expect.UNTIED
    result = run_cli("inspect", "models/tied-duplicate", "--json", "-q")
    assert sorted(codes_of(result.stdout)) == ["TC103", "TC112"]
    assert result.code == 1
    cli = run_cli(
        "inspect", "models/tied-duplicate", "-q", "--expect", "tied", "--fail-on", "error"
    )
    assert cli.code == 0


def test_policy_layers_select_resets_ignore_subtracts() -> None:
    layers = [
        Layer(select=parse_codes(["TC101,TC102,TC103"]), ignore=parse_codes(["TC103"])),
        Layer(ignore=parse_codes(["TC102"]), fail_on=FailOn.WARNING),
        Layer(expect=Expect.TIED),
    ]
    policy = Policy.from_layers(layers)
    assert policy.enabled == {"TC101"}
    assert policy.fail_on is FailOn.WARNING and policy.threshold is Severity.WARNING
    assert policy.expect is Expect.TIED
    # a later select re-enables what an earlier layer ignored (as ruff's --select does)
    policy = Policy.from_layers([*layers, Layer(select=parse_codes(["TC103"]))])
    assert policy.enabled == {"TC103"}
    assert Policy.from_layers([Layer(fail_on=FailOn.NEVER)]).threshold is None
    assert Policy.from_layers([]) == Policy()


def test_globs_for_overrides(tmp_path: Path) -> None:
    root = tmp_path
    assert glob_matches("models/*", str(root / "models" / "a"), root)
    assert glob_matches("models/*", str(root / "models" / "a" / "model.safetensors"), root)
    assert not glob_matches("models/*", str(root / "other" / "a"), root)
    assert glob_matches("**/legacy-*", str(root / "x" / "y" / "legacy-gpt2"), root)
    assert glob_matches("legacy-*", str(root / "x" / "legacy-gpt2" / "pytorch_model.bin"), root)
    assert glob_matches("*.bin", str(root / "x" / "pytorch_model.bin"), root)
    assert not glob_matches("x/*.bin", str(root / "x" / "y" / "pytorch_model.bin"), root)
    assert glob_matches("x/**/*.bin", str(root / "x" / "y" / "pytorch_model.bin"), root)
    assert glob_matches("model-0000[12]*", str(root / "model-00001-of-00002.safetensors"), root)
    assert glob_matches("Qwen/*", "Qwen/Qwen2.5-0.5B", root)  # a repo id, matched as written
    assert glob_matches("./models/a", "models/a", root)


# ---------------------------------------------------------------------------------------------
# configuration errors: exit 2, naming the file and the line


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        (
            "pyproject.toml",
            '[project]\nname = "x"\n\n[tool.tiecheck]\nfail_on = "warning"\n',
            5,
            "unknown key 'fail_on' in [tool.tiecheck]; did you mean 'fail-on'?",
        ),
        (
            "pyproject.toml",
            '[tool.tiecheck]\nignore = [\n  "TC106",\n  "TC999",\n]\n',
            4,
            "'ignore' in [tool.tiecheck]: unknown rule 'TC999'",
        ),
        (
            "tiecheck.toml",
            '# comment\nfail-on = "sometimes"\n',
            2,
            "'fail-on' in the top level must be one of 'error', 'warning', 'info', 'never'",
        ),
        (
            "tiecheck.toml",
            'expect = "tied"\n\n[[overrides]]\npath = "a"\n\n'
            '[[overrides]]\npath = "b"\nexpekt = 1\n',
            8,
            "unknown key 'expekt' in [[overrides]] #2; did you mean 'expect'?",
        ),
        (
            "tiecheck.toml",
            '[[overrides]]\nignore = ["TC103"]\n',
            1,
            "[[overrides]] #1 has no 'path'",
        ),
        (
            "pyproject.toml",
            '[tool.tiecheck]\nselect = "TC101"\noverrides = "x"\n',
            3,
            "'overrides' in [tool.tiecheck] must be an array of tables",
        ),
        (
            "pyproject.toml",
            "[tool.tiecheck]\nselect = [1, 2]\n",
            2,
            "'select' in [tool.tiecheck] must be a list of rule codes",
        ),
        ("tiecheck.toml", 'fail-on = "warning\n', 1, "invalid TOML"),
        (
            "tiecheck.toml",
            '[tool.tiecheck]\nfail-on = "warning"\n',
            1,
            "unknown key 'tool' in the top level; tiecheck.toml holds the settings at its top",
        ),
        (
            "pyproject.toml",
            '[tool]\ntiecheck.expect = "both"\n',
            2,
            "'expect' in [tool.tiecheck] must be one of 'tied', 'untied', not 'both'",
        ),
    ],
)
def test_configuration_errors_name_file_and_line(
    work: Path, name: str, text: str, line: int, message: str
) -> None:
    path = write(work / name, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == path and caught.value.line == line
    # shown relative to the current folder (the project root here)
    assert str(caught.value).startswith(f"{name}:{line}: ")
    assert message in str(caught.value)
    # and through the command line: exit 2, never hidden by --exit-zero
    build(work, "tied-clean")
    result = run_cli("inspect", "tied-clean", "--exit-zero")
    assert result.code == 2
    assert f"tiecheck: error: {name}:{line}: " in result.stderr


def test_config_flag_and_no_config(work: Path) -> None:
    build(work, "tied-duplicate")
    strict = write(work / "ci" / "strict.toml", 'fail-on = "warning"\n')
    assert run_cli("inspect", "tied-duplicate", "-q", "--config", strict).code == 1
    write(work / "tiecheck.toml", "bogus = 1\n")
    assert run_cli("inspect", "tied-duplicate", "-q").code == 2
    assert run_cli("inspect", "tied-duplicate", "-q", "--no-config").code == 0
    missing = run_cli("inspect", "tied-duplicate", "-q", "--config", work / "nope.toml")
    assert missing.code == 2 and "nope.toml" in missing.stderr


def test_unknown_codes_on_the_command_line_exit_2(work: Path) -> None:
    build(work, "tied-clean")
    for flag in ("--ignore", "--select"):
        result = run_cli("inspect", "tied-clean", flag, "TC101,TC99")
        assert result.code == 2
        assert f"{flag}: unknown rule 'TC99'" in result.stderr


def test_parse_codes() -> None:
    assert parse_codes(["TC101, tc102", "tied-duplicate-copy", ""]) == {"TC101", "TC102", "TC103"}
    with pytest.raises(ValueError, match="unknown rule 'TC10l'; did you mean 'TC1"):
        parse_codes(["TC10l"])


# ---------------------------------------------------------------------------------------------
# several sources, lists and globs; combined summary and exit code


def test_mixed_run_exit_code_and_combined_summary(work: Path) -> None:
    build(work, "tied-clean")
    build(work, "untied-head-missing")
    build(work, "tied-duplicate")
    result = run_cli("inspect", "tied-clean", "untied-head-missing", "tied-duplicate")
    assert result.code == 1
    assert "failed      untied-head-missing (inconsistent; 1 finding)" in result.stderr
    assert result.stderr.rstrip().endswith(
        "exit 1: 1 of 3 sources failed (fail-on error); 2 passed, 1 failed, 0 unreadable; "
        "1 error, 1 warning, 0 info; configuration: no configuration file"
    )
    # one unreadable source makes it 2, and --exit-zero does not hide that
    result = run_cli("inspect", "tied-clean", "untied-head-missing", "missing", "--exit-zero")
    assert result.code == 2
    assert "tiecheck: error: missing: no such file or folder" in result.stderr
    assert "exit 2: 1 of 3 sources could not be read; 1 passed, 1 failed, 1 unreadable" in (
        result.stderr
    )
    # --exit-zero hides findings only
    assert run_cli("inspect", "tied-clean", "untied-head-missing", "--exit-zero").code == 0
    assert run_cli("inspect", "tied-clean", "tied-duplicate").code == 0


def test_from_file_list_with_comments_and_globs(work: Path) -> None:
    build(work / "zoo", "tied-clean")
    build(work / "zoo", "untied-head-missing")
    build(work / "zoo", "tied-duplicate")
    listing = write(
        work / "checkpoints.txt",
        "# checkpoints to gate\n\nzoo/tied-clean\n   \n  # indented comment\nzoo/tied-dup*\n",
    )
    assert read_source_list(str(listing)) == ["zoo/tied-clean", "zoo/tied-dup*"]
    result = run_cli("inspect", "--from-file", listing, "--json", "-q")
    assert result.code == 0
    paths = [r["source"]["path"] for r in json.loads(result.stdout)["reports"]]
    assert paths == ["zoo/tied-clean", "zoo/tied-duplicate"]
    # arguments and a list together; '-' reads the list from stdin
    result = run_cli(
        "inspect", "zoo/untied-head-missing", "--from-file", "-", "-q", stdin="zoo/tied-clean\n"
    )
    assert result.code == 1
    # the same source from the arguments and the list is inspected once
    dup = run_cli(
        "inspect", "zoo/tied-clean", "--from-file", "-", "--json", stdin="zoo/tied-clean\n# x\n"
    )
    assert dup.code == 0 and "exit 0: 1 source passed" in dup.stderr


def test_from_file_errors_and_no_sources(work: Path) -> None:
    result = run_cli("inspect", "--from-file", "absent.txt")
    assert result.code == 2 and "--from-file absent.txt: cannot read the list" in result.stderr
    write(work / "empty.txt", "# nothing\n")
    result = run_cli("inspect", "--from-file", "empty.txt")
    assert result.code == 2 and "give at least one source" in result.stderr
    assert run_cli("inspect").code == 2


def test_globs_expand_recursively_and_an_empty_match_is_an_error(work: Path) -> None:
    for name in ("tied-clean", "tied-duplicate"):
        build(work / "a" / "b", name)
    build(work / "c", "untied-head-missing")
    assert expand_globs(["**/config.json"]) == [
        "a/b/tied-clean/config.json",
        "a/b/tied-duplicate/config.json",
        "c/untied-head-missing/config.json",
    ]
    result = run_cli("inspect", "a/**/tied-*", "--json", "-q")
    assert result.code == 0
    assert len(json.loads(result.stdout)["reports"]) == 2
    result = run_cli("inspect", "**/config.json", "-q")
    assert result.code == 1
    result = run_cli("inspect", "nothing/*", "-q")
    assert result.code == 2 and "nothing/*: no file or folder matches" in result.stderr
    # duplicates collapse
    assert expand_globs(["a/b/tied-clean", "a/b/tied-clean/", "./a/b/tied-clean"]) == [
        "a/b/tied-clean"
    ]


def test_group_shards_inspects_each_checkpoint_once(work: Path) -> None:
    sharded = build(work, "sharded-untied")
    shard_files = sorted(str(p.relative_to(work)) for p in sharded.iterdir())
    # one shard alone is read with its index (it alone would look like a model without a head)
    alone = run_cli("inspect", "sharded-untied/model-00001-of-00003.safetensors", "--json", "-q")
    assert alone.code == 0 and not {"TC101", "TC104"} & set(codes_of(alone.stdout))
    # grouped, the shards, the index and the config are the folder, once
    assert group_by_checkpoint(shard_files) == ["sharded-untied"]
    result = run_cli("inspect", "--group-shards", *shard_files, "--json", "-q")
    assert result.code == 0
    assert json.loads(result.stdout)["reports"][0]["source"]["path"] == "sharded-untied"
    # a stale pickle beside model.safetensors is not what the folder loads: kept as itself
    clean = build(work, "tied-clean")
    (clean / "pytorch_model.bin").write_bytes(b"not read by loaders")
    assert group_by_checkpoint(["tied-clean/pytorch_model.bin", "tied-clean/config.json"]) == [
        "tied-clean/pytorch_model.bin",
        "tied-clean",
    ]
    # a config.json without weights beside it is not a checkpoint
    write(work / "app" / "config.json", "{}")
    assert group_by_checkpoint(["app/config.json"]) == []
    result = run_cli("inspect", "--group-shards", "app/config.json")
    assert result.code == 0 and "no checkpoint" in result.stderr


def test_every_case_exits_as_its_severities_say(work: Path) -> None:
    for case in CASES:
        model = build(work, case.name)
        errors = {c for c in case.codes if RULES[c].severity is Severity.ERROR}
        assert run_cli("inspect", model, "-q").code == (1 if errors else 0), case.name
        assert run_cli("inspect", model, "-q", "--fail-on", "info").code == (
            1 if case.codes else 0
        ), case.name
        assert run_cli("inspect", model, "-q", "--fail-on", "never").code == 0


# ---------------------------------------------------------------------------------------------
# rules and their documentation


def test_every_rule_is_documented() -> None:
    assert list(RULES) == sorted(RULES)
    codes_now = {*(f"TC00{i}" for i in range(1, 8)), *(f"TC1{i:02d}" for i in range(1, 15))}
    assert codes_now | {"TC201"} <= set(RULES)  # codes are never removed
    for rule in RULES.values():
        for heading, text in rule.sections():
            assert len(text) > 40, (rule.code, heading)
            assert text.rstrip().endswith((".", ")")), (rule.code, heading)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)


def test_rules_command_lists_and_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    listing = run_cli("rules")
    assert listing.code == 0
    lines = listing.stdout.splitlines()
    assert [line[:5] for line in lines if not line.startswith(" ")] == [c.value for c in RULES]
    assert max(len(line) for line in lines) <= 80  # summaries wrap under their column
    start = next(i for i, line in enumerate(lines) if line.startswith("TC101"))
    follow = next(i for i, line in enumerate(lines[start + 1 :]) if not line.startswith(" "))
    entry = lines[start : start + 1 + follow]
    assert " ".join(entry).split() == [
        "TC101",
        "error",
        "untied-head-missing",
        *RULES["TC101"].summary.split(),
    ]
    one = run_cli("rules", "TC101")
    assert one.code == 0
    rule = RULES["TC101"]
    assert one.stdout == rule.doc_text(width=80) + "\n"
    assert max(len(line) for line in one.stdout.splitlines() if "`" not in line) <= 80
    for heading in ("What it means:", "Why it matters:", "How to fix:"):
        assert heading in one.stdout
    assert "tiecheck fix SRC --to tied -o OUT" in one.stdout
    by_name = run_cli("rules", "tied-but-diverged", "tc103")
    assert by_name.stdout.startswith("TC102 tied-but-diverged (error)")
    assert "\n\nTC103 tied-duplicate-copy (warning)" in by_name.stdout
    unknown = run_cli("rules", "TC999")
    assert unknown.code == 2 and "unknown rule 'TC999'" in unknown.stderr


FIX_CASE = {
    "TC101": "untied-head-missing",
    "TC102": "tied-diverged",
    "TC103": "tied-duplicate",
    "TC104": "embedding-missing",
    "TC105": "untied-identical",
    "TC106": "flag-absent",
}


def _fix_calls(text: str) -> list[list[str]]:
    """Every `tiecheck fix ...` call in a rule's text, with `a|b` alternatives expanded."""
    calls = []
    for snippet in re.findall(r"`(tiecheck fix [^`]+)`", text):
        words = snippet.split()[2:]
        variants: list[list[str]] = [[]]
        for word in words:
            options = word.split("|") if "|" in word else [word]
            variants = [[*v, o] for v in variants for o in options]
        calls += variants
    return calls


@pytest.mark.parametrize("code", sorted(FIX_CASE))
def test_documented_fix_calls_work_on_the_case_they_fix(tmp_path: Path, code: str) -> None:
    """The `tiecheck fix` calls in a rule's how-to-fix run (dry) on a checkpoint with that
    finding, and the fix the text names first really removes the finding."""
    model = build(tmp_path, FIX_CASE[code])
    calls = _fix_calls(RULES[code].how_to_fix)
    assert calls, code
    for i, call in enumerate(calls):
        out = tmp_path / f"out-{i}"
        args = [
            str(model) if w in ("SRC", "MERGED") else str(out) if w == "OUT" else w for w in call
        ]
        dry = run_cli("fix", *args, "--dry-run", "-q")
        assert dry.code in (0, 1), (call, dry.stdout, dry.stderr)
    first = [
        str(model) if w == "SRC" else str(tmp_path / "fixed") if w == "OUT" else w for w in calls[0]
    ]
    assert run_cli("fix", *first, "-q").code in (0, 1)
    after = run_cli("inspect", tmp_path / "fixed", "--json", "-q", "--no-config")
    assert code not in codes_of(after.stdout)


def test_fix_calls_of_every_rule_are_accepted_by_the_cli() -> None:
    """Rules without a tiny case here still only name options that `tiecheck fix` has."""
    for rule in RULES.values():
        for call in _fix_calls(rule.sections()[2][1]):
            options = [w for w in call if w.startswith("-")]
            for option in options:
                assert option in ("--to", "--keep", "-o", "--output", "--in-place"), (
                    rule.code,
                    call,
                )
            if "--to" in call:
                assert call[call.index("--to") + 1] in ("tied", "untied")
            if "--keep" in call:
                assert call[call.index("--keep") + 1] in ("embedding", "head")


def test_config_default_is_all_rules_and_fail_on_error() -> None:
    policy = Config().policy_for("anything")
    assert policy.enabled == set(RULES) and policy.fail_on is FailOn.ERROR
    assert policy.expect is None


def test_write_model_helper_shards(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", head="copy", tied=True, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 2
