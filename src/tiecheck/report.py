"""The result of inspecting one source: plain data that renderers turn into text."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiecheck.analysis.declared import DeclaredTie
from tiecheck.analysis.sharing import SharedStorage
from tiecheck.analysis.ties import GroupResult, Verdict
from tiecheck.model import Checkpoint
from tiecheck.rules import Finding, Severity

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class DuplicateSet:
    keys: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    """bytes of one copy; the set wastes ``nbytes * (len(keys) - 1)``."""


@dataclass(frozen=True)
class Report:
    checkpoint: Checkpoint
    declared: DeclaredTie
    verdict: Verdict
    tie_groups: list[GroupResult]
    shared_storage: list[SharedStorage]
    duplicates: list[DuplicateSet] | None
    """None when data was not compared (``--no-data``)."""
    findings: list[Finding]
    bytes_read: int = 0
    """tensor bytes read to compare values (headers excluded)."""
    notes: list[str] = field(default_factory=list)
    bytes_transferred: int | None = None
    """remote sources: every byte fetched from the Hub (headers and tensor ranges)."""

    def fails(self, fail_on: Severity | None) -> bool:
        """Whether any finding is at or above ``fail_on`` (None: never fail)."""
        return fail_on is not None and any(f.severity.rank >= fail_on.rank for f in self.findings)
