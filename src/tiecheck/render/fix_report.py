"""Reports of ``fix``: the plan (what is dropped, copied, renamed, written) and its outcome."""

from __future__ import annotations

import json
from typing import Any, TextIO

from tiecheck.render.json_report import report_dict
from tiecheck.render.table import human_bytes, render_table
from tiecheck.render.text import printable
from tiecheck.report import SCHEMA_VERSION
from tiecheck.rewrite.fix import FixResult


def fix_dict(result: FixResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "schema_version": SCHEMA_VERSION,
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
            for f in plan.files
        ],
        "index": plan.index_name,
        "config": plan.config_name,
        "config_edits": plan.config_edits,
        "extra_files": [p.name for p in plan.extra_files],
        "bytes_before": plan.bytes_before,
        "bytes_after": plan.bytes_after,
        "notes": plan.notes,
        "recovered": result.recovered,
        "written": result.written,
        "after": report_dict(result.after) if result.after else None,
    }


def render_fix_json(result: FixResult, out: TextIO) -> None:
    json.dump(fix_dict(result), out, indent=2, allow_nan=False)
    out.write("\n")


def render_fix_table(result: FixResult, out: TextIO) -> None:
    plan = result.plan
    lines = [f"plan: {plan.source} -> {plan.to.value}"]
    lines += [f"  drop    {d} (alias of {k})" for d, k in plan.dropped]
    lines += [f"  copy    {s} -> {n}" for n, s in plan.copied]
    lines += [f"  rename  {a} -> {b}" for a, b in plan.renamed]
    for f in plan.files:
        how = "copied whole" if f.whole_copy_of else f"{len(f.tensors)} tensors"
        lines.append(f"  write   {f.name} ({how}, {human_bytes(f.nbytes)})")
    if plan.index_name:
        lines.append(
            f"  write   {plan.index_name} (total_size {plan.index_metadata['total_size']:,})"
        )
    lines += [f"  config  {edit}" for edit in plan.config_edits]
    lines += [f"  keep    {p.name}" for p in plan.extra_files]
    delta = plan.bytes_after - plan.bytes_before
    lines.append(
        f"  bytes   {human_bytes(plan.bytes_before)} -> {human_bytes(plan.bytes_after)} "
        f"({'saves' if delta < 0 else 'adds'} {human_bytes(abs(delta))})"
    )
    lines += [f"  note    {n}" for n in plan.notes + [f"recovered {r}" for r in result.recovered]]
    if result.dry_run:
        lines.append("dry run: nothing written")
    elif result.target is None:
        lines.append("nothing written: nothing to change")
    else:
        lines.append(f"wrote {len(result.written)} file(s) to {result.target}, verified")
    out.write(printable("\n".join(lines), newlines=True) + "\n")
    if result.after is not None:
        out.write("\noutput inspected:\n")
        render_table([result.after], out)
