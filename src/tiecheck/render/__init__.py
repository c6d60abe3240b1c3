"""Renderers: turn reports into text. Each takes ``(reports, stream, verbose=...)``."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TextIO

from tiecheck.report import Report


class OutputFormat(str, Enum):
    TABLE = "table"
    JSON = "json"


Renderer = Callable[..., None]


def renderer(fmt: OutputFormat) -> Renderer:
    """Look up a renderer; imported lazily so ``--format json`` never imports rich."""
    if fmt is OutputFormat.TABLE:
        from tiecheck.render.table import render_table

        return render_table
    if fmt is OutputFormat.JSON:
        from tiecheck.render.json_report import render_json

        return render_json
    raise AssertionError(f"unhandled format {fmt}")  # pragma: no cover


def render(reports: list[Report], fmt: OutputFormat, out: TextIO, *, verbose: bool = False) -> None:
    renderer(fmt)(reports, out, verbose=verbose)
