"""Fixtures for the interoperability suite: tiny models saved once per session by the real
libraries. Nothing here imports torch or transformers at import time, so the core suite still
collects (and these tests skip) where they are not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``saved(name, layout)``: a folder with tiny model ``name`` (see ``helpers.TINY``) saved in
    ``layout``, written once per session. Treat it as read-only; use ``copied`` to edit one."""
    from .helpers import save, tiny

    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, layout: str = "safetensors") -> Path:
        if (name, layout) not in cache:
            folder = tmp_path_factory.mktemp(f"{name}-{layout}")
            cache[(name, layout)] = save(tiny(name), folder, layout)
        return cache[(name, layout)]

    return get


@pytest.fixture
def copied(saved: Callable[[str, str], Path], tmp_path: Path) -> Callable[[str, str], Path]:
    """``copied(name, layout)``: a private, editable copy of ``saved(name, layout)``."""

    def get(name: str, layout: str = "safetensors") -> Path:
        target = tmp_path / f"{name}-{layout}"
        shutil.copytree(saved(name, layout), target)
        return target

    return get
