"""GitHub Actions workflow commands: one annotation per finding (``::error file=...::...``).

Errors, warnings and infos become ``error``, ``warning`` and ``notice`` annotations on the file
(and line, for config and index files) the finding is about. Escaping follows the workflow
command rules: in the message ``%``, CR and LF are percent-encoded; in properties also ``:``
and ``,``. Only plain text is written: this format never imports rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from tiecheck.render.location import display_path, location_of
from tiecheck.render.text import printable
from tiecheck.rules import Severity
from tiecheck.run import Run

COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    """Workflow-command escaping of a message; other control characters (an escape sequence
    in a tensor name) are written as visible escapes, since the log is a terminal too."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return printable(text)


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    command: str, message: str, *, file: str | None = None, line: int | None = None, title: str
) -> str:
    props = []
    if file is not None:
        props.append(f"file={escape_property(file)}")
        if line is not None:
            props.append(f"line={line}")
    props.append(f"title={escape_property(title)}")
    return f"::{command} {','.join(props)}::{escape_data(message)}"


def render_github(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    for outcome in run.outcomes:
        if outcome.report is None:
            exists = Path(outcome.source).exists()
            out.write(
                annotation(
                    "error",
                    outcome.error_message,
                    file=display_path(Path(outcome.source)) if exists else None,
                    title="tiecheck: cannot inspect source",
                )
                + "\n"
            )
            continue
        report = outcome.report
        for finding in report.findings:
            location = location_of(report, finding)
            rule = finding.rule
            message = f"{finding.message}\n\nHow to fix: {rule.how_to_fix}"
            if len(run.outcomes) > 1:
                message = f"{report.checkpoint.source}: {message}"
            out.write(
                annotation(
                    COMMAND[finding.severity],
                    message,
                    file=display_path(location.path),
                    line=location.line,
                    title=f"{finding.code} {rule.name}",
                )
                + "\n"
            )
