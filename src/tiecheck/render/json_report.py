"""The JSON report: a stable, versioned document (``schema_version``) for machines and CI."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, TextIO

from tiecheck import __version__
from tiecheck.analysis.ties import GroupResult
from tiecheck.config import Policy
from tiecheck.report import SCHEMA_VERSION, Report
from tiecheck.rules import Finding, Severity
from tiecheck.run import Outcome, Run


def _number(value: float | None) -> float | str | None:
    # JSON has no Infinity; a string keeps the document strict and the fact visible.
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _group(g: GroupResult) -> dict[str, Any]:
    return {
        "kind": g.kind.value,
        "members": list(g.group.names),
        "declared": g.declared,
        "state": g.state.value,
        "stored_members": list(g.stored_members),
        "bytes": g.nbytes,
        "max_abs_diff": _number(g.max_abs_diff),
        "differing_fraction": g.differing_fraction,
        "layout": g.group.layout,
        "evidence": [e.value for e in g.evidence],
        "detail": [
            {
                "name": m.name,
                "role": m.role.value,
                "relation": m.relation.value,
                "file": m.file,
                "bytes": m.nbytes,
                "max_abs_diff": _number(m.difference.max_abs_diff) if m.difference else None,
                "differing_fraction": m.difference.fraction if m.difference else None,
                "differing": m.difference.differing if m.difference else None,
                "beyond_tolerance": m.difference.outside if m.difference else None,
            }
            for m in g.members
        ],
    }


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code.value,
        "name": f.rule.name,
        "severity": f.severity.value,
        "message": f.message,
        "keys": list(f.keys),
        "file": f.file,
        **{k: _number(v) if isinstance(v, float) else v for k, v in f.details.items()},
    }


def report_dict(report: Report) -> dict[str, Any]:
    ckpt, declared = report.checkpoint, report.declared
    per_file = Counter(t.file for t in ckpt.tensors)
    config = None
    if ckpt.config is not None or declared.tied is not None:
        config = {
            "path": ckpt.config.name if ckpt.config else None,
            "model_type": declared.model_type,
            "family": declared.family.id if declared.family else None,
            "kind": declared.kind.value if declared.kind else None,
            "declared_tie": declared.tied,
            "declared_from": declared.source,
            "declared_file": declared.file,
            "declared_key": declared.key,
            "defaulted": declared.defaulted,
            "flags": declared.flags,
            "has_lm_head": declared.has_lm_head,
        }
    counts = {
        s: sum(f.severity.value == s for f in report.findings) for s in ("error", "warning", "info")
    }
    return {
        "source": {
            "path": ckpt.source,
            "format": ckpt.kind.value,
            "index": ckpt.index.name if ckpt.index else None,
            "files": [
                {
                    "name": f.name,
                    "format": f.format.value,
                    "size": f.size,
                    "tensors": per_file[f.name],
                    "container": f.container,
                    "prefix": f.prefix or None,
                }
                for f in ckpt.files.values()
            ],
            "unreadable": sorted(ckpt.unreadable),
            "origin": ckpt.origin,
            "commit": ckpt.commit,
        },
        "config": config,
        "tensors": len(ckpt.tensors),
        "total_bytes": ckpt.total_bytes,
        "data_compared": report.duplicates is not None,
        "bytes_read": report.bytes_read,
        "bytes_transferred": report.bytes_transferred,
        "verdict": report.verdict.value,
        "tie_groups": [_group(g) for g in report.tie_groups],
        "shared_storage": [
            {"file": s.file, "storage": s.storage, "kind": s.kind.value, "keys": list(s.keys)}
            for s in report.shared_storage
        ],
        "duplicates": None
        if report.duplicates is None
        else [
            {"keys": list(d.keys), "dtype": d.dtype, "shape": list(d.shape), "bytes": d.nbytes}
            for d in report.duplicates
        ],
        "findings": [finding_dict(f) for f in report.findings],
        "summary": counts,
        "notes": report.notes,
    }


def policy_dict(policy: Policy) -> dict[str, Any]:
    return {
        "expect": policy.expect.value if policy.expect else None,
        "fail_on": policy.fail_on.value,
        "disabled": [c.value for c in policy.disabled()],
    }


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    assert outcome.report is not None
    return {
        **report_dict(outcome.report),
        "policy": policy_dict(outcome.policy),
        "passed": not outcome.failed,
    }


def run_dict(run: Run) -> dict[str, Any]:
    """The whole run, always one shape (``schema_version`` 2): every source is in
    ``reports`` or, when it could not be opened, in ``errors``."""
    counts = run.counts()
    config = run.config
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "tiecheck", "version": __version__},
        "policy": {
            "config_file": str(config.path) if config.path is not None else None,
            "table": config.table,
            "isolated": config.isolated,
            "exit_zero": run.exit_zero,
        },
        "exit_code": int(run.exit_code),
        "summary": {
            "sources": len(run.outcomes),
            "passed": len(run.outcomes) - len(run.failing) - len(run.errors),
            "failed": len(run.failing),
            "errors": len(run.errors),
            "findings": {
                s.value: counts[s] for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
            },
        },
        "reports": [outcome_dict(o) for o in run.outcomes if o.report is not None],
        "errors": [
            {"source": o.source, "message": o.error_message, "policy": policy_dict(o.policy)}
            for o in run.errors
        ],
    }


def write_json(document: object, out: TextIO) -> None:
    """Write a JSON document in pieces of about 1 MiB: ``json.dump`` writes every token with
    its own call (millions for a big run), ``json.dumps`` holds the whole text in memory."""
    pending: list[str] = []
    size = 0
    for piece in json.JSONEncoder(indent=2, allow_nan=False).iterencode(document):
        pending.append(piece)
        size += len(piece)
        if size >= 1 << 20:
            out.write("".join(pending))
            pending, size = [], 0
    pending.append("\n")
    out.write("".join(pending))


def render_json(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    write_json(run_dict(run), out)
