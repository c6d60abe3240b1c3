"""Property tests: for any input, each reader gives a result or a clean ``FormatError``, and
``tiecheck.inspect`` a report. Nothing else may escape.

A moderate budget (200 examples per target) runs with the suite; ``python fuzz/run.py`` runs the
same targets (``tests/fuzz_targets.py``) for minutes. The safetensors target also holds
tiecheck to the library's verdict: it accepts exactly what ``safe_open`` opens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core_helpers import examples
from fuzz_targets import (
    STRATEGIES,
    TARGETS,
    checkpoint_edits,
    index_files,
    journals,
    layouts,
    mutated_torch_files,
    pickle_files,
    policy_files,
    safetensors_files,
)

SETTINGS = settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _run(target: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        event(TARGETS[target](data, Path(scratch)))  # --hypothesis-show-statistics counts them


@SETTINGS
@given(safetensors_files())
def test_safetensors_reader_returns_a_header_or_a_format_error(data: bytes) -> None:
    _run("safetensors", data)


@SETTINGS
@given(st.binary(max_size=300))
def test_safetensors_reader_on_arbitrary_bytes(data: bytes) -> None:
    _run("safetensors", data)


@SETTINGS
@given(pickle_files())
def test_pickle_reader_returns_tensors_or_a_format_error(data: bytes) -> None:
    _run("pickle", data)


@SETTINGS
@given(mutated_torch_files())
def test_pickle_reader_on_mutated_torch_save_files(data: bytes) -> None:
    pytest.importorskip("torch")
    _run("pickle", data)


@SETTINGS
@given(index_files())
def test_index_reader_returns_an_index_or_a_format_error(data: bytes) -> None:
    _run("index", data)


@settings(SETTINGS, max_examples=examples(60))
@given(checkpoint_edits())
def test_inspect_and_fix_on_a_damaged_model_folder(data: bytes) -> None:
    """inspect reports, fix writes a verified checkpoint or refuses; the source is untouched."""
    _run("checkpoint", data)


@settings(SETTINGS, max_examples=examples(60))
@given(journals())
def test_fix_with_a_planted_journal_refuses_or_finishes_inside_its_folders(data: bytes) -> None:
    _run("journal", data)


@SETTINGS
@given(policy_files())
def test_configuration_files_load_or_fail_with_their_name(data: bytes) -> None:
    _run("policy", data)


@settings(SETTINGS, max_examples=examples(60))
@given(layouts)
def test_hostile_folder_layouts_are_reported_and_never_leak(data: bytes) -> None:
    _run("layout", data)


def test_every_target_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(TARGETS)
