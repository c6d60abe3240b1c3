"""One line per finding, as ruff's ``concise`` format: ``path[:line]: CODE severity message``.

For logs and editors that jump to ``path:line``; sources that could not be opened are one
``source: error could not be read: reason`` line each. Input text is made printable like
every text format.
"""

from __future__ import annotations

from typing import TextIO

from tiecheck.render.location import location_of, where
from tiecheck.render.text import printable
from tiecheck.run import Run


def render_concise(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    for outcome in run.outcomes:
        if outcome.report is None:
            # the finding shape with "error" where the code goes: no rule applies, the
            # source itself could not be read (exit 2)
            reason = outcome.error_message.removeprefix(f"{outcome.source}: ")
            out.write(printable(f"{outcome.source}: error could not be read: {reason}") + "\n")
            continue
        report = outcome.report
        for finding in report.findings:
            location = location_of(report, finding)
            code, severity = finding.code.value, finding.severity.value
            line = f"{where(location)}: {code} {severity} {finding.message}"
            out.write(printable(line) + "\n")
