"""tiecheck: inspect and repair weight tying in model checkpoints, from the files alone.

>>> import tiecheck
>>> report = tiecheck.inspect("path/to/model")
>>> report.verdict, [f.code for f in report.findings]
"""

from tiecheck.analysis.ties import GroupState, Verdict
from tiecheck.api import inspect
from tiecheck.errors import SourceError, TiecheckError
from tiecheck.report import Report
from tiecheck.rules import RULES, Finding, Severity


def fix(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Rewrite a checkpoint tied or untied; see ``tiecheck.rewrite.fix.fix``."""
    from tiecheck.rewrite.fix import fix as _fix

    return _fix(*args, **kwargs)


__version__ = "0.1.0"

__all__ = [
    "RULES",
    "Finding",
    "GroupState",
    "Report",
    "Severity",
    "SourceError",
    "TiecheckError",
    "Verdict",
    "__version__",
    "fix",
    "inspect",
]
