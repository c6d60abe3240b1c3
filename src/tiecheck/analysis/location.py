"""Where each finding points in the checkpoint's files, decided once when the report is made.

SARIF, GitHub annotations, JUnit, Markdown and the concise format all need a file (and a line
when there is one) for every finding, even those that name no file: a head missing against
the config (TC101) points at the config's tie flag, a missing shard (TC003) at the index line
that names it, anything else at the index or the first weight file. Renderers only read
``Finding.location``; they never open a file again.

Each text file is read at most once per report, and lines are found by a single pass with
dictionary lookups, so a 1,000,000-key index with thousands of findings costs one read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from tiecheck.analysis.declared import DeclaredTie
from tiecheck.model import Checkpoint
from tiecheck.readers.paths import lstat_or_none
from tiecheck.rules import Code, Finding, Location, Where

MAX_LOCATED_TEXT = 64 << 20
"""A text file larger than this is pointed at without a line (it is not read for lines)."""


def _exists(path: Path) -> bool:
    try:
        return lstat_or_none(path) is not None
    except OSError:
        return False


def _lines(path: Path) -> list[str] | None:
    try:
        if path.stat().st_size > MAX_LOCATED_TEXT:
            return None
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None


def _key_path_line(lines: list[str], key_path: str) -> int | None:
    """Line of a dotted key (``text_config.tie_word_embeddings``) in pretty-printed JSON: each
    part on or after the previous part's line; a top-level key prefers its least indented
    occurrence."""
    needles = [json.dumps(part) + ":" for part in key_path.split(".")]
    if len(needles) == 1:
        best: tuple[int, int] | None = None
        for i, line in enumerate(lines):
            if needles[0] in line:
                indent = len(line) - len(line.lstrip())
                if best is None or indent < best[0]:
                    best = (indent, i)
        return None if best is None else best[1] + 1
    start, found = 0, None
    for needle in needles:
        found = next((i for i in range(start, len(lines)) if needle in lines[i]), None)
        if found is None:
            return None
        start = found
    return None if found is None else found + 1


def _last_string(line: str) -> str | None:
    """The last JSON string on a line (the value of ``"name": "shard",``), or None."""
    text = line.rstrip().rstrip(",")
    if not text.endswith('"'):
        return None
    start = text.rfind('"', 0, len(text) - 1)
    if start < 0:
        return None
    try:
        value = json.loads(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, str) else None


class _Locator:
    def __init__(self, checkpoint: Checkpoint, declared: DeclaredTie) -> None:
        self.ckpt = checkpoint
        self.declared = declared
        self._config_lines: list[str] | bool | None = False
        self._shard_lines: dict[str, int] | None = None

    def config_lines(self) -> list[str] | None:
        if self._config_lines is False:
            config = self.ckpt.config
            self._config_lines = _lines(config.path) if config is not None else None
        return self._config_lines  # type: ignore[return-value]

    def shard_line(self, shard: str) -> int | None:
        """First index line whose value is ``shard`` (one pass, built on first use)."""
        index = self.ckpt.index
        if index is None:
            return None
        if self._shard_lines is None:
            self._shard_lines = {}
            for number, line in enumerate(_lines(index.path) or (), start=1):
                value = _last_string(line)
                if value is not None:
                    self._shard_lines.setdefault(value, number)
        return self._shard_lines.get(shard)

    def config_line(self, finding: Finding) -> int | None:
        lines = self.config_lines()
        if not lines:
            return None
        declared = self.declared
        flags = list(declared.flags)
        key_path: str | None = None
        if finding.code is Code.TIE_FLAGS_DISAGREE and flags:
            key_path = flags[0]
        elif ":" in declared.source and not declared.defaulted:
            key_path = declared.source.split(":", 1)[1].strip()
        elif flags:
            key_path = flags[0]
        if not key_path or " " in key_path:
            key_path = "model_type"
        return _key_path_line(lines, key_path)

    def locate(self, finding: Finding) -> Location:
        ckpt = self.ckpt
        config, index = ckpt.config, ckpt.index
        path: Path
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
            if index is not None and path != index.path and not _exists(path):
                # a shard that does not exist (TC003): point at the index line naming it
                line = self.shard_line(finding.file)
                path = index.path
        elif finding.code.rule.where is Where.CONFIG and config is not None:
            path = config.path
        elif index is not None:
            path = index.path
        elif ckpt.files:
            path = next(iter(ckpt.files.values())).path
        else:
            path = Path(ckpt.source)
        if config is not None and path == config.path:
            line = self.config_line(finding)
        return Location(path, line)


def locate_findings(
    checkpoint: Checkpoint, declared: DeclaredTie, findings: list[Finding]
) -> list[Finding]:
    """The findings, each with its ``location`` set."""
    locator = _Locator(checkpoint, declared)
    return [replace(f, location=locator.locate(f)) for f in findings]
