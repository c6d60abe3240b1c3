"""SARIF 2.1.0, as GitHub code scanning accepts it (``github/codeql-action/upload-sarif``).

One run for the whole invocation. ``tool.driver.rules`` lists every rule with the documentation
from ``rules.py`` (short and full descriptions, help text and Markdown, default level), so an
alert explains itself on GitHub. Every result has a physical location in the checkpoint's files
(code scanning rejects the whole file otherwise) and a fingerprint of its own, so the upload
action never hashes multi-gigabyte weight files line by line. Sources that could not be opened
become tool execution notifications and mark the invocation unsuccessful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from tiecheck import __version__
from tiecheck.render.json_report import write_json
from tiecheck.render.location import fingerprint, location_of, sarif_artifact
from tiecheck.report import Report
from tiecheck.rules import RULES, Finding, Rule, Severity
from tiecheck.run import Run

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/tiecheck/"
LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _rule(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.explanation},
        "help": {"text": rule.doc_text(), "markdown": rule.doc_markdown()},
        "defaultConfiguration": {"level": LEVEL[rule.severity]},
        "properties": {
            "tags": ["weight-tying", "integrity" if rule.code.startswith("TC0") else "tie-state"],
            "severity": rule.severity.value,
        },
    }


def _result(report: Report, finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    location = location_of(report, finding)
    physical: dict[str, Any] = {"artifactLocation": sarif_artifact(location.path)}
    if location.line is not None:
        physical["region"] = {"startLine": location.line}
    properties: dict[str, Any] = {
        "source": report.checkpoint.source,
        "verdict": report.verdict.value,
        "severity": finding.severity.value,
        "keys": list(finding.keys),
    }
    if finding.file is not None:
        properties["file"] = finding.file
    details = {
        k: v for k, v in finding.details.items() if isinstance(v, (str, int, bool)) or v is None
    }
    if details:
        properties["details"] = details
    stable = fingerprint(finding, location)
    return {
        "ruleId": finding.code,
        "ruleIndex": rule_index[finding.code],
        "level": LEVEL[finding.severity],
        "message": {"text": finding.message},
        "locations": [{"physicalLocation": physical}],
        "partialFingerprints": {"primaryLocationLineHash": f"{stable}:1", "tiecheck/v1": stable},
        "properties": properties,
    }


def _folder_uri(folder: Path) -> str:
    uri = folder.absolute().as_uri()
    return uri if uri.endswith("/") else uri + "/"


def sarif_document(run: Run) -> dict[str, Any]:
    rule_index = {code: i for i, code in enumerate(RULES)}
    results = [
        _result(report, finding, rule_index)
        for report in run.reports
        for finding in report.findings
    ]
    notifications = []
    for outcome in run.errors:
        notification: dict[str, Any] = {
            "level": "error",
            "message": {"text": outcome.error_message},
        }
        if Path(outcome.source).exists():
            notification["locations"] = [
                {"physicalLocation": {"artifactLocation": sarif_artifact(Path(outcome.source))}}
            ]
        notifications.append(notification)
    invocation: dict[str, Any] = {"executionSuccessful": not run.errors}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tiecheck",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(rule) for rule in RULES.values()],
                    }
                },
                "invocations": [invocation],
                "originalUriBaseIds": {"%SRCROOT%": {"uri": _folder_uri(Path.cwd())}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def render_sarif(run: Run, out: TextIO, *, verbose: bool = False) -> None:
    write_json(sarif_document(run), out)
