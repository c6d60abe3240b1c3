"""The library entry point: ``tiecheck.inspect(source) -> Report``.

This is the whole pipeline (discover -> read -> analyse) with no printing; the CLI and any
other caller only render what it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tiecheck.analysis.compare import comparison_plan, identical_sets, physical_key
from tiecheck.analysis.declared import declared_tie
from tiecheck.analysis.groups import find_groups
from tiecheck.analysis.integrity import alias_findings, alias_records, index_findings
from tiecheck.analysis.peft import adapter_findings
from tiecheck.analysis.sharing import shared_storages, sharing_findings
from tiecheck.analysis.ties import GroupResult, Verdict, judge_groups, verdict
from tiecheck.model import Checkpoint, SourceKind, TensorInfo
from tiecheck.readers.discover import plan_source
from tiecheck.readers.load import load
from tiecheck.readers.tensor_data import TensorData
from tiecheck.report import DuplicateSet, Report
from tiecheck.rules import Finding, finding


class Progress(Protocol):
    """What ``inspect`` reports while it reads tensor data; the CLI draws it as a bar."""

    def start(self, total_bytes: int, description: str) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def stop(self) -> None: ...


def _duplicate_findings(sets: list[list[TensorInfo]], results: list[GroupResult]) -> list[Finding]:
    """TC114 for identical tensors that no tie group explains."""
    grouped = [set(r.group.all_names()) for r in results]
    findings = []
    for same in sets:
        names = {t.name for t in same}
        if any(names <= g for g in grouped):
            continue
        keys = sorted(names)
        wasted = same[0].nbytes * (len(same) - 1)
        findings.append(
            finding(
                "TC114",
                f"{len(keys)} tensors hold identical bytes ({', '.join(keys[:4])}"
                f"{' ...' if len(keys) > 4 else ''}): {wasted:,} bytes stored more than once",
                keys=keys,
                file=same[0].file,
                wasted_bytes=wasted,
            )
        )
    return findings


def _compare(
    checkpoint: Checkpoint, progress: Progress | None
) -> tuple[list[list[TensorInfo]], TensorData]:
    data = TensorData(checkpoint, on_read=progress.advance if progress else None)
    if progress is not None:
        total = sum(t.nbytes for group in comparison_plan(checkpoint.tensors) for t in group)
        progress.start(total, "comparing tensors")
    return identical_sets(checkpoint.tensors, data), data


def inspect(
    source: str | Path,
    *,
    no_data: bool = False,
    expect: Verdict | str | None = None,
    base: Path | None = None,
    progress: Progress | None = None,
) -> Report:
    """Inspect a checkpoint (file, index, model folder or PEFT adapter) for tie problems.

    ``no_data`` works from headers alone (no tensor byte is read); ``expect`` adds TC112 when
    the verdict differs; ``base`` names a PEFT adapter's base model folder or config.
    Raises ``SourceError`` only when the source cannot be opened at all; everything wrong
    inside it is a finding.
    """
    plan = plan_source(str(source))
    checkpoint, findings = load(plan, base=base)
    tensors: dict[str, TensorInfo] = {}
    for t in checkpoint.tensors:
        tensors.setdefault(t.name, t)

    records = alias_records(checkpoint)
    declared, declared_findings = declared_tie(checkpoint.config, records)
    findings += declared_findings
    findings += index_findings(checkpoint)
    findings += alias_findings(checkpoint, records)
    shared = shared_storages(checkpoint.tensors)
    findings += sharing_findings(shared)
    groups = find_groups(tensors, declared.family)

    sets: list[list[TensorInfo]] | None = None
    data: TensorData | None = None
    if not no_data:
        try:
            sets, data = _compare(checkpoint, progress)
        except OSError as e:
            findings.append(finding("TC001", f"cannot read tensor data: {e}"))
        finally:
            if progress is not None:
                progress.stop()
    identical = None
    if sets is not None:
        identical = {physical_key(t): i for i, same in enumerate(sets) for t in same}
    is_adapter = checkpoint.kind is SourceKind.PEFT_ADAPTER
    try:
        results, group_findings = judge_groups(
            groups, tensors, declared, identical, data, judge_storage=not is_adapter
        )
    finally:
        if data is not None:
            data.close()
    findings += group_findings
    if is_adapter and checkpoint.adapter is not None:
        findings += adapter_findings(checkpoint.adapter, declared, results)
    if sets is not None:
        findings += _duplicate_findings(sets, results)

    result = verdict(results, declared, findings)
    if expect is not None and result is not Verdict(expect):
        findings.append(
            finding(
                "TC112", f"expected the model to be {Verdict(expect).value}, found {result.value}"
            )
        )
    findings.sort(key=lambda f: (-f.severity.rank, f.code, f.keys))
    duplicates = (
        None
        if sets is None
        else [
            DuplicateSet(tuple(t.name for t in same), same[0].dtype, same[0].shape, same[0].nbytes)
            for same in sets
        ]
    )
    return Report(
        checkpoint=checkpoint,
        declared=declared,
        verdict=result,
        tie_groups=results,
        shared_storage=shared,
        duplicates=duplicates,
        findings=findings,
        bytes_read=data.bytes_read if data else 0,
        notes=checkpoint.notes,
    )
