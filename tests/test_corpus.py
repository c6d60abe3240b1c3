"""The hostile and broken input corpus (``tests/corpus``), each case through the real command line.

Every case runs as ``python -m tiecheck inspect CASE --json -q`` in a child process limited to
1 GiB of address space (``RLIMIT_AS``) and 30 seconds, in an empty working folder, and must give
exactly the findings and exit code ``tests/corpus/EXPECTED.toml`` lists: never a traceback, never
an "internal error", never a file created (a pickle payload's marker), never more memory than
the limit allows (a header or a zip record that merely *claims* gigabytes must not get them).

In the inner loop each case runs in this process instead (``test_case``: the same findings,
exit code and message); the bounded children are ``test_case_bounded`` (marked slow).

The children run concurrently (the machine's cores) the first time any case is asked for; each
test then checks its own case. The committed files must be exactly what ``generate.py`` writes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from core_helpers import run_cli
from hostile_helpers import PEAK_REPORTING_CLI

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CORPUS = Path(__file__).resolve().parent / "corpus"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads(
    (CORPUS / "EXPECTED.toml").read_text(encoding="utf-8")
)
MEMORY_LIMIT = 1 << 30
TIMEOUT = 30.0
MAX_RSS_MB = 128
"""Peak resident memory allowed for a case (the CLI itself takes ~35 MB); EXPECTED.toml may
raise it for a case whose content is large (``max_rss_mb``)."""


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("corpus_generate", CORPUS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def _limit_memory() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@dataclass
class Outcome:
    code: int | None
    """None when the child was killed at the timeout."""
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float | None
    """the child's peak resident memory (None where /proc is not available)."""
    workdir: Path

    def findings(self) -> list[dict[str, Any]]:
        if not self.stdout.strip():
            return []
        return [f for r in json.loads(self.stdout)["reports"] for f in r["findings"]]


def _run(source: Path, fmt: str, workdir: Path) -> Outcome:
    workdir.mkdir(parents=True)
    peak = workdir.with_name(workdir.name + ".peak")  # beside: workdir must stay empty
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TIECHECK_TEST_PEAK": str(peak)}
    env.pop("TIECHECK_DEBUG", None)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", PEAK_REPORTING_CLI, "inspect", str(source), "-f", fmt, "-q"],
            capture_output=True,
            cwd=workdir,
            env=env,
            preexec_fn=_limit_memory,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace")
        return Outcome(None, "", err, TIMEOUT, None, workdir)
    peak_mb = int(peak.read_text()) / 1024 if peak.exists() else None
    # surrogates in names are printed escaped; decode leniently so the test sees the rest
    out, err = (s.decode("utf-8", "replace") for s in (done.stdout, done.stderr))
    return Outcome(done.returncode, out, err, time.monotonic() - started, peak_mb, workdir)


def _source(case: str, runtime: Path) -> Path:
    """The committed case, or one built at test time (links, FIFOs) under ``runtime``."""
    if not EXPECTED[case].get("runtime"):
        return CORPUS / case
    path = runtime / case
    if not (path.exists() or path.is_symlink()):
        GEN.RUNTIME[case](path)
    return path


class CorpusRunner:
    """Runs every selected case (and its extra formats) once, in parallel."""

    def __init__(self, root: Path, cases: list[str]) -> None:
        self.root = root
        self.runtime = root / "runtime"
        pool = ThreadPoolExecutor(max_workers=(os.cpu_count() or 2) + 1)
        self.futures: dict[tuple[str, str], Future[Outcome]] = {}
        for i, case in enumerate(cases):
            source = self.source(case)
            for fmt in ["json", *EXPECTED[case].get("formats", [])]:
                work = root / "work" / f"{i}-{fmt}"
                self.futures[case, fmt] = pool.submit(_run, source, fmt, work)
        pool.shutdown(wait=False)

    def source(self, case: str) -> Path:
        return _source(case, self.runtime)

    def get(self, case: str, fmt: str = "json") -> Outcome:
        return self.futures[case, fmt].result()


_RUNNER: list[CorpusRunner] = []


@pytest.fixture(scope="module", autouse=True)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CorpusRunner:
    """Started before the module's first test, so the children run while the checks that do
    not need them (generator, payload liveness, library agreement) do."""
    if not _RUNNER:
        selected = [
            item.callspec.params["case"]
            for item in request.session.items
            if item.module is request.module and hasattr(item, "callspec")
            if item.originalname == "test_case_bounded" and "case" in item.callspec.params
        ]
        root = tmp_path_factory.mktemp("corpus")
        _RUNNER.append(CorpusRunner(root, list(dict.fromkeys(selected))))
    return _RUNNER[0]


