"""Where a finding points in the checkpoint's files, for formats that annotate files.

SARIF, GitHub annotations and the Markdown report all need a file (and a line when there is one)
for every finding, even those the analysis did not tie to a file: a head missing against the
config (TC101) points at the config's tie flag, a missing shard (TC003) at the index line that
names it, anything else at the index or the first weight file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tiecheck.report import Report
from tiecheck.rules import Finding

CONFIG_CODES = frozenset({"TC101", "TC106", "TC107", "TC111", "TC112"})
"""Findings about what the config declares: located in config.json when it has none of its own."""


@dataclass(frozen=True)
class Location:
    path: Path
    """the file, as the user's paths name it (relative when the source was given relative)."""
    line: int | None = None
    """1-based line in a text file (config.json, an index), when one can be named."""

    @property
    def display(self) -> str:
        """The path relative to the current folder when inside it (CI annotations and SARIF
        resolve relative paths against the checkout), else absolute; always with ``/``."""
        return display_path(self.path)


def display_path(path: Path) -> str:
    absolute = Path(os.path.normpath(path.absolute()))
    try:
        return absolute.relative_to(Path.cwd().absolute()).as_posix()
    except ValueError:
        return absolute.as_posix()


def sarif_artifact(path: Path) -> dict[str, str]:
    """A SARIF ``artifactLocation``: relative to ``%SRCROOT%`` (the current folder) when inside
    it, else an absolute ``file:`` URI (a base id may only qualify a relative reference)."""
    shown = display_path(path)
    if PurePosixPath(shown).is_absolute():
        return {"uri": Path(shown).as_uri()}
    return {"uri": quote(shown), "uriBaseId": "%SRCROOT%"}


def _line_of(path: Path, needles: list[str]) -> int | None:
    """First line holding ``needles`` in order (each on or after the previous one's line); a
    single needle prefers the least indented match (a top-level key over a nested one)."""
    try:
        if path.stat().st_size > 50 << 20:
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if len(needles) == 1:
        matches = [i for i, line in enumerate(lines) if needles[0] in line]
        if not matches:
            return None
        return min(matches, key=lambda i: (len(lines[i]) - len(lines[i].lstrip()), i)) + 1
    start, found = 0, None
    for needle in needles:
        found = next((i for i in range(start, len(lines)) if needle in lines[i]), None)
        if found is None:
            return None
        start = found
    return None if found is None else found + 1


def _config_line(report: Report, finding: Finding, config: Path) -> int | None:
    declared = report.declared
    flags = list(declared.flags)
    key_path: str | None = None
    if finding.code == "TC107" and flags:
        key_path = flags[0]
    elif ":" in declared.source and not declared.defaulted:
        key_path = declared.source.split(":", 1)[1].strip()
    elif flags:
        key_path = flags[0]
    needles = [json.dumps(part) + ":" for part in key_path.split(".")] if key_path else []
    if not needles or " " in (key_path or ""):
        needles = ['"model_type":']
    return _line_of(config, needles) or _line_of(config, [n.rstrip(":") for n in needles])


def locate(report: Report, finding: Finding) -> Location:
    """The file (and line, when known) a finding is about."""
    ckpt = report.checkpoint
    config = ckpt.config
    index = ckpt.index
    path: Path | None = None
    line: int | None = None
    if finding.file is not None:
        if config is not None and finding.file == config.name:
            path = config.path
        elif finding.file in ckpt.files:
            path = ckpt.files[finding.file].path
        elif index is not None and finding.file == index.name:
            path = index.path
        else:
            path = ckpt.root / finding.file
        if index is not None and path != index.path and not path.exists():
            # a shard that does not exist (TC003): point at the index line naming it
            line = _line_of(index.path, [json.dumps(finding.file)])
            path = index.path
    elif finding.code in CONFIG_CODES and config is not None:
        path = config.path
    elif index is not None:
        path = index.path
    elif ckpt.files:
        path = next(iter(ckpt.files.values())).path
    else:
        path = Path(ckpt.source)
    if config is not None and path == config.path:
        line = _config_line(report, finding, config.path)
    return Location(path, line)


def fingerprint(finding: Finding, location: Location) -> str:
    """A stable id for a finding across runs: rule, file and tensor names, not the message
    (whose numbers change) nor the line."""
    text = "\0".join([finding.code, location.display, *finding.keys])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
