"""Policies: which findings a source reports and what makes it fail.

A policy is resolved per source from layers, later ones winning: the configuration file's
table, the ``[[overrides]]`` whose ``path`` glob matches the source, and the command line (or
the ``Options`` a library caller passes). ``expect`` and ``fail-on`` take the last value given;
``select`` replaces the selection made so far and ``ignore`` removes codes from it, layer by
layer (as in ruff).

``Policy.apply`` is the one place findings are filtered: renderers and the exit code only ever
see filtered reports, so one format cannot disagree with another about what was reported.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from tiecheck.options import Expect, FailOn
from tiecheck.report import Report
from tiecheck.rules import RULES, Code, Severity, find_rule
from tiecheck.units import count as plural


@dataclass(frozen=True)
class Layer:
    """One level of settings: the config table, one override, or the command line."""

    expect: Expect | None = None
    """None leaves the previous layer's value."""
    fail_on: FailOn | None = None
    """None leaves the previous layer's value."""
    select: frozenset[Code] | None = None
    """rule codes to report; replaces the selection so far. None: no change."""
    ignore: frozenset[Code] = frozenset()
    """rule codes removed from the selection so far."""


@dataclass(frozen=True)
class Policy:
    """What one source is checked against; ``Policy()`` is the default (all rules, fail on
    errors)."""

    expect: Expect | None = None
    fail_on: FailOn = FailOn.ERROR
    enabled: frozenset[Code] = frozenset(RULES)

    @classmethod
    def from_layers(cls, layers: Iterable[Layer]) -> Policy:
        expect, fail_on = None, FailOn.ERROR
        enabled = set(RULES)
        for layer in layers:
            expect = layer.expect or expect
            fail_on = layer.fail_on or fail_on
            if layer.select is not None:
                enabled = set(layer.select)
            enabled -= layer.ignore
        return cls(expect=expect, fail_on=fail_on, enabled=frozenset(enabled))

    @property
    def threshold(self) -> Severity | None:
        """The lowest failing severity; None never fails."""
        return self.fail_on.severity

    def apply(self, report: Report) -> Report:
        """The report without the findings this policy does not report (a note says how many)."""
        kept = [f for f in report.findings if f.code in self.enabled]
        hidden = sorted({f.code.value for f in report.findings if f.code not in self.enabled})
        if not hidden:
            return report
        count = len(report.findings) - len(kept)
        note = (
            f"policy: {plural(count, 'finding')} not reported "
            f"({', '.join(hidden)} ignored or not selected)"
        )
        return replace(report, findings=kept, notes=[*report.notes, note])

    def fails(self, report: Report) -> bool:
        return report.fails(self.threshold)

    def disabled(self) -> list[Code]:
        """The rules this policy does not report, in code order."""
        return [c for c in Code if c not in self.enabled]


def parse_codes(values: Iterable[str]) -> frozenset[Code]:
    """``["TC101,TC102", "tied-duplicate-copy"]`` -> codes; ValueError names an unknown one."""
    codes = set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            rule = find_rule(part)
            if rule is None:
                choices = [c.value for c in Code] + [r.name for r in RULES.values()]
                raise ValueError(unknown("rule", part, choices))
            codes.add(rule.code)
    return frozenset(codes)


def unknown(what: str, value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}"
