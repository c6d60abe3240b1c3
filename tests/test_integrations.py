"""Integrations: the pre-commit hook (run with ``pre-commit try-repo``), the composite GitHub
Action (its steps run with bash as the runner would, the tiecheck command lines replayed through
Typer's CliRunner) and the CI documentation (its YAML and TOML examples parse and load).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_helpers import DATA, REPO, build, run_cli
from tiecheck.config import load_config

HOOKS_FILE = REPO / ".pre-commit-hooks.yaml"
ACTION_FILE = REPO / "action.yml"
README = REPO / "README.md"
GIT = shutil.which("git")
BASH = shutil.which("bash")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        [GIT or "git", "-c", "user.name=tiecheck-tests", "-c", "user.email=tests@invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=120,
    )


# ---------------------------------------------------------------------------------------------
# pre-commit


def hook() -> dict[str, Any]:
    hooks = yaml.safe_load(HOOKS_FILE.read_text(encoding="utf-8"))
    (entry,) = [h for h in hooks if h["id"] == "tiecheck"]
    return entry


def test_hook_definition() -> None:
    entry = hook()
    assert entry["language"] == "python"
    assert entry["entry"].split()[:2] == ["tiecheck", "inspect"]
    assert "--group-shards" in entry["entry"].split()
    assert entry["pass_filenames"] is True and entry["require_serial"] is True
    files, exclude = re.compile(entry["files"]), re.compile(entry["exclude"])

    def selected(path: str) -> bool:
        return bool(files.search(path)) and not exclude.search(path)

    for path in (
        "model.safetensors",
        "models/a/model-00001-of-00004.safetensors",
        "pytorch_model.bin",
        "ckpt/last.ckpt",
        "weights.pt",
        "weights.pth",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
        "models/a/config.json",
        "config.json",
        "adapter/adapter_config.json",
    ):
        assert selected(path), path
    for path in (
        "tokenizer_config.json",
        "generation_config.json",
        "models/a/tokenizer.json",
        "README.md",
        "run/training_args.bin",
        "run/optimizer.pt",
        "run/scheduler.pt",
        "run/rng_state_0.pth",
        "model.safetensors.bak",
    ):
        assert not selected(path), path
    # the entry is a command line the CLI accepts
    assert run_cli(*entry["entry"].split()[1:], "--help").code == 0


def _hook_repo(tmp_path: Path) -> Path:
    """A throwaway git copy of this working tree with the hook file committed."""
    repo = tmp_path / "hook-repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", repo / "src", ignore=ignore)
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, repo / name)
    readme = REPO / "README.md"
    if readme.is_file():
        shutil.copy2(readme, repo / "README.md")
    else:  # pyproject names it; the lead's README may not be committed yet
        (repo / "README.md").write_text("# tiecheck\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "hook repository")
    return repo


NETWORK_TROUBLE = (
    "Could not find a version",
    "No matching distribution",
    "NewConnectionError",
    "ConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Read timed out",
)


def _try_repo(
    target: Path, repo: Path, home: Path, *files: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(repo), "tiecheck", "--files", *files],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode not in (0, 1) or "An unexpected error has occurred" in proc.stdout:
        log = home / "pre-commit.log"
        text = proc.stdout + proc.stderr + (log.read_text() if log.is_file() else "")
        if any(marker in text for marker in NETWORK_TROUBLE):
            pytest.skip("pip cannot reach the package index to install the hook's environment")
        pytest.fail(f"pre-commit try-repo failed:\n{text}")
    return proc


@pytest.mark.slow
@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_pre_commit_try_repo_passes_good_and_fails_bad_checkpoints(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    repo = _hook_repo(tmp_path)
    target = tmp_path / "models-repo"
    target.mkdir()
    build(target, "tied-clean")
    build(target, "untied-head-missing")
    build(target, "sharded-untied")
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "checkpoints")
    home = tmp_path / "pre-commit-home"

    shards = sorted(str(p.relative_to(target)) for p in (target / "sharded-untied").iterdir())
    good = _try_repo(target, repo, home, "tied-clean/model.safetensors", *shards)
    assert good.returncode == 0, good.stdout
    assert re.search(r"tiecheck \(weight tying\)\.+Passed", good.stdout)

    bad = _try_repo(
        target, repo, home, "tied-clean/model.safetensors", "untied-head-missing/config.json"
    )
    assert bad.returncode == 1, bad.stdout
    assert re.search(r"tiecheck \(weight tying\)\.+Failed", bad.stdout)
    assert "TC101" in bad.stdout and "untied-head-missing" in bad.stdout


# ---------------------------------------------------------------------------------------------
# the GitHub Action


def action() -> dict[str, Any]:
    return yaml.safe_load(ACTION_FILE.read_text(encoding="utf-8"))


EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def test_action_definition() -> None:
    spec = action()
    assert spec["runs"]["using"] == "composite"
    inputs = spec["inputs"]
    assert set(inputs) == {
        "sources",
        "from-file",
        "expect",
        "fail-on",
        "ignore",
        "select",
        "config",
        "args",
        "sarif-file",
        "version",
        "python",
    }
    for name, entry in inputs.items():
        assert entry["description"] and entry["required"] is False, name
        assert isinstance(entry["default"], str), name
    assert inputs["sarif-file"]["default"] == "tiecheck.sarif"
    assert set(spec["outputs"]) == {"sarif-file", "exit-code"}
    step_ids = {s.get("id") for s in spec["runs"]["steps"]}
    for output in spec["outputs"].values():
        (expr,) = EXPRESSION.findall(output["value"])
        assert expr.split(".")[0] == "steps" and expr.split(".")[1] in step_ids
    for step in spec["runs"]["steps"]:
        assert step["shell"] == "bash"
        # inputs reach scripts as environment variables only (no script injection)
        assert "${{" not in step["run"], step["name"]
        for value in step.get("env", {}).values():
            for expr in EXPRESSION.findall(value):
                head, _, name = expr.partition(".")
                assert head in ("inputs", "github", "steps"), expr
                if head == "inputs":
                    assert name in inputs, expr


def _substitute(text: str, inputs: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match[1]
        parts = expr.split(".")
        if parts[0] == "inputs":
            return inputs[parts[1]]
        if expr == "github.action_path":
            return str(REPO)
        if parts[0] == "steps" and parts[2] == "outputs":
            return outputs.get(parts[1], {}).get(parts[3], "")
        raise AssertionError(f"unexpected expression {expr}")

    return EXPRESSION.sub(value, text)


def _read_outputs(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = value
    return values


def _shim(bin_dir: Path, log: Path) -> None:
    """A `tiecheck` on PATH that records its argv and exit code, then runs the real CLI."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "tiecheck"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "from tiecheck.cli import main\n"
        "code = 0\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'code': code}) + '\\n')\n"
        "sys.exit(code)\n"
    )
    script.chmod(0o755)