def test_every_case_has_an_expectation_and_every_expectation_a_case() -> None:
    generated = set(GEN.CASES) | set(GEN.RUNTIME)
    assert set(EXPECTED) == generated
    runtime = {case for case, e in EXPECTED.items() if e.get("runtime")}
    assert runtime == set(GEN.RUNTIME)
    for case, expected in EXPECTED.items():
        assert expected["exit"] in ((0,) if case.startswith("valid/") else (1, 2)), case


def test_committed_corpus_is_what_the_generator_writes(tmp_path: Path) -> None:
    GEN.generate(tmp_path, skip=GEN.SLOW)
    fresh, committed = GEN.tree(tmp_path), GEN.tree(CORPUS)
    differ = sorted(k for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k))
    assert differ == sorted(GEN.SLOW), "run python tests/corpus/generate.py and commit the result"
    total = sum(len(content) for kind, content in committed.values() if kind == "file")
    assert total < 2_000_000
    # the two bzip2 bombs (seconds to regenerate; `generate.py --check` does): 1 GiB declared
    # in under 2 KB, compression method 12
    for case in GEN.SLOW:
        with zipfile.ZipFile(CORPUS / case) as z:
            bomb = max(z.infolist(), key=lambda i: i.file_size)
        assert (bomb.file_size, bomb.compress_type) == (1 << 30, zipfile.ZIP_BZIP2)
        assert (CORPUS / case).stat().st_size < 2000


def test_pickle_payloads_run_their_command_under_a_naive_load(tmp_path: Path) -> None:
    """Proof the marker checks can fail: ``torch.load(weights_only=False)``, what a careless
    consumer calls, runs every payload and creates its marker."""
    pytest.importorskip("torch")
    cases = {case: e["marker"] for case, e in EXPECTED.items() if "marker" in e}
    assert len(cases) >= 12
    naive = (
        "import contextlib, os, sys, torch\n"
        "for path, work in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    os.chdir(work)\n"
        "    with contextlib.suppress(Exception):\n"
        "        torch.load(path, weights_only=False)\n"
    )
    args = []
    for case, marker in cases.items():
        (tmp_path / marker).mkdir()
        args += [str(CORPUS / case), str(tmp_path / marker)]
    subprocess.run([sys.executable, "-c", naive, *args], capture_output=True, timeout=120)
    for case, marker in cases.items():
        assert (tmp_path / marker / marker).exists(), f"{case}: the payload did not run"


def test_the_libraries_agree_with_the_corpus() -> None:
    """safe_open refuses every broken safetensors case tiecheck refuses (a duplicate name is
    the one the loader accepts: TC006), and torch.load reads the valid pickle controls."""
    from core_helpers import library_opens

    for case, expected in EXPECTED.items():
        if not case.endswith(".safetensors") or expected.get("runtime"):
            continue
        # the loader accepts a duplicate name (TC006) and a file without tensors (TC008)
        accepted = expected["exit"] == 0 or expected["codes"] in (["TC006"], ["TC008"])
        assert library_opens(CORPUS / case) is accepted, case

    torch = pytest.importorskip("torch")
    for name in ("tiny-zip.bin", "tiny-legacy.bin", "surrogate-names.bin"):
        state = torch.load(CORPUS / "valid" / name, weights_only=True)
        assert all(t.shape == (4,) for t in state.values()), name
    assert torch.load(CORPUS / "valid" / "tiny-zip.bin", weights_only=True)["w"].tolist() == [
        1.0,
        2.0,
        3.0,
        4.0,
    ]


