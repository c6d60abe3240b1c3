"""PEFT adapters on tied base models (TC201).

With ``modules_to_save=["embed_tokens", "lm_head"]`` on a tied base, PEFT stores two full copies
that train apart; merged models keep ``tie_word_embeddings: true`` and the re-tie on load throws
one of them away (peft #2777, #2018). ``ensure_weight_tying=True`` (PEFT 0.18+) prevents it.
"""

from __future__ import annotations

from tiecheck.analysis.declared import DeclaredTie
from tiecheck.analysis.groups import GroupKind, Role
from tiecheck.analysis.ties import GroupResult, Relation
from tiecheck.model import AdapterInfo
from tiecheck.rules import Code, Finding, Severity, finding


def adapter_findings(
    adapter: AdapterInfo, declared: DeclaredTie, results: list[GroupResult]
) -> list[Finding]:
    if declared.tied is not True or adapter.ensure_weight_tying:
        return []
    findings = []
    for result in results:
        if result.kind is not GroupKind.HEAD:
            continue
        embedding = next((m for m in result.members if m.role is not Role.HEAD and m.stored), None)
        head = result.members[-1]
        if embedding is None or not head.stored or head.relation is Relation.SHARED:
            continue
        diverged = head.relation is Relation.DISTINCT
        findings.append(
            finding(
                Code.ADAPTER_UNTIED_COPIES,
                f"adapter stores separate copies of {embedding.name} and {head.name} "
                f"({'with different values' if diverged else 'identical so far'}) for a base model "
                f"that ties them ({declared.source}) and ensure_weight_tying is not set: after "
                "merging, the re-tie on load keeps one and discards the other",
                keys=[embedding.name, head.name],
                file=head.file,
                severity=Severity.ERROR if diverged else Severity.WARNING,
            )
        )
    return findings
