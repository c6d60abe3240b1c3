"""The human report: a summary, the tie groups and the findings, laid out for a terminal.

Tensor names are the thing a reader copies, so they are never broken: text is wrapped at
spaces only (a name longer than the line runs past it), groups and findings are blocks with
the names at the start of their own lines rather than cells of a box table, whose narrow
columns folded ``model.language_model.embed_tokens.weight`` mid-name at 80 columns. The
width is ``COLUMNS`` when set (also when piped), the terminal's otherwise, 100 in a pipe.
rich only colours (no markup: names from a checkpoint may hold ``[/]``).
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.text import Text

from tiecheck.analysis.ties import GroupResult, Relation, Verdict
from tiecheck.render.hints import repair_command
from tiecheck.render.text import printable, report_width
from tiecheck.report import Report
from tiecheck.rules import Severity
from tiecheck.run import Outcome, Run
from tiecheck.units import count, human_bytes

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
VERDICT_STYLE = {
    Verdict.TIED: "green",
    Verdict.UNTIED: "green",
    Verdict.INCONSISTENT: "bold red",
    Verdict.NOT_APPLICABLE: "dim",
}
RELATION_MARK = {
    Relation.REFERENCE: "",
    Relation.SHARED: " (same storage)",
    Relation.DUPLICATE: " (copy)",
    Relation.CLOSE: " (numerically identical)",
    Relation.DISTINCT: " (own values)",
    Relation.NOT_COMPARED: " (separate)",
    Relation.ABSENT: " (absent)",
    Relation.UNAVAILABLE: " (in an unreadable shard)",
}
KEY_WIDTH = 10
"""The summary's key column (``declared  ``)."""

__all__ = ["render_reports", "render_table"]


def _fill(text: str, width: int, indent: str, first: str | None = None) -> list[str]:
    """``text`` made printable and wrapped at spaces, never inside a word (a tensor name)."""
    return textwrap.wrap(
        printable(text),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent if first is None else first]


def _declared_text(report: Report) -> str:
    d = report.declared
    if d.tied is None:
        return "not declared (no config)"
    return f"{'tied' if d.tied else 'untied'} ({d.source})"


def _summary(report: Report, width: int) -> list[Text]:
    ckpt = report.checkpoint
    files = sorted(ckpt.files)
    shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    rows: list[tuple[str, str | Text]] = [
        ("source", ckpt.source),
        ("format", ckpt.kind.value + (f" (index {ckpt.index.name})" if ckpt.index else "")),
        ("files", f"{len(files)}: {shown}" if files else "none readable"),
        ("tensors", f"{len(ckpt.tensors):,} ({human_bytes(ckpt.total_bytes)})"),
    ]
    if ckpt.config is not None:
        rows.append(("config", f"{ckpt.config.name} (model_type {report.declared.model_type})"))
    rows.append(("declared", _declared_text(report)))
    if report.duplicates is None:
        rows.append(("data", "not compared (--no-data)"))
    elif report.bytes_read == 0:  # one storage, or no two tensors of one dtype and shape
        rows.append(("data", "no values needed comparing"))
    else:
        rows.append(("data", f"{human_bytes(report.bytes_read)} read to compare values"))
    if report.bytes_transferred is not None:
        where = "from the Hugging Face cache" if ckpt.origin == "hub-cache" else "by range requests"
        rows.append(("hub", f"{human_bytes(report.bytes_transferred)} transferred ({where})"))
    rows.append(("verdict", Text(report.verdict.value, style=VERDICT_STYLE[report.verdict])))
    return _fields(rows, width)


def _fields(rows: list[tuple[str, str | Text]], width: int) -> list[Text]:
    """Key/value lines, keys aligned, values wrapped under their first character."""
    lines = []
    for key, value in rows:
        first = key.ljust(KEY_WIDTH)
        if isinstance(value, Text):
            lines.append(Text(first, style="bold") + value)
            continue
        for i, line in enumerate(_fill(value, width, " " * KEY_WIDTH, first)):
            lines.append(Text(line[:KEY_WIDTH], style="bold" if i == 0 else "") + line[KEY_WIDTH:])
    return lines


