"""``--statistics``: how many findings each rule produced across the run, most frequent first
(as ruff's ``--statistics``), as text or JSON."""

from __future__ import annotations

import json as json_module
from collections import Counter
from typing import TextIO

from tiecheck.rules import RULES, Code, Severity
from tiecheck.run import Run


def statistics(run: Run) -> list[tuple[Code, Severity, int]]:
    """Counts per rule and the severity the findings were reported at: a rule may report
    above its default (TC201 is an error when the adapter's copies differ), and a count shown
    at the default would understate it."""
    counts = Counter((f.code, f.severity) for r in run.reports for f in r.findings)
    rank = {severity: i for i, severity in enumerate(Severity)}
    return [
        (code, severity, count)
        for (code, severity), count in sorted(
            counts.items(), key=lambda item: (-item[1], item[0][0].value, rank[item[0][1]])
        )
    ]


def render_statistics(run: Run, out: TextIO, *, json: bool = False) -> None:
    rows = statistics(run)
    if json:
        document = [
            {
                "code": code.value,
                "name": RULES[code].name,
                "severity": severity.value,
                "count": count,
            }
            for code, severity, count in rows
        ]
        json_module.dump(document, out, indent=2)
        out.write("\n")
        return
    width = max((len(str(count)) for *_, count in rows), default=1)
    for code, severity, count in rows:
        out.write(f"{count:>{width}}  {code.value}  {severity.value:<8} {RULES[code].name}\n")
