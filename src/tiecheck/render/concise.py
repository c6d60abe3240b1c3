"""One line per finding, as ruff's ``concise`` format: ``path[:line]: CODE severity message``.

For logs and editors that jump to ``path:line``; sources that could not be opened are one
``source: error message`` line each. Input text is made printable like every text format.
"""

from __future__ import annotations

from typing import TextIO

from tiecheck.render.location import location_of, where
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
            location = location_of(report, finding)
            code, severity = finding.code.value, finding.severity.value
            line = f"{where(location)}: {code} {severity} {finding.message}"
            out.write(printable(line) + "\n")
