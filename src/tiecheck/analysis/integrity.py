"""Index/shard agreement and alias records: the checks loaders skip.

huggingface_hub's maintainers said index consistency "must be checked downstream" (#4725);
this is downstream. Only readable files are judged: a missing shard is already TC003, and
blaming each of its tensors again would bury the one finding that matters.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable

from tiecheck.model import Checkpoint, FileFormat, Problem, ProblemKind
from tiecheck.rules import Code, Finding, finding
from tiecheck.units import count

LISTED = 5
"""How many names a message spells out before summarising the rest as a count."""


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED])
    return shown + (f" and {len(keys) - LISTED} more" if len(keys) > LISTED else "")


def _stored_by_file(checkpoint: Checkpoint) -> dict[str, set[str]]:
    stored: dict[str, set[str]] = defaultdict(set)
    for t in checkpoint.tensors:
        stored[t.file].add(t.stored_name)
    return stored


_PROBLEM_CODES = {
    ProblemKind.INVALID_FILE: Code.INVALID_FILE,
    ProblemKind.UNSAFE_PICKLE: Code.UNSAFE_PICKLE,
    ProblemKind.MISSING_SHARD: Code.MISSING_SHARD,
    ProblemKind.REPEATED_KEY: Code.TENSOR_STORED_TWICE,
    ProblemKind.BASE_NOT_FOUND: Code.ADAPTER_BASE_NOT_FOUND,
}


def problem_findings(problems: Iterable[Problem]) -> list[Finding]:
    """What the readers found wrong with the files, as findings (the one place reader
    problems become rule codes)."""
    return [finding(_PROBLEM_CODES[p.kind], p.message, keys=p.keys, file=p.file) for p in problems]


def index_findings(checkpoint: Checkpoint) -> list[Finding]:
    index = checkpoint.index
    findings: list[Finding] = []
    stored = _stored_by_file(checkpoint)
    folder = index.path.parent if index else checkpoint.root

    @functools.cache
    def shard_name(shard: str) -> str:
        path = folder / shard
        try:
            return path.relative_to(checkpoint.root).as_posix()
        except ValueError:
            return shard

    if index is not None:
        missing: dict[str, list[str]] = defaultdict(list)
        for key, shard in index.weight_map.items():
            name = shard_name(shard)
            if name in checkpoint.files and key not in stored[name]:
                missing[name].append(key)
        for name, keys in missing.items():
            findings.append(
                finding(
                    Code.INDEX_TENSOR_NOT_IN_SHARD,
                    f"{index.name} maps {count(len(keys), 'tensor')} to {name}, which does not "
                    f"hold them: {_names(keys)}",
                    keys=keys,
                    file=name,
                )
            )
        unlisted: dict[str, list[str]] = defaultdict(list)
        for name in checkpoint.files:
            unlisted[name] = sorted(k for k in stored[name] if k not in index.weight_map)
        for name, keys in unlisted.items():
            if keys:
                findings.append(
                    finding(
                        Code.TENSOR_NOT_IN_INDEX,
                        f"{name} holds {count(len(keys), 'tensor')} that {index.name} does not "
                        f"list (loaders will not load them): {_names(keys)}",
                        keys=keys,
                        file=name,
                    )
                )
    findings += _stored_twice(checkpoint)
    findings += _total_size(checkpoint)
    return findings


TRAINING_STATE = re.compile(
    r"^(optimizer|scheduler|scaler|trainer_state|training_args|rng_state(_\d+)?)\.(pt|pth|bin|json)$"
)
"""Files a training run writes beside its checkpoints that are not model weights."""


def empty_file_findings(checkpoint: Checkpoint) -> tuple[list[Finding], list[str]]:
    """TC008 for every readable weight file that holds no tensor; training-state files (named
    as Trainer and accelerate name them) get a note instead: they are not weights."""
    counts: dict[str, int] = defaultdict(int)
    for t in checkpoint.tensors:
        counts[t.file] += 1
    findings, notes = [], []
    for name, file in checkpoint.files.items():
        if counts[name]:
            continue
        base = name.rpartition("/")[2]
        if TRAINING_STATE.match(base):
            notes.append(f"{name} is training state, not model weights; it holds no tensors")
            continue
        what = (
            "an empty state dict or plain values"
            if file.format is not FileFormat.SAFETENSORS
            else "an empty header"
        )
        findings.append(
            finding(
                Code.NO_TENSORS,
                f"{name} holds no tensors ({what}): a loader finds none of the model's "
                "parameters in it",
                file=name,
            )
        )
    return findings, notes


def _stored_twice(checkpoint: Checkpoint) -> list[Finding]:
    files_of: dict[str, list[str]] = defaultdict(list)
    for t in checkpoint.tensors:
        files_of[t.name].append(t.file)
    findings = []
    for key, files in files_of.items():
        distinct = sorted(set(files))
        if len(distinct) > 1:
            findings.append(
                finding(
                    Code.TENSOR_STORED_TWICE,
                    f"{key!r} is stored in {len(distinct)} files ({', '.join(distinct)}); "
                    "which copy "
                    "a loader uses depends on load order",
                    keys=[key],
                    file=distinct[1],
                )
            )
    return findings


def _total_size(checkpoint: Checkpoint) -> list[Finding]:
    index = checkpoint.index
    if index is None or index.total_size is None or checkpoint.unreadable:
        return []
    tensors_sum = checkpoint.total_bytes
    storages = {(t.file, t.storage.key): t.storage.nbytes for t in checkpoint.tensors if t.storage}
    accepted = {tensors_sum}
    if any(f.format is not FileFormat.SAFETENSORS for f in checkpoint.files.values()):
        # transformers counts pickled shards either per tensor or per unique storage.
        accepted.add(
            sum(storages.values()) + sum(t.nbytes for t in checkpoint.tensors if t.storage is None)
        )
    declared = index.total_size
    if declared in accepted:
        return []
    return [
        finding(
            Code.TOTAL_SIZE_MISMATCH,
            f"{index.name} metadata.total_size is {_amount(declared)} but the shards hold "
            f"{tensors_sum} bytes of tensor data "
            f"(difference {_amount(tensors_sum - declared, '+')})",
            file=index.name,
            declared=declared,
            stored=tensors_sum,
        )
    ]


def _amount(value: int | float, sign: str = "") -> str:
    """A declared size for a message. An index may hold any JSON number, up to 4,300 digits:
    a float cannot hold those (formatting one as a float overflows), and a message need not
    spell them out, so large integers are shown as ``9.999e+400``."""
    if isinstance(value, int) and abs(value) >= 10**30:
        try:
            digits = str(abs(value))
        except ValueError:  # past Python's int-to-text limit
            return f"an integer of {value.bit_length():,} bits"
        return f"{'-' if value < 0 else sign}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
    if isinstance(value, int):
        return format(value, f"{sign},")
    return format(value, f"{sign},.0f") if sign else repr(value)


NON_ALIAS_METADATA = frozenset({"format", "total_size", "total_parameters"})


def alias_records(checkpoint: Checkpoint) -> dict[str, str]:
    """``{dropped: kept}`` records written by safetensors' save_model, huggingface_hub and the
    conversion bot into ``__metadata__`` or the index metadata."""
    records: dict[str, str] = {}
    stored = {t.name for t in checkpoint.tensors}
    sources: list[dict] = [f.metadata for f in checkpoint.files.values()]
    if checkpoint.index is not None:
        sources.append(checkpoint.index.metadata)
    for metadata in sources:
        for key, value in metadata.items():
            if key in NON_ALIAS_METADATA or not isinstance(value, str):
                continue
            if _is_alias_record(key, value, stored):
                records[key] = value
    return records


_TENSOR_NAME = re.compile(r"^[A-Za-z_][\w\-]*(?:\.[\w\-]+)+$")
_PARAMETER_SUFFIXES = (".weight", ".bias", ".scales", ".biases")


def _is_alias_record(key: str, value: str, stored: set[str]) -> bool:
    """Both sides are tensor-like dotted names, and one is stored or names a parameter.

    Other metadata is dotted too: ModelSpec (``"modelspec.sai_model_spec": "1.0.0"``,
    ``"modelspec.implementation": "https://..."``) must not read as a tie.
    """
    if not (_TENSOR_NAME.match(key) and _TENSOR_NAME.match(value)):
        return False
    return (
        key in stored
        or value in stored
        or key.endswith(_PARAMETER_SUFFIXES)
        or (value.endswith(_PARAMETER_SUFFIXES))
    )


def alias_findings(checkpoint: Checkpoint, records: dict[str, str]) -> list[Finding]:
    if checkpoint.unreadable:
        return []
    stored = {t.name for t in checkpoint.tensors}
    findings = []
    for dropped, kept in records.items():
        if kept not in stored:
            findings.append(
                finding(
                    Code.ALIAS_RECORD_MISMATCH,
                    f"alias record says {dropped!r} was dropped as a copy of {kept!r}, but "
                    f"{kept!r} is not stored: a loader reading the record finds nothing to tie to",
                    keys=[dropped, kept],
                )
            )
        elif dropped in stored:
            findings.append(
                finding(
                    Code.ALIAS_RECORD_MISMATCH,
                    f"alias record says {dropped!r} was dropped as a copy of {kept!r}, "
                    "but both are "
                    "stored: the record is stale",
                    keys=[dropped, kept],
                )
            )
    return findings
