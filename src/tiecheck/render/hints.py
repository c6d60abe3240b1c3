"""The command that repairs a finding, spelled with the report's own path.

A rule's documentation says ``tiecheck fix SRC --to tied -o OUT``; a person reading the
report of ``models/qwen-ft`` wants the line to paste: ``tiecheck fix models/qwen-ft --to
tied -o models/qwen-ft-tied``. This only spells the command the rule names (``Rule.repair``);
it decides nothing about the checkpoint.
"""

from __future__ import annotations

import shlex
from pathlib import PurePath

from tiecheck.analysis.ties import Verdict
from tiecheck.model import SourceKind
from tiecheck.report import Report
from tiecheck.rules import Finding, Repair


def _output_folder(report: Report, to: str) -> str:
    """A new folder beside the source, named after it: ``models/x`` -> ``models/x-tied``;
    a file ``models/x/model.safetensors`` -> ``models/x-tied``; a Hub repo ``org/x`` ->
    ``x-tied`` in the current folder."""
    ckpt = report.checkpoint
    if ckpt.origin != "local":
        name = ckpt.source.rstrip("/").split("@")[0].rsplit("/", 1)[-1] or "model"
        return f"{name}-{to}"
    source = PurePath(ckpt.source)
    folder = source if str(source) == str(ckpt.root) else source.parent
    if str(folder) in ("", "."):
        return f"{source.name.split('.')[0] or 'model'}-{to}"
    return f"{folder}-{to}"


def repair_command(report: Report, finding: Finding) -> str | None:
    """The shell command that repairs ``finding``, or None when the rule names none or
    ``fix`` cannot apply (an adapter, a state the verdict does not settle)."""
    repair = finding.code.rule.repair
    if repair is None:
        return None
    source = shlex.quote(report.checkpoint.source)
    if repair is Repair.INSPECT_VALUES:
        return f"tiecheck inspect {source}  (without --no-data)"
    if report.checkpoint.kind is SourceKind.PEFT_ADAPTER:
        return None  # fix does not rewrite adapters; the rule's text says what to do
    if repair is Repair.AS_VERDICT:
        if report.verdict not in (Verdict.TIED, Verdict.UNTIED):
            return None
        to = report.verdict.value
    else:
        to = repair.value
    return f"tiecheck fix {source} --to {to} -o {shlex.quote(_output_folder(report, to))}"
