"""The library entry point: ``tiecheck.inspect(source) -> Report``.

This is the whole pipeline (discover -> read -> analyse) with no printing; the CLI and any
other caller only render what it returns.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

from tiecheck.analysis.compare import comparison_plan, identical_sets, physical_key
from tiecheck.analysis.declared import declared_tie
from tiecheck.analysis.groups import find_groups
from tiecheck.analysis.integrity import (
    alias_findings,
    alias_records,
    empty_file_findings,
    index_findings,
)
from tiecheck.analysis.location import locate_findings
from tiecheck.analysis.peft import adapter_findings
from tiecheck.analysis.sharing import shared_storages, sharing_findings
from tiecheck.analysis.ties import GroupResult, Verdict, judge_groups, verdict
from tiecheck.errors import SourceError
from tiecheck.model import Checkpoint, SourceKind, TensorInfo
from tiecheck.readers.discover import plan_source
from tiecheck.readers.load import load
from tiecheck.readers.paths import existing_path
from tiecheck.readers.tensor_data import TensorData
from tiecheck.report import DuplicateSet, Report
from tiecheck.rules import Finding, finding


class Progress(Protocol):
    """What ``inspect`` reports while it reads tensor data; the CLI draws it as a bar."""

    def start(self, total_bytes: int, description: str) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def stop(self) -> None: ...


def _duplicate_findings(sets: list[list[TensorInfo]], results: list[GroupResult]) -> list[Finding]:
    """TC114 for identical tensors that no tie group explains.

    A set is explained when one group holds all its names. Only the groups holding the set's
    least grouped name are tried: the sets are disjoint, so this costs at most one look per
    (name, group) membership, where testing every set against every group was quadratic.
    """
    holding: dict[str, list[frozenset[str]]] = {}
    for group in {frozenset(r.group.all_names()) for r in results}:
        for name in group:
            holding.setdefault(name, []).append(group)
    findings = []
    for same in sets:
        names = {t.name for t in same}
        rarest = min((holding.get(n, []) for n in names), key=len)
        if any(names <= g for g in rarest):
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
    try:
        if progress is not None:
            total = sum(t.nbytes for group in comparison_plan(checkpoint.tensors) for t in group)
            progress.start(total, "comparing tensors")
        return identical_sets(checkpoint.tensors, data), data
    except BaseException:
        data.close()  # the caller never gets it to close (a read failed: TC001)
        raise


def _open(
    source: str,
    base: Path | None,
    revision: str | None,
    token: str | None,
    download: bool,
    timeout: float | None = None,
    offline: bool = False,
) -> tuple[Checkpoint, list[Finding]]:
    """Local paths win over repo ids of the same spelling; anything else may be a Hub repo."""
    if existing_path(source) is None:
        from tiecheck.readers.hub import load_hub, parse_hub_source

        ref = parse_hub_source(source)
        if ref is not None:
            if revision and ref.revision and revision != ref.revision:
                raise SourceError(
                    f"{source}: revision given twice ({ref.revision!r}, {revision!r})"
                )
            ref = replace(ref, revision=ref.revision or revision)
            return load_hub(
                ref, token=token, download=download, base=base, timeout=timeout, offline=offline
            )
    return load(plan_source(source), base=base)


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
    expect: Verdict | str | None = None,
    base: Path | None = None,
    progress: Progress | None = None,
    revision: str | None = None,
    token: str | None = None,
    download: bool = False,
    timeout: float | None = None,
    offline: bool = False,
) -> Report:
    """Inspect a checkpoint (file, index, model folder or PEFT adapter) for tie problems.

    ``no_data`` works from headers alone (no tensor byte is read); ``expect`` adds TC112 when
    the verdict differs; ``base`` names a PEFT adapter's base model folder or config.
    A source that is not a local path but reads as a Hub repo (``org/name[@rev]``,
    ``hf://org/name[@rev][/sub]``, a huggingface.co URL) is read through huggingface_hub:
    headers by range requests, or the local cache when it holds the revision; ``revision``,
    ``token`` and ``download`` (fetch pickle-only repos into the cache) apply there, and
    ``timeout`` (seconds a Hub request may go unanswered; default ``TIECHECK_HUB_TIMEOUT`` or
    30) and ``offline`` (the cache only, no request; also when ``HF_HUB_OFFLINE`` is set).
    Raises ``SourceError`` only when the source cannot be opened at all; everything wrong
    inside it is a finding.
    """
    checkpoint, findings = _open(str(source), base, revision, token, download, timeout, offline)
    tensors: dict[str, TensorInfo] = {}
    for t in checkpoint.tensors:
        tensors.setdefault(t.name, t)

    records = alias_records(checkpoint)
    declared, declared_findings = declared_tie(checkpoint.config, records)
    findings += declared_findings
    findings += index_findings(checkpoint)
    empty, empty_notes = empty_file_findings(checkpoint)
    findings += empty
    checkpoint.notes.extend(empty_notes)
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
            groups,
            tensors,
            declared,
            identical,
            data,
            judge_storage=not is_adapter,
            unavailable=_unavailable(checkpoint),
        )
    finally:
        if data is not None:
            data.close()
        close = getattr(checkpoint.fetch, "close", None)
        if close is not None:
            close()
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
    findings = locate_findings(checkpoint, declared, findings)
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
        bytes_transferred=getattr(checkpoint.fetch, "transferred", checkpoint.transferred),
    )
