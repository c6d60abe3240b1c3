"""How formats that annotate files show a finding's location (computed by the analysis, see
``tiecheck.analysis.location``): paths relative to the current folder, SARIF artifact
locations, and stable fingerprints."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tiecheck.report import Report
from tiecheck.rules import Finding, Location


def location_of(report: Report, finding: Finding) -> Location:
    """The finding's location; a finding made outside ``inspect`` points at the source."""
    return finding.location or Location(Path(report.checkpoint.source))


def display_path(path: Path) -> str:
    """The path relative to the current folder when inside it (CI annotations and SARIF
    resolve relative paths against the checkout), else absolute; always with ``/``."""
    absolute = Path(os.path.normpath(path.absolute()))
    try:
        return absolute.relative_to(Path.cwd().absolute()).as_posix()
    except ValueError:
        return absolute.as_posix()


def where(location: Location) -> str:
    """``path[:line]`` for messages."""
    shown = display_path(location.path)
    return f"{shown}:{location.line}" if location.line else shown


def sarif_artifact(path: Path) -> dict[str, str]:
    """A SARIF ``artifactLocation``: relative to ``%SRCROOT%`` (the current folder) when inside
    it, else an absolute ``file:`` URI (a base id may only qualify a relative reference)."""
    shown = display_path(path)
    if PurePosixPath(shown).is_absolute():
        return {"uri": Path(shown).as_uri()}
    return {"uri": quote(shown), "uriBaseId": "%SRCROOT%"}


def fingerprint(finding: Finding, location: Location) -> str:
    """A stable id for a finding across runs: rule, file and tensor names, not the message
    (whose numbers change) nor the line."""
    text = "\0".join([finding.code.value, display_path(location.path), *finding.keys])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
