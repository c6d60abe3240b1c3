"""Rule codes and findings: the vocabulary every analysis speaks and every renderer prints.

Codes are stable: a code is never reused for another meaning, so CI configurations, ignore
lists and JSON consumers can rely on them. ``TC0xx`` are file and index integrity, ``TC1xx``
tie state against the configuration, ``TC2xx`` adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    """How much a finding matters; ordered so ``--fail-on`` can compare."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    """kebab-case name, as in ruff: readable in ignore lists."""
    severity: Severity
    """default severity; a few rules raise it when the evidence is stronger (TC201)."""
    summary: str
    """one line, shown in tables and README."""


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {r.code: r for r in rules}


ERR, WARN, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

RULES: dict[str, Rule] = _rules(
    Rule("TC001", "invalid-file", ERR, "file unreadable or invalid"),
    Rule("TC002", "unsafe-pickle", ERR, "pickle would need code execution to load; not loaded"),
    Rule("TC003", "missing-shard", ERR, "index names a shard file that does not exist"),
    Rule(
        "TC004",
        "index-tensor-not-in-shard",
        ERR,
        "index maps a tensor to a shard that does not hold it",
    ),
    Rule("TC005", "tensor-not-in-index", WARN, "a shard holds a tensor the index does not list"),
    Rule(
        "TC006",
        "tensor-stored-twice",
        ERR,
        "a tensor name is stored more than once (two shards, or duplicate header keys)",
    ),
    Rule(
        "TC007", "total-size-mismatch", WARN, "index total_size disagrees with the stored payload"
    ),
    Rule(
        "TC101",
        "untied-head-missing",
        ERR,
        "declared untied but the head is missing: loaders initialise it at random",
    ),
    Rule(
        "TC102",
        "tied-but-diverged",
        ERR,
        "declared tied but head and embedding are both stored with different values",
    ),
    Rule(
        "TC103",
        "tied-duplicate-copy",
        WARN,
        "declared tied and the head is stored as an identical copy (bytes wasted)",
    ),
    Rule(
        "TC104",
        "embedding-missing",
        ERR,
        "the head is stored but the embedding it ties to is missing",
    ),
    Rule(
        "TC105",
        "untied-but-identical",
        INFO,
        "declared untied but head and embedding are identical",
    ),
    Rule(
        "TC106", "tie-flag-defaulted", INFO, "config omits the tie flag; the class default was used"
    ),
    Rule("TC107", "tie-flags-disagree", WARN, "tie flags at different config levels disagree"),
    Rule(
        "TC108",
        "alias-record-mismatch",
        WARN,
        "an alias record names tensors that are absent or contradicts what is stored",
    ),
    Rule(
        "TC109",
        "pickle-shared-storage",
        INFO,
        "tensors share one storage in a pickle (a tie safetensors cannot hold as is)",
    ),
    Rule(
        "TC110",
        "pickle-storage-views",
        WARN,
        "tensors are different views of one storage (safetensors conversion must copy)",
    ),
    Rule("TC111", "no-config", INFO, "no config found; tie state inferred from the weights alone"),
    Rule("TC112", "unexpected-tie-state", ERR, "the tie state differs from --expect"),
    Rule(
        "TC113",
        "tied-copy-not-compared",
        WARN,
        "declared tied, head and embedding stored separately; values not compared (--no-data)",
    ),
    Rule(
        "TC114",
        "identical-tensors",
        INFO,
        "byte-identical tensors outside any tie group (bytes stored twice)",
    ),
    Rule(
        "TC201",
        "adapter-untied-copies",
        WARN,
        "a PEFT adapter stores separate embedding and head copies for a tied base model",
    ),
)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    keys: tuple[str, ...] = ()
    """tensor names the finding is about, in the order the message names them."""
    file: str | None = None
    """the file the finding is located in, relative to the source root where possible."""
    details: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    """machine-readable extras (differences, byte counts) for JSON consumers."""

    @property
    def rule(self) -> Rule:
        return RULES[self.code]


def finding(
    code: str,
    message: str,
    *,
    keys: tuple[str, ...] | list[str] = (),
    file: str | None = None,
    severity: Severity | None = None,
    **details: object,
) -> Finding:
    """Build a finding with the rule's default severity unless the evidence raises it."""
    return Finding(
        code=code,
        severity=severity or RULES[code].severity,
        message=message,
        keys=tuple(keys),
        file=file,
        details=details,
    )
