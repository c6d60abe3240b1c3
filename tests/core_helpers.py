"""Shared helpers for the core test suite: paths, file writers and a CLI runner.

Imported by name (``from core_helpers import ...``; pytest puts ``tests/`` on ``sys.path``)
rather than from ``conftest``, whose module name other conftest files in sub-folders reuse.
Everything here writes real files (safetensors via the library or byte by byte) into pytest's
``tmp_path``; nothing replaces the code under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
REAL_LAYOUTS = Path(__file__).resolve().parent / "data" / "real-layouts"
"""Real index and config files of released models, copied byte for byte from the team's
shared folder (its README.md gives each file's provenance) so a clean clone tests them."""
SHARED_LAYOUTS = Path(__file__).resolve().parents[2] / "shared" / "real-layouts"
INNER_LOOP = False
"""Set by conftest for ``-m "not slow and not interop"``: property tests try fewer examples."""


def examples(n: int) -> int:
    """Hypothesis examples for a property: ``n`` in the full suite, a quarter in the inner
    loop (the full suite in CI runs them all)."""
    return max(n // 4, 10) if INNER_LOOP else n


VOCAB = 64
HIDDEN = 16


def only_report(document: Any) -> Any:
    """The report of a JSON document (schema 2) that holds exactly one source's report."""
    reports = document["reports"]
    assert len(reports) == 1 and not document["errors"], document["errors"]
    return reports[0]


def codes(report: Any) -> set[str]:
    return {f.code for f in report.findings}


def findings_with(report: Any, code: str) -> list[Any]:
    return [f for f in report.findings if f.code == code]


# ---------------------------------------------------------------------------------------------
# safetensors, written byte by byte (so tests control every header field)


def raw_safetensors(
    path: Path,
    header: dict[str, Any] | bytes | str,
    data: bytes = b"",
    *,
    pad: bool = True,
    length: int | None = None,
) -> Path:
    """Write ``<u64 length><header><data>``; ``header`` may be raw bytes for invalid JSON."""
    if isinstance(header, dict):
        raw = json.dumps(header, separators=(",", ":")).encode()
    elif isinstance(header, str):
        raw = header.encode()
    else:
        raw = header
    if pad:
        raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def library_opens(path: Path) -> bool:
    """Whether safetensors' own (Rust) loader opens the file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            list(f.keys())
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# small models


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(seed: int, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    return (rng(seed).standard_normal(shape) * 0.02).astype(dtype)


def decoder_arrays(
    seed: int = 0,
    *,
    prefix: str = "model.",
    head: str | None = "lm_head.weight",
    embedding: str | None = "embed_tokens.weight",
    dtype: Any = np.float32,
) -> dict[str, np.ndarray]:
    """A tiny Llama-style state dict as numpy arrays (distinct values everywhere)."""
    g = rng(seed)

    def arr(*shape: int) -> np.ndarray:
        return (g.standard_normal(shape) * 0.02).astype(dtype)

    out: dict[str, np.ndarray] = {}
    if embedding is not None:
        out[prefix + embedding] = arr(VOCAB, HIDDEN)
    for i in range(2):
        out[f"{prefix}layers.{i}.input_layernorm.weight"] = (1 + arr(HIDDEN)).astype(dtype)
        out[f"{prefix}layers.{i}.self_attn.q_proj.weight"] = arr(HIDDEN, HIDDEN)
    out[prefix + "norm.weight"] = (1 + arr(HIDDEN)).astype(dtype)
    if head is not None:
        out[head] = arr(VOCAB, HIDDEN)
    return out


def save_numpy(path: Path, tensors: dict[str, np.ndarray], **metadata: str) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", **metadata})
    return path


def write_config(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}
LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def model_folder(
    folder: Path,
    tensors: dict[str, np.ndarray],
    config: dict[str, Any] | None,
    **metadata: str,
) -> Path:
    save_numpy(folder / "model.safetensors", tensors, **metadata)
    if config is not None:
        write_config(folder, **config)
    return folder


def write_index(folder: Path, weight_map: dict[str, str], total_size: Any, **extra: Any) -> Path:
    path = folder / "model.safetensors.index.json"
    path.write_text(
        json.dumps({"metadata": {"total_size": total_size, **extra}, "weight_map": weight_map}),
        encoding="utf-8",
    )
    return path


def payload_bytes(tensors: Iterable[np.ndarray]) -> int:
    return sum(t.nbytes for t in tensors)


# ---------------------------------------------------------------------------------------------
# the command line


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def report(self) -> Any:
        """The one report of a single-source run's JSON document."""
        return only_report(self.json())


def run_cli(*args: str | Path, cwd: Path | None = None) -> Run:
    """Run the command line in this process, through the same ``tiecheck.cli.run`` that
    ``python -m tiecheck`` calls (exit codes, error lines, broken pipes), with stdout and
    stderr captured: a child process per call proved nothing more and cost most of the inner
    loop. Tests about the process itself (signals, imports, the entry point) use
    ``run_cli_process``.

    The working directory is the system temp folder unless given, so no ``pyproject.toml``
    or ``tiecheck.toml`` of this repository is picked up as configuration.
    """
    from tiecheck.cli import run

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "NO_COLOR", "TIECHECK_DEBUG")}
    os.environ.update(COLUMNS="200", NO_COLOR="1")
    os.environ.pop("TIECHECK_DEBUG", None)
    before = Path.cwd()
    os.chdir(cwd if cwd is not None else tempfile.gettempdir())
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run([str(a) for a in args])
    finally:
        os.chdir(before)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Run(int(code), out.getvalue(), err.getvalue())


def run_cli_process(*args: str | Path, cwd: Path | None = None) -> Run:
    """Run ``python -m tiecheck`` in a child process, as a user or CI job would."""
    if cwd is None:
        cwd = Path(tempfile.gettempdir())
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("TIECHECK_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tiecheck", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def serious(report: Any) -> set[str]:
    """Codes of warnings and errors (info findings such as TC111 'no config' left out)."""
    return {f.code for f in report.findings if f.severity.value != "info"}
