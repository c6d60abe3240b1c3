"""One line per finding, as ruff's ``concise`` format: ``path[:line]: CODE severity message``.

For logs and editors that jump to ``path:line``; sources that could not be opened are one
``source: error message`` line each. Input text is made printable like every text format.
"""

from __future__ import annotations

from typing import TextIO

from tiecheck.render.location import locate
from tiecheck.render.text import printable
from tiecheck.run import Run


def render_concise(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    for outcome in run.outcomes:
        if outcome.report is None:
            out.write(
                printable(f"{outcome.error_message}: error (source could not be read)") + "\n"
            )
            continue
        report = outcome.report
        for finding in report.findings:
            location = locate(report, finding)
            where = location.display + (f":{location.line}" if location.line else "")
            line = f"{where}: {finding.code.value} {finding.severity.value} {finding.message}"
            out.write(printable(line) + "\n")
