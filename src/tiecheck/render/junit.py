"""JUnit XML: one test suite per source, one test case per rule in force.

A test case fails when its rule has findings at or above the source's ``--fail-on``; findings
below it are listed in ``system-out`` of a passing case; rules the policy ignores or does not
select are ``skipped``. A source that cannot be opened is a suite with one ``error`` case. The
document validates against the Jenkins xUnit ``junit-10.xsd`` and is what GitLab's
``artifacts:reports:junit`` and Jenkins read.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TextIO

from tiecheck.render.location import location_of, where
from tiecheck.report import Report
from tiecheck.rules import RULES, Finding, Rule
from tiecheck.run import Outcome, Run

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    """XML 1.0 cannot hold control characters at all, escaped or not."""
    return _INVALID_XML.sub("\ufffd", value)


def _describe(report: Report, finding: Finding) -> str:
    location = location_of(report, finding)
    lines = [
        f"{finding.severity.value} {finding.code.value}: {finding.message}",
        f"  at {where(location)}",
    ]
    if finding.keys:
        lines.append(f"  tensors: {', '.join(finding.keys)}")
    return "\n".join(lines)


def _case(suite: ET.Element, source: str, rule: Rule) -> ET.Element:
    return ET.SubElement(
        suite,
        "testcase",
        {"classname": _text(source), "name": f"{rule.code} {rule.name}", "time": "0"},
    )


def _suite(root: ET.Element, outcome: Outcome) -> tuple[int, int, int]:
    """Append one source's suite; returns (tests, failures, errors)."""
    suite = ET.SubElement(root, "testsuite", {"name": _text(outcome.source)})
    report, policy = outcome.report, outcome.policy
    if report is None:
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", {"name": "source", "value": _text(outcome.source)})
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": _text(outcome.source), "name": "open source", "time": "0"},
        )
        message = _text(outcome.error_message)
        error = ET.SubElement(case, "error", {"type": "SourceError", "message": message})
        error.text = message
        counts = (1, 0, 1)
    else:
        threshold = policy.threshold
        properties = ET.SubElement(suite, "properties")
        for name, value in (
            ("source", report.checkpoint.source),
            ("verdict", report.verdict.value),
            ("fail-on", policy.fail_on.value),
        ):
            ET.SubElement(properties, "property", {"name": name, "value": _text(value)})
        tests = failures = skipped = 0
        for rule in RULES.values():
            case = _case(suite, outcome.source, rule)
            tests += 1
            if rule.code not in policy.enabled:
                ET.SubElement(case, "skipped", {"message": "ignored or not selected by the policy"})
                skipped += 1
                continue
            found = [f for f in report.findings if f.code == rule.code]
            failing = [
                f for f in found if threshold is not None and f.severity.rank >= threshold.rank
            ]
            if failing:
                failures += 1
                first = failing[0].message
                more = f" (and {len(failing) - 1} more)" if len(failing) > 1 else ""
                failure = ET.SubElement(
                    case, "failure", {"type": rule.code, "message": _text(first + more)}
                )
                body = [_describe(report, f) for f in found]
                failure.text = _text("\n".join(body) + f"\n\nHow to fix: {rule.how_to_fix}\n")
            elif found:
                out = ET.SubElement(case, "system-out")
                out.text = _text("\n".join(_describe(report, f) for f in found) + "\n")
        suite.set("skipped", str(skipped))
        counts = (tests, failures, 0)
    suite.set("tests", str(counts[0]))
    suite.set("failures", str(counts[1]))
    suite.set("errors", str(counts[2]))
    suite.set("time", "0")
    return counts


def junit_tree(run: Run) -> ET.Element:
    root = ET.Element("testsuites", {"name": "tiecheck"})
    totals = [0, 0, 0]
    for outcome in run.outcomes:
        for i, n in enumerate(_suite(root, outcome)):
            totals[i] += n
    root.set("tests", str(totals[0]))
    root.set("failures", str(totals[1]))
    root.set("errors", str(totals[2]))
    root.set("time", "0")
    return root


def render_junit(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    root = junit_tree(run)
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(root, encoding="unicode"))
    out.write("\n")
