"""Judge each tie group: how it is stored, whether that matches the declaration, and the verdict.

Storage state and judgement are kept apart on purpose: ``state`` says what is on disk
(deduplicated, shared storage, duplicate, numerically identical, distinct, missing, unknown)
in neutral words whatever the config says; the findings say what each loader will do with that
state given the declaration (TYING.md §4): a distinct head is healthy when the model is untied
and a discarded trained head when it is declared tied.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from tiecheck.analysis.compare import (
    DEFAULT_TOLERANCE,
    Difference,
    Tolerance,
    difference,
    is_constant,
    physical_key,
)
from tiecheck.analysis.declared import DeclaredTie
from tiecheck.analysis.families import Evidence
from tiecheck.analysis.groups import GroupKind, Member, Role, TieGroup
from tiecheck.model import TensorInfo
from tiecheck.readers.tensor_data import TensorData
from tiecheck.rules import Code, Finding, Severity, finding
from tiecheck.units import human_bytes


class Relation(str, Enum):
    """How a member relates to the group's reference (the first stored embedding)."""

    REFERENCE = "reference"
    SHARED = "shared-storage"
    DUPLICATE = "duplicate"
    """the same bytes stored again."""
    CLOSE = "numerically-identical"
    """some bits differ, no value beyond the tolerance (``--rtol``/``--atol``)."""
    DISTINCT = "distinct"
    """values of its own: a trained head (fine untied, thrown away when declared tied)."""
    NOT_COMPARED = "not-compared"
    ABSENT = "absent"
    UNAVAILABLE = "unavailable"
    """the index places it in a shard that could not be read: nobody knows."""


class GroupState(str, Enum):
    DEDUPLICATED = "deduplicated"
    SHARED = "shared-storage"
    DUPLICATE = "duplicate"
    CLOSE = "numerically-identical"
    DISTINCT = "distinct"
    NOT_COMPARED = "not-compared"
    """stored separately, values not read (``--no-data``)."""
    MISSING = "missing"
    UNKNOWN = "unknown"
    """a member lies in a shard that could not be read."""


class Verdict(str, Enum):
    TIED = "tied"
    UNTIED = "untied"
    INCONSISTENT = "inconsistent"
    NOT_APPLICABLE = "not-applicable"


_WORST = (
    Relation.UNAVAILABLE,
    Relation.DISTINCT,
    Relation.NOT_COMPARED,
    Relation.CLOSE,
    Relation.DUPLICATE,
    Relation.SHARED,
)
_STATE = {
    Relation.UNAVAILABLE: GroupState.UNKNOWN,
    Relation.DISTINCT: GroupState.DISTINCT,
    Relation.NOT_COMPARED: GroupState.NOT_COMPARED,
    Relation.CLOSE: GroupState.CLOSE,
    Relation.DUPLICATE: GroupState.DUPLICATE,
    Relation.SHARED: GroupState.SHARED,
}
_COPIES = (Relation.DUPLICATE, Relation.CLOSE)


@dataclass(frozen=True)
class MemberResult:
    name: str
    role: Role
    relation: Relation
    file: str | None
    nbytes: int
    difference: Difference | None = None

    @property
    def stored(self) -> bool:
        return self.relation not in (Relation.ABSENT, Relation.UNAVAILABLE)


@dataclass(frozen=True)
class GroupResult:
    group: TieGroup
    declared: bool | None
    """the tie this group should have: the config's flag for a head, always true for
    architecture aliases and bias ties."""
    state: GroupState
    members: tuple[MemberResult, ...]

    @property
    def kind(self) -> GroupKind:
        return self.group.kind

    @property
    def stored_members(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members if m.stored)

    @property
    def nbytes(self) -> int:
        """Bytes this group occupies on disk (shared storage counted once)."""
        return sum(m.nbytes for m in self.members if m.stored and m.relation is not Relation.SHARED)

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        """Why these names are one group: the group's own evidence, and what the comparison
        showed (one storage in a pickle, identical bytes)."""
        found = list(self.group.evidence)
        relations = {m.relation for m in self.members}
        if Relation.SHARED in relations:
            found.append(Evidence.SHARED_STORAGE)
        if relations & {Relation.DUPLICATE, Relation.CLOSE}:
            found.append(Evidence.BYTE_IDENTITY)
        return tuple(dict.fromkeys(found))

    @property
    def max_abs_diff(self) -> float | None:
        diffs = [m.difference.max_abs_diff for m in self.members if m.difference]
        known = [d for d in diffs if d is not None]
        return max(known) if known else None

    @property
    def differing_fraction(self) -> float | None:
        fractions = [m.difference.fraction for m in self.members if m.difference]
        return max(fractions) if fractions else None


