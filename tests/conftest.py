"""Fixtures for the core test suite (helpers live in ``core_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core_helpers import FIXTURES, REAL_LAYOUTS


@pytest.fixture
def fixtures_dir() -> Path:
    """The committed fixtures (read-only: tests copy a case into tmp_path to change it)."""
    if not (FIXTURES / "README.md").is_file():
        pytest.skip("fixtures/ not generated (run python fixtures/generate.py)")
    return FIXTURES


@pytest.fixture
def real_layouts() -> Path:
    if not REAL_LAYOUTS.is_dir():
        pytest.skip(f"{REAL_LAYOUTS} not present (real index/config files of released models)")
    return REAL_LAYOUTS