def _groups(groups: list[GroupResult], width: int) -> list[Text]:
    lines = [Text("tie groups", style="bold")]
    for g in groups:
        declared = (
            "not declared"
            if g.declared is None
            else ("declared tied" if g.declared else "declared untied")
        )
        facts = [g.state.value, declared, human_bytes(g.nbytes)]
        if g.max_abs_diff is not None:
            facts.append(f"max |diff| {g.max_abs_diff:.4g}")
        facts.append("evidence: " + ", ".join(e.value for e in g.evidence))
        head, *rest = _fill("  ".join(facts), width, "      ", "  ")
        lines.append(Text(head))
        lines += [Text(line) for line in rest]
        for m in g.members:
            lines.append(Text("    " + printable(m.name) + RELATION_MARK[m.relation]))
    return lines


SHOWN_PER_RULE = 20
"""Findings of one rule shown in the table; the rest are counted (``--format concise`` and
``json`` list them all). A person does not read 20,000 stale alias records."""


def _findings(report: Report, width: int) -> list[Text]:
    lines = [Text("findings", style="bold")]
    total: Counter[str] = Counter(f.code.value for f in report.findings)
    done: Counter[str] = Counter()
    for f in report.findings:
        code = f.code.value
        done[code] += 1
        if done[code] > SHOWN_PER_RULE:
            if done[code] == total[code]:
                more = total[code] - SHOWN_PER_RULE
                lines.append(
                    Text(f"  ... and {count(more, f'more {code} finding')} (--format concise "
                         "lists every one)", style="dim")
                )  # fmt: skip
            continue
        lines.append(
            Text("  ")
            + Text(f.severity.value, style=SEVERITY_STYLE[f.severity])
            + Text(f" {code} {f.code.rule.name}", style="bold")
        )
        lines += [Text(line) for line in _fill(f.message, width, "    ")]
        command = repair_command(report, f)
        if command is not None and done[code] == 1:  # once per rule: it repairs them all
            # one line whatever the width: a command is copied, not read
            lines.append(Text("    fix: " + printable(command), style="dim"))
    return lines


def _pipe_closed() -> None:
    """rich answers a closed stdout with ``SystemExit(1)``; the caller decides the exit code."""
    raise BrokenPipeError


def render_table(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    """Every outcome in order: a report, or why its source could not be read (also said on
    stderr, but a report saved with ``-o`` must not silently leave a source out)."""
    _render(run.outcomes, out, verbose=verbose)


def render_reports(reports: list[Report], out: TextIO, *, verbose: bool = False) -> None:
    """Reports alone (the fix plan's inspection of its output)."""
    _render(reports, out, verbose=verbose)


def _render(items: Sequence[Report | Outcome], out: TextIO, *, verbose: bool) -> None:
    width = report_width(out)
    # soft_wrap: the lines are laid out here already; rich only adds colour on a terminal.
    console = Console(file=out, highlight=False, soft_wrap=True, width=width, markup=False)
    console.on_broken_pipe = _pipe_closed  # type: ignore[method-assign]
    for i, item in enumerate(items):
        lines: list[Text] = [Text("-" * width, style="dim")] if i else []
        if isinstance(item, Report):
            lines += _report_lines(item, width, verbose=verbose)
        elif item.report is not None:
            lines += _report_lines(item.report, width, verbose=verbose)
        else:
            reason = item.error_message.removeprefix(f"{item.source}: ")
            lines += _fields([("source", item.source)], width)
            error = _fields([("error", f"could not be read: {reason}")], width)
            lines += [Text(line.plain, style="bold red") for line in error]
        for line in lines:
            console.print(line)


def _report_lines(report: Report, width: int, *, verbose: bool) -> list[Text]:
    lines = _summary(report, width)
    lines.append(Text(""))
    if report.tie_groups:
        lines += _groups(report.tie_groups, width)
    else:
        lines.append(Text("no tie groups found (no embedding/head pair in the weights)"))
    lines.append(Text(""))
    if report.findings:
        lines += _findings(report, width)
        codes = " ".join(dict.fromkeys(f.code.value for f in report.findings))
        lines += [
            Text(""),
            Text(f"what each finding means and how to fix it: tiecheck rules {codes}"),
        ]
    else:
        lines.append(Text("no findings", style="green"))
    if verbose:
        extra = [f"note: {note}" for note in report.notes]
        extra += [
            f"shared storage {s.storage} in {s.file} ({s.kind.value}): " + ", ".join(s.keys)
            for s in report.shared_storage
        ]
        extra += [
            f"identical: {', '.join(d.keys)} ({d.dtype}{list(d.shape)})"
            for d in report.duplicates or []
        ]
        if extra:
            lines.append(Text(""))
        for text in extra:
            lines += [Text(line, style="dim") for line in _fill(text, width, "  ", "")]
    return lines