class _Judge:
    def __init__(
        self,
        tensors: dict[str, TensorInfo],
        identical: dict[tuple[object, ...], int] | None,
        data: TensorData | None,
        tolerance: Tolerance,
        unavailable: Collection[str],
    ) -> None:
        self.tensors = tensors
        self.identical = identical
        """physical key -> identical-set id; None with --no-data."""
        self.data = data
        self.tolerance = tolerance
        self.unavailable = unavailable

    def _same_bytes(self, a: TensorInfo, b: TensorInfo) -> bool:
        assert self.identical is not None
        ka, kb = physical_key(a), physical_key(b)
        if ka == kb:
            return True
        return ka in self.identical and self.identical.get(ka) == self.identical.get(kb)

    def relation(self, member: Member, reference: Member) -> tuple[Relation, Difference | None]:
        pairs = [(member.name, reference.name)] + [
            (name, reference.sidecars[suffix])
            for suffix, name in member.sidecars.items()
            if suffix in reference.sidecars
        ]
        tensors = [(self.tensors[a], self.tensors[b]) for a, b in pairs]
        if all(physical_key(a) == physical_key(b) for a, b in tensors):
            return Relation.SHARED, None
        if self.identical is None:
            return Relation.NOT_COMPARED, None
        if all(self._same_bytes(a, b) for a, b in tensors):
            return Relation.DUPLICATE, None
        a, b = tensors[0]
        diff = difference(a, b, self.data, self.tolerance) if self.data is not None else None
        if (
            diff is not None
            and diff.within_tolerance
            and all(self._same_bytes(x, y) for x, y in tensors[1:])
        ):
            return Relation.CLOSE, diff
        return Relation.DISTINCT, diff

    def member_bytes(self, member: Member) -> int:
        return sum(self.tensors[n].nbytes for n in (member.name, *member.sidecars.values()))

    def group(self, group: TieGroup, declared: bool | None) -> GroupResult:
        stored = [m for m in group.members if m.name in self.tensors]
        reference = stored[0] if stored else None
        results = []
        for member in group.members:
            if member not in stored:
                unknown = member.name in self.unavailable
                relation = Relation.UNAVAILABLE if unknown else Relation.ABSENT
                results.append(MemberResult(member.name, member.role, relation, None, 0))
                continue
            info = self.tensors[member.name]
            if member is reference:
                relation, diff = Relation.REFERENCE, None
            else:
                relation, diff = self.relation(member, reference)  # type: ignore[arg-type]
            results.append(
                MemberResult(
                    member.name, member.role, relation, info.file, self.member_bytes(member), diff
                )
            )
        relations = {r.relation for r in results}
        if Relation.UNAVAILABLE in relations:
            state = GroupState.UNKNOWN
        elif not stored:
            state = GroupState.MISSING
        elif len(stored) == 1:
            state = GroupState.DEDUPLICATED
        else:
            state = _STATE[next(r for r in _WORST if r in relations)]
        return GroupResult(group, declared, state, tuple(results))


def _diff_text(d: Difference | None) -> str:
    return "values differ" if d is None else d.describe()


