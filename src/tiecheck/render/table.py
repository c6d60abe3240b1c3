"""The human report: a summary, the tie groups and the findings, as rich tables."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tiecheck.analysis.ties import GroupResult, Relation, Verdict
from tiecheck.render.text import printable
from tiecheck.report import Report
from tiecheck.rules import Severity
from tiecheck.run import Run

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


def _row(table: Table, *cells: str | Text) -> None:
    """Add a row, every plain string (input text) made printable first."""
    table.add_row(*(printable(c) if isinstance(c, str) else c for c in cells))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def _declared_text(report: Report) -> str:
    d = report.declared
    if d.tied is None:
        return "not declared (no config)"
    return f"{'tied' if d.tied else 'untied'} ({d.source})"


LABEL_WIDTH = len("declared  ")
"""The widest label and two spaces: the values of every block line up."""


def _fields(rows: list[tuple[str, str | Text]]) -> Text:
    """Label/value lines, labels aligned. Plain lines rather than a grid: a grid pads every
    line to its widest one, leaving trailing spaces in logs and saved reports."""
    text = Text()
    for i, (label, value) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(label.ljust(LABEL_WIDTH), style="bold")
        text.append(printable(value) if isinstance(value, str) else value)
    return text


def _summary(report: Report) -> Text:
    ckpt = report.checkpoint
    files = list(ckpt.files)
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
    else:
        rows.append(("data", f"{human_bytes(report.bytes_read)} read to compare values"))
    if report.bytes_transferred is not None:
        where = "from the Hugging Face cache" if ckpt.origin == "hub-cache" else "by range requests"
        rows.append(("hub", f"{human_bytes(report.bytes_transferred)} transferred ({where})"))
    rows.append(("verdict", Text(report.verdict.value, style=VERDICT_STYLE[report.verdict])))
    return _fields(rows)


def _title(text: str) -> Text:
    """A table's title, printed on its own: rich pads a ``Table(title=...)`` to the table's
    width with trailing spaces."""
    return Text(text, style="table.title")


def _groups(groups: list[GroupResult]) -> Table:
    table = Table(expand=False)
    for column in ("state", "declared", "bytes", "max |diff|", "evidence"):
        table.add_column(column, no_wrap=True)
    table.add_column("members", overflow="fold")
    for g in groups:
        members = Text("\n".join(printable(m.name) + RELATION_MARK[m.relation] for m in g.members))
        declared = "-" if g.declared is None else ("tied" if g.declared else "untied")
        diff = g.max_abs_diff
        _row(
            table,
            g.state.value,
            declared,
            human_bytes(g.nbytes),
            "" if diff is None else f"{diff:.4g}",
            ", ".join(e.value for e in g.evidence),
            members,
        )
    return table


SHOWN_PER_RULE = 20
"""Findings of one rule shown in the table; the rest are counted (``--format concise`` and
``json`` list them all). A person does not read 20,000 stale alias records, and laying out a
table row costs rich about half a millisecond."""


def _findings(report: Report) -> Table:
    table = Table(expand=False)
    table.add_column("severity")
    table.add_column("code")
    table.add_column("message", overflow="fold")
    shown: Counter[str] = Counter(f.code.value for f in report.findings)
    done: Counter[str] = Counter()
    for f in report.findings:
        code = f.code.value
        done[code] += 1
        if done[code] <= SHOWN_PER_RULE:
            style = SEVERITY_STYLE[f.severity]
            _row(table, Text(f.severity.value, style=style), code, f.message)
        elif done[code] == shown[code]:
            more = shown[code] - SHOWN_PER_RULE
            _row(
                table,
                Text("...", style="dim"),
                code,
                f"and {more:,} more {code} finding(s) (--format concise lists every one)",
            )
    return table


def _pipe_closed() -> None:
    """rich answers a closed stdout with ``SystemExit(1)``; the caller decides the exit code."""
    raise BrokenPipeError


def render_table(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    """Every outcome in order: a report, or why its source could not be read (also said on
    stderr, but a report saved with ``-o`` must not silently leave a source out)."""
    console = _console(out)
    for i, outcome in enumerate(run.outcomes):
        if i:
            console.rule()
        if outcome.report is not None:
            _print_report(console, outcome.report, verbose=verbose)
            continue
        reason = outcome.error_message.removeprefix(f"{outcome.source}: ")
        error = Text(printable(f"could not be read: {reason}"), style="bold red")
        console.print(_fields([("source", outcome.source), ("error", error)]))


def render_reports(reports: list[Report], out: TextIO, *, verbose: bool = False) -> None:
    console = _console(out)
    for i, report in enumerate(reports):
        if i:
            console.rule()
        _print_report(console, report, verbose=verbose)


def _console(out: TextIO) -> Console:
    # Piped output (CI logs) gets a width that fits tensor names instead of rich's 80 columns.
    width = None if out.isatty() else 120
    # No markup: tensor and file names come from the checkpoint, and "[/]" in one would
    # otherwise be parsed as a closing tag (a MarkupError) or restyle the report.
    console = Console(file=out, highlight=False, soft_wrap=False, width=width, markup=False)
    console.on_broken_pipe = _pipe_closed  # type: ignore[method-assign]
    return console


def _print_report(console: Console, report: Report, *, verbose: bool) -> None:
    console.print(_summary(report))
    if report.tie_groups:
        console.print(_title("tie groups"))
        console.print(_groups(report.tie_groups))
    else:
        console.print("no tie groups found (no embedding/head pair in the weights)")
    if report.findings:
        console.print(_title("findings"))
        console.print(_findings(report))
        # the table has no room for the rules' long "how to fix"; say where it is
        codes = " ".join(dict.fromkeys(f.code.value for f in report.findings))
        console.print(f"what each finding means and how to fix it: tiecheck rules {codes}")
    else:
        console.print(Text("no findings", style="green"))
    if verbose:
        for note in report.notes:
            console.print(printable(f"note: {note}"), style="dim")
        for s in report.shared_storage:
            console.print(
                printable(
                    f"shared storage {s.storage} in {s.file} ({s.kind.value}): " + ", ".join(s.keys)
                ),
                style="dim",
            )
        for d in report.duplicates or []:
            console.print(
                printable(f"identical: {', '.join(d.keys)} ({d.dtype}{list(d.shape)})"),
                style="dim",
            )