def run_action(
    workspace: Path, inputs: dict[str, str], runner_temp: Path, *, install: bool = False
) -> list[dict[str, Any]]:
    """Run the action's steps as the runner would (bash -eo pipefail, env from expressions,
    GITHUB_OUTPUT / GITHUB_PATH files); returns per step its exit code, outputs and stdout."""
    spec = action()
    values = {name: entry["default"] for name, entry in spec["inputs"].items()}
    values.update(inputs)
    outputs: dict[str, dict[str, str]] = {}
    github_path = runner_temp / "github_path"
    github_path.touch()
    results = []
    for i, step in enumerate(spec["runs"]["steps"]):
        if step["name"] == "Install tiecheck" and not install:
            continue
        script = runner_temp / f"step-{i}.sh"
        script.write_text(step["run"])
        output_file = runner_temp / f"output-{i}"
        output_file.touch()
        extra_path = [p for p in github_path.read_text().splitlines() if p]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TIECHECK_"))}
        env.update(
            {k: _substitute(str(v), values, outputs) for k, v in step.get("env", {}).items()}
        )
        env.update(
            RUNNER_TEMP=str(runner_temp),
            GITHUB_OUTPUT=str(output_file),
            GITHUB_PATH=str(github_path),
            PATH=os.pathsep.join([*reversed(extra_path), env["PATH"]]),
        )
        proc = subprocess.run(
            [BASH or "bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        step_outputs = _read_outputs(output_file)
        if step.get("id"):
            outputs[step["id"]] = step_outputs
        results.append(
            {
                "name": step["name"],
                "code": proc.returncode,
                "outputs": step_outputs,
                "stdout": proc.stdout,
                "stderr": proc.stderr,
            }
        )
        if proc.returncode != 0:
            break
    return results


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with a good and a bad model, and a `tiecheck` shim on the action's PATH."""
    space = tmp_path / "workspace"
    build(space / "models", "tied-clean")
    build(space / "models", "untied-head-missing")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    _shim(tmp_path / "shim", tmp_path / "argv.jsonl")
    (runner_temp / "github_path").write_text(str(tmp_path / "shim") + "\n")
    monkeypatch.chdir(space)
    return space


def _replay(log: Path) -> list[dict[str, Any]]:
    """Every recorded tiecheck call, run again through CliRunner: same exit code."""
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    for call in calls:
        assert call["argv"][0] == "inspect"
        assert run_cli(*call["argv"]).code == call["code"], call
    return calls


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_action_mixed_sources_fail_and_write_sarif(workspace: Path) -> None:
    runner_temp = workspace.parent / "runner-temp"
    steps = run_action(
        workspace, {"sources": "models/*", "sarif-file": "reports/tiecheck.sarif"}, runner_temp
    )
    assert [s["name"] for s in steps] == [
        "Prepare tiecheck arguments",
        "tiecheck (SARIF report)",
        "tiecheck (check)",
    ]
    prepare, sarif, check = steps
    assert prepare["code"] == 0 and sarif["code"] == 0, sarif["stderr"]
    assert sarif["outputs"] == {"sarif-file": "reports/tiecheck.sarif"}
    assert check["code"] == 1 and check["outputs"] == {"exit-code": "1"}
    assert check["stdout"].startswith(
        "::error file=models/untied-head-missing/config.json,line=9,"
        "title=TC101 untied-head-missing::"
    )

    import jsonschema

    document = json.loads((workspace / "reports" / "tiecheck.sarif").read_text())
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(document)
    assert [r["ruleId"] for r in document["runs"][0]["results"]] == ["TC101"]

    calls = _replay(workspace.parent / "argv.jsonl")
    # the shell left the glob to tiecheck, and each run got the flags the action promises
    assert calls[0]["argv"] == [
        "inspect",
        "models/*",
        "--format",
        "sarif",
        "--output",
        "reports/tiecheck.sarif",
        "--exit-zero",
        "--quiet",
    ]
    assert calls[1]["argv"] == ["inspect", "models/*", "--format", "github"]


@pytest.mark.slow
@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("inputs", "code", "flags"),
    [
        ({"fail-on": "never"}, 0, ["--fail-on", "never"]),
        ({"ignore": "TC101,TC106"}, 0, ["--ignore", "TC101,TC106"]),
        ({"select": "tied-duplicate-copy"}, 0, ["--select", "tied-duplicate-copy"]),
        ({"expect": "untied", "fail-on": "error"}, 1, ["--expect", "untied", "--fail-on", "error"]),
        ({"args": "--no-data  --no-config"}, 1, ["--no-data", "--no-config"]),
        ({"config": "ci/tiecheck.toml"}, 0, ["--config", "ci/tiecheck.toml"]),
    ],
)
def test_action_inputs_become_flags_the_cli_accepts(
    workspace: Path, inputs: dict[str, str], code: int, flags: list[str]
) -> None:
    (workspace / "ci").mkdir()
    (workspace / "ci" / "tiecheck.toml").write_text('ignore = ["TC101"]\n')
    runner_temp = workspace.parent / "runner-temp"
    steps = run_action(workspace, {"sources": "models/untied-head-missing", **inputs}, runner_temp)
    assert steps[-1]["name"] == "tiecheck (check)"
    assert steps[-1]["code"] == code, steps[-1]["stderr"]
    calls = _replay(workspace.parent / "argv.jsonl")
    for call in calls:
        assert call["argv"][1:2] == ["models/untied-head-missing"]
        assert call["argv"][2 : 2 + len(flags)] == flags


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_action_sources_from_a_list_and_an_unreadable_source(workspace: Path) -> None:
    (workspace / "list.txt").write_text("# gate these\nmodels/tied-clean\n")
    runner_temp = workspace.parent / "runner-temp"
    steps = run_action(
        workspace,
        {"sources": "models/tied-clean\n  does-not-exist\n", "from-file": "list.txt"},
        runner_temp,
    )
    _, sarif, check = steps
    # the SARIF step tolerates exit 2 and still writes its report; the check reports the error
    assert sarif["code"] == 0 and sarif["outputs"]["sarif-file"] == "tiecheck.sarif"
    document = json.loads((workspace / "tiecheck.sarif").read_text())
    assert document["runs"][0]["invocations"][0]["executionSuccessful"] is False
    assert check["code"] == 2 and check["outputs"] == {"exit-code": "2"}
    assert "::error title=tiecheck%3A cannot inspect source::does-not-exist" in check["stdout"]
    calls = _replay(workspace.parent / "argv.jsonl")
    assert calls[0]["argv"][:5] == [
        "inspect",
        "models/tied-clean",
        "does-not-exist",
        "--from-file",
        "list.txt",
    ]


@pytest.mark.slow
@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_action_installs_tiecheck_from_its_own_source(tmp_path: Path) -> None:
    """The whole action, install step included: a fresh virtual environment, pip install of
    the action path, then the checks with the installed command (no shim)."""
    workspace = tmp_path / "workspace"
    build(workspace / "models", "tied-clean")
    build(workspace / "models", "tied-duplicate")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    steps = run_action(
        workspace,
        {"sources": "models/*", "fail-on": "warning", "python": sys.executable},
        runner_temp,
        install=True,
    )
    install = steps[0]
    if install["code"] != 0:
        if any(marker in install["stderr"] for marker in NETWORK_TROUBLE):
            pytest.skip("pip cannot reach the package index to install the action")
        pytest.fail(install["stderr"])
    venv_bin = (runner_temp / "github_path").read_text().split()
    assert venv_bin == [str(runner_temp / "tiecheck-venv" / "bin")]
    # the JSON Schema ships as package data in a regular (non-editable) install
    schema = subprocess.run(
        [str(Path(venv_bin[0]) / "tiecheck"), "schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    packaged = REPO / "src" / "tiecheck" / "schema" / "report.schema.json"
    assert json.loads(schema.stdout) == json.loads(packaged.read_text())
    check = steps[-1]
    assert check["code"] == 1, check["stderr"]
    assert "::warning file=models/tied-duplicate/model.safetensors,title=TC103" in check["stdout"]
    assert (workspace / "tiecheck.sarif").is_file()


# ---------------------------------------------------------------------------------------------
# the documentation


def _ci_section() -> str:
    """The README's "Use it as a CI gate" section, up to the next top-level heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Use it as a CI gate")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _blocks(language: str) -> list[str]:
    text = _ci_section()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_docs_yaml_examples_parse() -> None:
    blocks = _blocks("yaml")
    assert len(blocks) >= 4
    for block in blocks:
        yaml.safe_load(block)
    workflow = yaml.safe_load(blocks[0])
    steps = workflow["jobs"]["tiecheck"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("github/codeql-action/upload-sarif") for u in uses)
    (ours,) = [s for s in steps if s.get("id") == "tiecheck"]
    assert set(ours["with"]) <= set(action()["inputs"])
    gitlab = next(yaml.safe_load(b) for b in blocks if "artifacts" in b)
    assert gitlab["tiecheck"]["artifacts"]["reports"]["junit"] == "tiecheck-junit.xml"
    pre_commit = next(yaml.safe_load(b) for b in blocks if b.startswith("repos:"))
    assert pre_commit["repos"][0]["hooks"][0]["id"] == hook()["id"]


def test_docs_configuration_example_loads(tmp_path: Path) -> None:
    (block,) = _blocks("toml")
    path = tmp_path / "pyproject.toml"
    path.write_text(block)
    config = load_config(path)
    assert config.base.fail_on == "warning"
    assert len(config.overrides) == 2
    policy = config.policy_for(str(tmp_path / "models" / "legacy" / "gpt2"))
    assert "TC103" not in policy.enabled and policy.fail_on is not None


def test_docs_command_lines_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    build(tmp_path / "models", "tied-clean")
    build(tmp_path / "models", "tied-duplicate")
    text = _ci_section()
    commands = re.findall(r"(?m)(?:^|- run: |- )(tiecheck inspect [^\n`]*)", text)
    assert len(commands) >= 4
    for command in commands:
        words = shlex.split(command.split(">>")[0])
        result = run_cli(*words[1:])
        assert result.code in (0, 1), (command, result.stderr)