def test_fix_refuses_names_a_safetensors_header_cannot_hold(tmp_path: Path) -> None:
    """A pickled name with a lone surrogate (torch.load reads it) cannot be written as UTF-8
    JSON: fix refuses before writing (it was an internal error, exit 2, mid-write)."""
    tensor = GEN.p_tensor(GEN.p_storage("0", 4, legacy=False), (2, 2))
    data = GEN.p_state_dict(
        ("model.embed_tokens.weight", tensor),
        ("lm_head.weight", tensor),
        ("x\ud800", GEN.p_tensor(GEN.p_storage("1", 4, legacy=False), (4,))),
    )
    source = tmp_path / "pytorch_model.bin"
    source.write_bytes(GEN.zip_state(data, {"0": GEN.F32_4, "1": GEN.F32_4}))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "fix", str(source), "--to", "tied", "-o", str(out)],
        capture_output=True,
        timeout=120,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    assert err.startswith("tiecheck: error: tensor name") and "internal error" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_fix_keeps_a_config_value_with_a_lone_surrogate(tmp_path: Path) -> None:
    """Python's json reads "\\ud800" in a config; fix writes it back as the same escape."""
    import numpy as np
    from safetensors.numpy import save_file

    import tiecheck

    emb = np.arange(64, dtype=np.float32).reshape(16, 4)
    src = tmp_path / "src"
    src.mkdir()
    save_file(
        {"model.embed_tokens.weight": emb, "lm_head.weight": emb.copy()},
        str(src / "model.safetensors"),
    )
    (src / "config.json").write_text(
        '{"model_type": "llama", "tie_word_embeddings": true, "note": "\\ud800"}'
    )
    result = tiecheck.fix(src, to="tied", output=tmp_path / "out")
    assert result.after is not None and result.after.verdict.value == "tied"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["note"] == "\ud800"


def _in_process(case: str, fmt: str, tmp_path: Path) -> Outcome:
    work = tmp_path / f"work-{fmt}"
    work.mkdir()
    started = time.monotonic()
    run = run_cli("inspect", _source(case, tmp_path / "runtime"), "--format", fmt, "-q", cwd=work)
    return Outcome(run.code, run.stdout, run.stderr, time.monotonic() - started, None, work)


# The two largest cases take seconds each; the inner loop leaves them to the slow run, which
# also runs them (and every other case) as a bounded child process.
HEAVY = frozenset({"indexes/million-keys", "valid/unknown-family-8000-pairs.safetensors"})


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in HEAVY else c for c in sorted(EXPECTED)],
)
def test_case(tmp_path: Path, case: str) -> None:
    """In this process (the inner loop): the exact findings, exit code and message, in every
    format the case lists, and nothing created where tiecheck runs."""
    _check(case, lambda fmt: _in_process(case, fmt, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case_bounded(corpus: CorpusRunner, case: str) -> None:
    """As a user runs it: ``python -m tiecheck`` in a child under 1 GiB of address space and
    a time limit; also within the case's resident-memory bound."""
    _check(case, lambda fmt: corpus.get(case, fmt))


def _check(case: str, run: Callable[[str], Outcome]) -> None:
    expected = EXPECTED[case]
    marker = expected.get("marker")
    outcome = run("json")
    context = f"{case}: exit {outcome.code}, stderr {outcome.stderr[-600:]!r}"

    assert outcome.code is not None, f"{case}: still running after {TIMEOUT:.0f} s"
    assert "Traceback" not in outcome.stderr, context
    assert "internal error" not in outcome.stderr, context
    assert outcome.code == expected["exit"], context
    assert outcome.code in (0, 1, 2)
    if expected["exit"] == 0:
        assert expected["codes"] == [], "a valid control expects no findings"
    else:
        assert case.startswith("valid/") is False, "only valid controls may exit 0"

    findings = outcome.findings()
    serious = sorted({f["code"] for f in findings if f["severity"] != "info"})
    assert serious == expected["codes"], (case, findings)
    if "message" in expected:
        messages = [f["message"] for f in findings if f["severity"] != "info"]
        if outcome.code == 2:
            messages = [outcome.stderr]
        assert any(expected["message"] in m for m in messages), (expected["message"], messages)
    # memory stays near the interpreter's own, whatever a file claims
    if outcome.peak_rss_mb is not None:
        limit = expected.get("max_rss_mb", MAX_RSS_MB)
        assert outcome.peak_rss_mb < limit, f"{case}: {outcome.peak_rss_mb:.0f} MB resident"
    # nothing is created where tiecheck runs: no payload marker, no stray file
    assert list(outcome.workdir.iterdir()) == [], context
    if marker:
        assert not (outcome.workdir / marker).exists()

    for fmt in expected.get("formats", []):
        other = run(fmt)
        assert other.code == outcome.code, (fmt, other.stderr[-600:])
        assert "Traceback" not in other.stderr and "internal error" not in other.stderr, fmt
        assert list(other.workdir.iterdir()) == []
