"""The library entry point for one source: ``tiecheck.inspect(source) -> Report``.

The whole pipeline (open -> read -> analyse) with no printing: readers give a plain
``Checkpoint`` and the ``ByteSource`` of its bytes; analyses turn them into findings; the
report carries both. ``tiecheck.check`` runs this for every source of a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tiecheck.analysis.compare import (
    DEFAULT_TOLERANCE,
    Tolerance,
    comparison_plan,
    identical_sets,
    physical_key,
)
from tiecheck.analysis.declared import declared_tie
from tiecheck.analysis.groups import find_groups
from tiecheck.analysis.integrity import (
    alias_findings,
    alias_records,
    empty_file_findings,
    index_findings,
    problem_findings,
)
from tiecheck.analysis.location import locate_findings
from tiecheck.analysis.peft import adapter_findings
from tiecheck.analysis.sharing import shared_storages, sharing_findings
from tiecheck.analysis.ties import judge_groups, unexplained_duplicates, verdict
from tiecheck.errors import SourceError
from tiecheck.model import Checkpoint, SourceKind, TensorInfo
from tiecheck.readers.bytes import ByteSource
from tiecheck.readers.source import open_source
from tiecheck.readers.tensor_data import TensorData
from tiecheck.report import DuplicateSet, Report
from tiecheck.rules import Code, finding


class Progress(Protocol):
    """What ``inspect`` reports while it reads tensor data; the CLI draws it as a bar."""

    def start(self, total_bytes: int, description: str) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def stop(self) -> None: ...


def _unavailable(checkpoint: Checkpoint) -> set[str]:
    """Names an index places in shards that could not be read (already TC001/TC003)."""
    index = checkpoint.index
    if index is None or not checkpoint.unreadable:
        return set()
    return {k for k, shard in index.weight_map.items() if shard in checkpoint.unreadable}


def inspect(
    source: str | Path,
    *,
    no_data: bool = False,
    expect: str | None = None,
    base: Path | None = None,
    progress: Progress | None = None,
    revision: str | None = None,
    token: str | None = None,
    download: bool = False,
    timeout: float | None = None,
    offline: bool = False,
    rtol: float = DEFAULT_TOLERANCE.rtol,
    atol: float = DEFAULT_TOLERANCE.atol,
    pair: tuple[str, str] | None = None,
) -> Report:
    """Inspect a checkpoint (file, index, model folder or PEFT adapter) for tie problems.

    ``no_data`` works from headers alone (no tensor byte is read); ``expect`` (``"tied"`` or
    ``"untied"``) adds TC112 when the verdict differs; ``base`` names a PEFT adapter's base
    model folder or config. A source that is not a local path but reads as a Hub repo
    (``org/name[@rev]``, ``hf://org/name[@rev][/sub]``, a huggingface.co URL) is read through
    huggingface_hub: headers by range requests, or the local cache when it holds the
    revision; ``revision``, ``token`` and ``download`` (fetch pickle-only repos into the
    cache) apply there, and ``timeout`` (seconds a Hub request may go unanswered; default
    ``TIECHECK_HUB_TIMEOUT`` or 30) and ``offline`` (the cache only, no request).
    ``rtol``/``atol``: a head within ``atol + rtol * |embedding|`` of the embedding in every
    element is a numerically identical copy, not a trained head (``numpy.allclose``'s rule).
    ``pair`` (``(embedding, head)``) names the tie group instead of the families and names:
    the embedding must be stored, the head may be absent.
    Raises ``SourceError`` only when the source cannot be opened at all; everything wrong
    inside it is a finding.
    """
    checkpoint, files = open_source(
        str(source),
        base=base,
        revision=revision,
        token=token,
        download=download,
        timeout=timeout,
        offline=offline,
    )
    with files:
        return analyse(
            checkpoint,
            files,
            no_data=no_data,
            expect=expect,
            progress=progress,
            tolerance=Tolerance(rtol, atol),
            pair=pair,
        )


def analyse(
    checkpoint: Checkpoint,
    files: ByteSource,
    *,
    no_data: bool = False,
    expect: str | None = None,
    progress: Progress | None = None,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
    pair: tuple[str, str] | None = None,
) -> Report:
    """Every analysis of an opened checkpoint; tensor bytes are read from ``files`` (any
    ``ByteSource``: files on disk, a Hub repo, bytes in memory)."""
    from tiecheck.analysis.ties import Verdict

    tensors: dict[str, TensorInfo] = {}
    for t in checkpoint.tensors:
        tensors.setdefault(t.name, t)
    if pair is not None and pair[0] not in tensors:
        raise SourceError(
            f"{checkpoint.source}: --pair names {pair[0]!r} as the embedding, but no tensor of "
            "that name is stored (see 'tiecheck inspect -v' for the names)"
        )
    findings = problem_findings(checkpoint.problems)
    records = alias_records(checkpoint)
    declared, declared_findings = declared_tie(checkpoint.config, records)
    is_adapter = checkpoint.kind is SourceKind.PEFT_ADAPTER
    if is_adapter:  # an adapter's missing config is its base's, which TC202 reports
        declared_findings = [f for f in declared_findings if f.code is not Code.NO_CONFIG]
    findings += declared_findings
    findings += index_findings(checkpoint)
    empty, notes = empty_file_findings(checkpoint)
    findings += empty
    findings += alias_findings(checkpoint, records)
    shared = shared_storages(checkpoint.tensors)
    findings += sharing_findings(shared)
    groups = find_groups(tensors, declared.family, records=records, shared=shared, pair=pair)

    data = TensorData.of(checkpoint, files, on_read=progress.advance if progress else None)
    sets: list[list[TensorInfo]] | None = None
    if not no_data:
        try:
            if progress is not None:
                plan = comparison_plan(checkpoint.tensors)
                progress.start(sum(t.nbytes for group in plan for t in group), "comparing tensors")
            sets = identical_sets(checkpoint.tensors, data)
        except OSError as e:
            findings.append(finding(Code.INVALID_FILE, f"cannot read tensor data: {e}"))
        finally:
            if progress is not None:
                progress.stop()
    identical = None
    if sets is not None:
        identical = {physical_key(t): i for i, same in enumerate(sets) for t in same}
    results, group_findings = judge_groups(
        groups,
        tensors,
        declared,
        identical,
        data if sets is not None else None,
        judge_storage=not is_adapter,
        unavailable=_unavailable(checkpoint),
        tolerance=tolerance,
    )
    findings += group_findings
    if is_adapter and checkpoint.adapter is not None:
        findings += adapter_findings(checkpoint.adapter, declared, results)
    if sets is not None:
        findings += unexplained_duplicates(sets, results, data)

    result = verdict(results, declared, findings)
    if expect is not None and result is not Verdict(expect):
        findings.append(
            finding(
                Code.UNEXPECTED_TIE_STATE,
                f"expected the model to be {Verdict(expect).value}, found {result.value}",
            )
        )
    findings.sort(key=lambda f: (-f.severity.rank, f.code.value, f.keys))
    findings = locate_findings(checkpoint, declared, findings)
    duplicates = (
        None
        if sets is None
        else [
            DuplicateSet(tuple(t.name for t in same), same[0].dtype, same[0].shape, same[0].nbytes)
            for same in sets
        ]
    )
    moved = files.bytes_transferred
    transferred = (
        None
        if moved is None and checkpoint.transferred is None
        else ((moved or 0) + (checkpoint.transferred or 0))
    )
    return Report(
        checkpoint=checkpoint,
        declared=declared,
        verdict=result,
        tie_groups=results,
        shared_storage=shared,
        duplicates=duplicates,
        findings=findings,
        bytes_read=data.bytes_read,
        notes=[*checkpoint.notes, *notes],
        bytes_transferred=transferred,
    )
