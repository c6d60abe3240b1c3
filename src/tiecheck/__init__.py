"""tiecheck: inspect and repair weight tying in model checkpoints, from the files alone.

>>> import tiecheck
>>> run = tiecheck.check(["path/to/model"], tiecheck.Options(expect=tiecheck.Expect.TIED))
>>> run.exit_code, [(f.code, f.message) for r in run.reports for f in r.findings]

``check`` is the centre (sources and options in, a ``Run`` with every report or error and its
exit code out); ``inspect`` reads one source into a ``Report``; ``fix`` rewrites one.
"""

__version__ = "0.1.0"  # before the imports: modules below read it while this one loads

from tiecheck.analysis.ties import GroupState, Verdict
from tiecheck.api import inspect
from tiecheck.config import Config, ConfigError, Policy
from tiecheck.errors import SourceError, TiecheckError
from tiecheck.options import ExitCode, Expect, FailOn, Keep, Options
from tiecheck.report import Report
from tiecheck.rewrite.fix import FixResult, fix
from tiecheck.rewrite.plan import FixRefused
from tiecheck.rules import RULES, Code, Finding, Severity
from tiecheck.run import Outcome, Run, check

__all__ = [
    "RULES",
    "Code",
    "Config",
    "ConfigError",
    "ExitCode",
    "Expect",
    "FailOn",
    "Finding",
    "FixRefused",
    "FixResult",
    "GroupState",
    "Keep",
    "Options",
    "Outcome",
    "Policy",
    "Report",
    "Run",
    "Severity",
    "SourceError",
    "TiecheckError",
    "Verdict",
    "__version__",
    "check",
    "fix",
    "inspect",
]