def _member_findings(result: GroupResult, reference: MemberResult) -> list[Finding]:
    findings = []
    for m in result.members:
        if m.relation in (Relation.REFERENCE, Relation.ABSENT, Relation.UNAVAILABLE):
            continue
        structural = m.role in (Role.ALIAS, Role.BIAS_ALIAS)
        # Architecture aliases (BART/T5 encoder and decoder embeddings, BERT's decoder bias) are
        # always one module in transformers 4.x; 5.x unties them with the flag. Under a tied
        # declaration both agree; under an untied one they do not, which TC115 says.
        follows_flag = result.group.aliases_follow_flag
        tied = (
            True
            if structural and (result.declared is not False or not follows_flag)
            else (result.declared)
        )
        keys = [reference.name, m.name]
        what = "head" if m.role is Role.HEAD else "copy"
        if structural and tied is False and m.relation is Relation.DISTINCT:
            findings.append(
                finding(
                    Code.ALIAS_UNTIED_BY_FLAG,
                    f"declared untied, and {m.name} differs from {reference.name}: transformers "
                    "5.x keeps both, but 4.x shares one module and loads only one of them",
                    keys=keys,
                    file=m.file,
                )
            )
            continue
        if tied is True and m.relation in _COPIES:
            copy = (
                "an identical copy"
                if m.relation is Relation.DUPLICATE
                else f"a numerically identical copy ({_diff_text(m.difference)})"
            )
            findings.append(
                finding(
                    Code.TIED_DUPLICATE_COPY,
                    f"{m.name} is stored as {copy} of {reference.name} although the "
                    f"model ties them: {human_bytes(m.nbytes)} wasted",
                    keys=keys,
                    file=m.file,
                    wasted_bytes=m.nbytes,
                )
            )
        elif tied is True and m.relation is Relation.DISTINCT:
            findings.append(
                finding(
                    Code.TIED_BUT_DIVERGED,
                    f"declared tied, but {m.name} and {reference.name} are stored with different "
                    f"values ({_diff_text(m.difference)}): transformers 4.x and vLLM silently keep "
                    f"one and discard the trained {what}",
                    keys=keys,
                    file=m.file,
                )
            )
        elif tied is True and m.relation is Relation.NOT_COMPARED:
            findings.append(
                finding(
                    Code.TIED_COPY_NOT_COMPARED,
                    f"declared tied, but {m.name} is stored separately from {reference.name}; "
                    "values not compared (--no-data), so this is either wasted bytes or a "
                    "discarded trained head",
                    keys=keys,
                    file=m.file,
                )
            )
        elif tied is False and m.relation in (*_COPIES, Relation.SHARED):
            how = "" if m.relation is not Relation.CLOSE else f" ({_diff_text(m.difference)})"
            findings.append(
                finding(
                    Code.UNTIED_BUT_IDENTICAL,
                    f"declared untied, but {m.name} is {'numerically ' if how else ''}identical "
                    f"to {reference.name}{how}; the model could be stored tied",
                    keys=keys,
                    file=m.file,
                )
            )
    return findings


def _unstored_aliases(result: GroupResult, unavailable: Collection[str]) -> list[Finding]:
    """TC116: under an untied flag transformers 5.x expects every alias stored (4.x shares)."""
    if result.declared is not False or not result.group.aliases_follow_flag:
        return []
    return [
        finding(
            Code.UNTIED_ALIAS_MISSING,
            f"declared untied, and {m.name} is not stored: transformers 5.x unties it from "
            f"{result.members[0].name} and initialises it at random (4.x shares one module)",
            keys=[m.name, result.members[0].name],
        )
        for m in result.members
        if m.role in (Role.ALIAS, Role.BIAS_ALIAS)
        and not m.stored
        and m.name not in unavailable
        and result.members[0].stored
    ]


def _group_findings(
    result: GroupResult, has_lm_head: bool, unavailable: Collection[str] = ()
) -> list[Finding]:
    stored = [m for m in result.members if m.stored]
    if not stored:
        return []
    findings = _member_findings(result, stored[0])
    findings += _unstored_aliases(result, unavailable)
    if result.kind is not GroupKind.HEAD:
        return findings
    embedding_side = [m for m in result.members if m.role is not Role.HEAD]
    head = result.members[-1]
    if (
        head.stored
        and not any(m.stored for m in embedding_side)
        and not any(m.name in unavailable for m in embedding_side)
    ):
        findings.append(
            finding(
                Code.EMBEDDING_MISSING,
                f"{head.name} is stored but the embedding it ties to ({embedding_side[0].name}) is "
                "missing: transformers 4.57 fails to load it (older 4.x initialise the embedding "
                "at random), 5.x swaps source and target, vLLM and mlx-lm fail to load",
                keys=[embedding_side[0].name, head.name],
                file=head.file,
            )
        )
    if (
        result.declared is False
        and not head.stored
        and has_lm_head
        and head.name not in unavailable
    ):
        findings.append(
            finding(
                Code.UNTIED_HEAD_MISSING,
                f"declared untied, but {head.name} is not stored: "
                "transformers initialises the head "
                "at random (garbage output), vLLM and mlx-lm refuse to load",
                keys=[head.name, stored[0].name],
            )
        )
    return findings


