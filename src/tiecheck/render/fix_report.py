"""Reports of ``fix``: the plan (what is dropped, copied, renamed, written) and its outcome."""

from __future__ import annotations

from typing import Any, TextIO

from tiecheck import __version__
from tiecheck.config import Policy
from tiecheck.options import Expect
from tiecheck.render.json_report import outcome_dict, write_json
from tiecheck.render.table import render_reports
from tiecheck.render.text import printable
from tiecheck.rewrite.fix import FixResult
from tiecheck.rewrite.plan import FixPlan, OutFile
from tiecheck.run import Outcome
from tiecheck.units import count, human_bytes

FIX_SCHEMA_VERSION = 1
"""Version of the ``fix --format json`` document (``tiecheck schema fix``)."""


def fix_dict(result: FixResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "schema_version": FIX_SCHEMA_VERSION,
        "tool": {"name": "tiecheck", "version": __version__},
        "exit_code": int(result.exit_code),
        "source": plan.source,
        "to": plan.to.value,
        "dry_run": result.dry_run,
        "target": str(result.target) if result.target else None,
        "dropped": [{"name": d, "alias_of": k} for d, k in plan.dropped],
        "copied": [{"name": n, "from": s} for n, s in plan.copied],
        "renamed": [{"from": a, "to": b} for a, b in plan.renamed],
        "files": [
            {
                "name": f.name,
                "tensors": len(f.tensors),
                "bytes": f.nbytes,
                "whole_copy": f.whole_copy_of is not None,
            }
            for f in _files(plan)
        ],
        "index": plan.index_name,
        "config": plan.config_name,
        "config_edits": plan.config_edits,
        "extra_files": [p.name for p in plan.extra_files],
        "bytes_before": plan.bytes_before,
        "bytes_after": plan.bytes_after,
        "changes_anything": plan.changes_anything,
        "notes": plan.notes,
        "recovered": result.recovered,
        "written": result.written,
        "after": outcome_dict(after_outcome(result)) if result.after else None,
    }


def _files(plan: FixPlan) -> list[OutFile]:
    """The files to write, by name (as a folder lists them), not in the order the plan
    happened to build them."""
    return sorted(plan.files, key=lambda f: f.name)


def after_outcome(result: FixResult) -> Outcome:
    """The re-inspection of the output, as an outcome checked against the target state."""
    assert result.after is not None
    policy = Policy(expect=Expect(result.plan.to.value))
    return Outcome(result.after.checkpoint.source, policy, result.after)


def render_fix_json(result: FixResult, out: TextIO) -> None:
    write_json(fix_dict(result), out)


def render_fix_table(result: FixResult, out: TextIO) -> None:
    plan = result.plan
    lines = [f"plan: {plan.source} -> {plan.to.value}"]
    lines += [f"  drop    {d} (alias of {k})" for d, k in plan.dropped]
    lines += [f"  copy    {s} -> {n}" for n, s in plan.copied]
    lines += [f"  rename  {a} -> {b}" for a, b in plan.renamed]
    for f in _files(plan):
        how = "copied whole" if f.whole_copy_of else count(len(f.tensors), "tensor")
        lines.append(f"  write   {f.name} ({how}, {human_bytes(f.nbytes)})")
    if plan.index_name:
        lines.append(
            f"  write   {plan.index_name} (total_size {plan.index_metadata['total_size']:,})"
        )
    lines += [f"  config  {edit}" for edit in plan.config_edits]
    lines += [f"  keep    {p.name}" for p in plan.extra_files]
    delta = plan.bytes_after - plan.bytes_before
    change = "unchanged"
    if delta:
        change = f"{'saves' if delta < 0 else 'adds'} {human_bytes(abs(delta))}"
    lines.append(
        f"  bytes   {human_bytes(plan.bytes_before)} -> {human_bytes(plan.bytes_after)} ({change})"
    )
    lines += [f"  note    {n}" for n in plan.notes + [f"recovered {r}" for r in result.recovered]]
    lines.append(outcome_line(result))
    out.write(printable("\n".join(lines), newlines=True) + "\n")
    if result.after is not None:
        out.write("\noutput inspected:\n")
        render_reports([result.after], out)


def outcome_line(result: FixResult) -> str:
    """What happened, in one line."""
    plan = result.plan
    if result.dry_run:
        what = "nothing needs changing" if not plan.changes_anything else "nothing written"
        return f"dry run: {what}"
    if result.target is None:
        return "nothing needed changing: nothing written"
    where = f"{count(len(result.written), 'file')} to {result.target}, verified"
    if not plan.changes_anything:
        return f"nothing needed changing: wrote an identical copy, {where}"
    verdict = f"; output {result.after.verdict.value}" if result.after is not None else ""
    return f"wrote {where}{verdict}"


def render_fix_line(result: FixResult, out: TextIO) -> None:
    """``fix -q``: the outcome in one line."""
    out.write(printable(f"{result.plan.source} -> {result.plan.to.value}: {outcome_line(result)}"))
    out.write("\n")
