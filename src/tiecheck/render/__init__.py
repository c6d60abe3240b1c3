"""Renderers: turn reports into text.

Each takes ``(reports, stream, *, verbose=False, run=None)``. ``run`` (a ``policy.Run``) carries
what the reports alone do not: each source's policy (``--fail-on``, the rules in force) and the
sources that could not be opened. Reports reach renderers already filtered by their policy.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, TextIO

from tiecheck.report import Report

if TYPE_CHECKING:
    from tiecheck.policy import Run


class OutputFormat(str, Enum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    GITHUB = "github"
    JUNIT = "junit"
    MARKDOWN = "markdown"


RUN_FORMATS = frozenset(
    {OutputFormat.SARIF, OutputFormat.GITHUB, OutputFormat.JUNIT, OutputFormat.MARKDOWN}
)
"""Formats that describe the whole run, so they are written even when no source could be
opened (a CI step uploading the SARIF or JUnit file must find one)."""

Renderer = Callable[..., None]


def renderer(fmt: OutputFormat) -> Renderer:
    """Look up a renderer; imported lazily so only ``table`` ever imports rich."""
    if fmt is OutputFormat.TABLE:
        from tiecheck.render.table import render_table

        return render_table
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
    raise AssertionError(f"unhandled format {fmt}")  # pragma: no cover


def render(
    reports: list[Report],
    fmt: OutputFormat,
    out: TextIO,
    *,
    verbose: bool = False,
    run: Run | None = None,
) -> None:
    renderer(fmt)(reports, out, verbose=verbose, run=run)
