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
    "inspect",
]
