"""Renderers: turn reports into text.

Each takes ``(reports, stream, *, verbose=False, run=None)``. ``run`` (a ``policy.Run``) carries
what the reports alone do not: each source's policy (``--fail-on``, the rules in force) and the
sources that could not be opened. Reports reach renderers already filtered by their policy.
"""

from __future__ import annotations

import importlib
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


# Each format's module and function, imported on first use so only ``table`` imports rich.
_RENDERERS: dict[OutputFormat, tuple[str, str]] = {
    OutputFormat.TABLE: ("tiecheck.render.table", "render_table"),
    OutputFormat.JSON: ("tiecheck.render.json_report", "render_json"),
    OutputFormat.SARIF: ("tiecheck.render.sarif", "render_sarif"),
    OutputFormat.GITHUB: ("tiecheck.render.github", "render_github"),
    OutputFormat.JUNIT: ("tiecheck.render.junit", "render_junit"),
    OutputFormat.MARKDOWN: ("tiecheck.render.markdown", "render_markdown"),
}


def renderer(fmt: OutputFormat) -> Renderer:
    """Look up a renderer; imported lazily so only ``table`` ever imports rich."""
    module, name = _RENDERERS[fmt]
    return getattr(importlib.import_module(module), name)


def render(
    reports: list[Report],
    fmt: OutputFormat,
    out: TextIO,
    *,
    verbose: bool = False,
    run: Run | None = None,
) -> None:
    renderer(fmt)(reports, out, verbose=verbose, run=run)