def judge_groups(
    groups: list[TieGroup],
    tensors: dict[str, TensorInfo],
    declared: DeclaredTie,
    identical: dict[tuple[object, ...], int] | None,
    data: TensorData | None,
    *,
    judge_storage: bool = True,
    unavailable: Collection[str] = (),
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> tuple[list[GroupResult], list[Finding]]:
    """Evaluate every group; ``judge_storage=False`` (adapters) reports states without findings.

    ``unavailable`` names tensors an index places in a shard that could not be read (TC001,
    TC003): their absence is already reported, so it is not also judged as a missing head
    (TC101) or embedding (TC104); their members are ``unavailable`` and the group's state
    ``unknown``. ``tolerance`` decides when differing copies are numerically identical.
    """
    judge = _Judge(tensors, identical, data, tolerance, unavailable)
    results, findings = [], []
    for group in groups:
        # Bias ties are structural in 4.x and follow the flag in 5.x (see TC115).
        tie = declared.tied if group.kind is GroupKind.HEAD or declared.tied is False else True
        result = judge.group(group, tie)
        results.append(result)
        if judge_storage:
            findings += _group_findings(result, declared.has_lm_head, unavailable)
    return results, findings


def verdict(results: list[GroupResult], declared: DeclaredTie, findings: list[Finding]) -> Verdict:
    heads = [r for r in results if r.kind is GroupKind.HEAD]
    if not heads or not declared.has_lm_head:
        return Verdict.NOT_APPLICABLE
    # rules flagged "inconsistent" (a head missing, a trained head re-tied away, ...)
    if any(f.code.rule.inconsistent and f.severity is Severity.ERROR for f in findings):
        return Verdict.INCONSISTENT
    if declared.tied is not None:
        return Verdict.TIED if declared.tied else Verdict.UNTIED
    # Nothing declares the tie: the storage says it. A head stored under its own name (a copy
    # or values of its own) is the untied form; one name, or one storage, the tied form.
    separate = any(
        m.role is Role.HEAD and m.relation not in (Relation.SHARED, Relation.REFERENCE) and m.stored
        for r in heads
        for m in r.members
    )
    return Verdict.UNTIED if separate else Verdict.TIED


def unexplained_duplicates(
    sets: list[list[TensorInfo]], results: list[GroupResult], data: TensorData
) -> list[Finding]:
    """TC114 for identical tensors that no tie group explains.

    A set is explained when one group holds all its names. Only the groups holding the set's
    least grouped name are tried: the sets are disjoint, so this costs at most one look per
    (name, group) membership, where testing every set against every group was quadratic.
    Constant tensors (every freshly initialised norm holds ones, every bias zeros) are equal
    by construction, not stored twice by mistake: they are not reported.
    """
    holding: dict[str, list[frozenset[str]]] = {}
    for group in {frozenset(r.group.all_names()) for r in results}:
        for name in group:
            holding.setdefault(name, []).append(group)
    findings = []
    for same in sets:
        names = {t.name for t in same}
        rarest = min((holding.get(n, []) for n in names), key=len)
        if any(names <= g for g in rarest) or is_constant(same[0], data):
            continue
        keys = sorted(names)
        wasted = same[0].nbytes * (len(same) - 1)
        findings.append(
            finding(
                Code.IDENTICAL_TENSORS,
                f"{len(keys)} tensors hold identical bytes ({', '.join(keys[:4])}"
                f"{' ...' if len(keys) > 4 else ''}): {human_bytes(wasted)} stored more than once",
                keys=keys,
                file=same[0].file,
                wasted_bytes=wasted,
            )
        )
    return findings
