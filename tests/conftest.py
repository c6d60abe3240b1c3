"""Fixtures for the core test suite (helpers live in ``core_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import core_helpers
from core_helpers import FIXTURES, REAL_LAYOUTS


def _inner_loop(config: pytest.Config) -> bool:
    """``-m "not slow and not interop"``: the developers' inner loop."""
    expression = config.option.markexpr or ""
    return "not slow" in expression and "not interop" in expression


def pytest_configure(config: pytest.Config) -> None:
    # the inner loop tries a quarter of the property-test examples (the full suite all)
    core_helpers.INNER_LOOP = _inner_loop(config)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The inner loop does not import the interop modules at all: importing transformers,
    PEFT and mlx to deselect their tests took seconds of every run."""
    if _inner_loop(config) and collection_path.name == "interop" and collection_path.is_dir():
        return True
    return None


@pytest.fixture
def fixtures_dir() -> Path:
    """The committed fixtures (read-only: tests copy a case into tmp_path to change it)."""
    assert (FIXTURES / "README.md").is_file(), "fixtures/ is part of the repository"
    return FIXTURES


@pytest.fixture
def real_layouts() -> Path:
    assert REAL_LAYOUTS.is_dir(), f"{REAL_LAYOUTS} is part of the repository"
    return REAL_LAYOUTS
