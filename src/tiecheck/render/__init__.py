"""Renderers: turn a ``Run`` into text, never analysing.

Every format implements one protocol, ``Renderer(run, out, *, verbose)``: the run carries
each source's report (already filtered by its policy) or its error, the policies themselves
and the configuration that applied. ``renderer(fmt)`` dispatches over the format enum
exhaustively, importing a format's module on first use so only ``table`` imports rich.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO

if TYPE_CHECKING:
    from tiecheck.run import Run


class OutputFormat(str, Enum):
    TABLE = "table"
    CONCISE = "concise"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    JUNIT = "junit"
    MARKDOWN = "markdown"


class FixFormat(str, Enum):
    """What ``tiecheck fix`` prints: its plan and result."""

    TABLE = "table"
    JSON = "json"


class Renderer(Protocol):
    def __call__(self, run: Run, out: TextIO, *, verbose: bool = False) -> None: ...


def _unreachable(value: NoReturn) -> NoReturn:
    raise AssertionError(f"unhandled format {value!r}")


def renderer(fmt: OutputFormat) -> Renderer:
    """The renderer of a format; every member of ``OutputFormat`` has one (a test walks
    them, and a type checker proves the match exhaustive)."""
    if fmt is OutputFormat.TABLE:
        from tiecheck.render.table import render_table

        return render_table
    if fmt is OutputFormat.CONCISE:
        from tiecheck.render.concise import render_concise

        return render_concise
    if fmt is OutputFormat.JSON:
        from tiecheck.render.json_report import render_json

        return render_json
    if fmt is OutputFormat.SARIF:
        from tiecheck.render.sarif import render_sarif

        return render_sarif
    if fmt is OutputFormat.GITHUB:
        from tiecheck.render.github import render_github

        return render_github
    if fmt is OutputFormat.JUNIT:
        from tiecheck.render.junit import render_junit

        return render_junit
    if fmt is OutputFormat.MARKDOWN:
        from tiecheck.render.markdown import render_markdown

        return render_markdown
    _unreachable(fmt)


def render(run: Run, fmt: OutputFormat, out: TextIO, *, verbose: bool = False) -> None:
    renderer(fmt)(run, out, verbose=verbose)
