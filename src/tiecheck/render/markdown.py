"""A compact Markdown report for pull-request comments, job summaries and model cards.

A table with one row per source (verdict, counts, pass or fail against its ``--fail-on``), then
the findings of each source that has any, then the documentation of every rule that occurred
(what it means, why it matters, how to fix) in collapsed ``<details>`` blocks.
"""

from __future__ import annotations

import re
from typing import TextIO

from tiecheck import __version__
from tiecheck.render.location import location_of, where
from tiecheck.render.text import printable
from tiecheck.rules import RULES, Severity
from tiecheck.run import Outcome, Run
from tiecheck.units import count

_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")


def escape(text: str) -> str:
    """Plain text safe inside Markdown (and table cells): no emphasis, links, HTML or pipes."""
    text = text.replace("\r", " ").replace("\n", " ")
    return printable(_SPECIAL.sub(r"\\\1", text))


def code(text: str) -> str:
    """Inline code; backticks inside are fenced with a longer run, pipes escaped for tables."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return printable(f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|"))


def _status(outcome: Outcome) -> str:
    if outcome.report is None:
        return "**unreadable**"
    return "**fail**" if outcome.failed else "pass"


def _row(outcome: Outcome) -> str:
    report = outcome.report
    if report is None:
        cells = [code(outcome.source), "-", "-", "-", "-", _status(outcome)]
    else:
        counts = {s: sum(f.severity is s for f in report.findings) for s in Severity}
        cells = [
            code(outcome.source),
            report.verdict.value,
            str(counts[Severity.ERROR]),
            str(counts[Severity.WARNING]),
            str(counts[Severity.INFO]),
            _status(outcome),
        ]
    return "| " + " | ".join(cells) + " |"


def markdown_report(run: Run) -> str:
    outcomes = list(run.outcomes)
    failing, errors = len(run.failing), len(run.errors)
    if not outcomes:
        headline = "no sources inspected"
    elif failing or errors:
        parts = [f"{failing} failed"] if failing else []
        parts += [f"{errors} could not be read"] if errors else []
        headline = f"{' and '.join(parts)} of {count(len(outcomes), 'source')}"
    else:
        n = len(outcomes)
        headline = f"all {n} sources pass" if n > 1 else "the source passes"
    lines = [f"## tiecheck: {headline}", ""]
    if outcomes:
        lines += [
            "| source | verdict | errors | warnings | info | result |",
            "|---|---|---:|---:|---:|---|",
            *(_row(o) for o in outcomes),
            "",
        ]
    seen: list[str] = []
    for outcome in outcomes:
        if outcome.report is None:
            # the message names the source already; the line starts with it
            reason = outcome.error_message.removeprefix(f"{outcome.source}: ")
            lines += [f"**{code(outcome.source)}** could not be read: {escape(reason)}", ""]
            continue
        report = outcome.report
        if not report.findings:
            continue
        lines += [f"**{code(outcome.source)}** ({report.verdict.value})", ""]
        for finding in report.findings:
            location = location_of(report, finding)
            lines.append(
                f"- {finding.severity.value} **{finding.code.value}** {code(finding.rule.name)}: "
                f"{escape(finding.message)} ({code(where(location))})"
            )
            if finding.code not in seen:
                seen.append(finding.code)
        lines.append("")
    for code_ in seen:
        rule = RULES[code_]
        lines += [
            "<details>",
            f"<summary>{rule.code} {rule.name}: what it means and how to fix it</summary>",
            "",
        ]
        for heading, text in rule.sections():
            lines += [f"**{heading}.** {text}", ""]
        lines += ["</details>", ""]
    thresholds = sorted({o.policy.fail_on.value for o in outcomes})
    lines.append(f"<sub>tiecheck {__version__}, fail-on: {', '.join(thresholds) or 'error'}</sub>")
    return "\n".join(lines) + "\n"


def render_markdown(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    out.write(markdown_report(run))
