"""``--statistics``: how many findings each rule produced across the run, most frequent first
(as ruff's ``--statistics``), as text or JSON."""

from __future__ import annotations

import json as json_module
from collections import Counter
from typing import TextIO

from tiecheck.rules import RULES, Code
from tiecheck.run import Run


def statistics(run: Run) -> list[tuple[Code, int]]:
    counts = Counter(f.code for r in run.reports for f in r.findings)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0].value))


def render_statistics(run: Run, out: TextIO, *, json: bool = False) -> None:
    rows = statistics(run)
    if json:
        document = [
            {
                "code": code.value,
                "name": RULES[code].name,
                "severity": RULES[code].severity.value,
                "count": count,
            }
            for code, count in rows
        ]
        json_module.dump(document, out, indent=2)
        out.write("\n")
        return
    width = max((len(str(count)) for _, count in rows), default=1)
    for code, count in rows:
        rule = RULES[code]
        out.write(f"{count:>{width}}  {code.value}  {rule.severity.value:<8} {rule.name}\n")
