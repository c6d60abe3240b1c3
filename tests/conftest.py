"""Fixtures for the core test suite (helpers live in ``core_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core_helpers import FIXTURES, REAL_LAYOUTS


@pytest.fixture
def fixtures_dir() -> Path:
    """The committed fixtures (read-only: tests copy a case into tmp_path to change it)."""
    assert (FIXTURES / "README.md").is_file(), "fixtures/ is part of the repository"
    return FIXTURES


@pytest.fixture
def real_layouts() -> Path:
    assert REAL_LAYOUTS.is_dir(), f"{REAL_LAYOUTS} is part of the repository"
    return REAL_LAYOUTS
