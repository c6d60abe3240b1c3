"""The centre of tiecheck: ``check(sources, options) -> Run``.

A run inspects each source under the policy that applies to it (configuration file, overrides,
then the caller's options), keeps each source's filtered report *or* the error that stopped
it, and decides its own exit code. The command line only fills ``Options``, calls ``check``,
renders the ``Run`` and exits with ``run.exit_code``; a library caller does the same without
the printing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tiecheck.api import Progress, inspect
from tiecheck.config import Config, Layer, Policy, resolve_config
from tiecheck.errors import TiecheckError
from tiecheck.options import ExitCode, Options
from tiecheck.report import Report
from tiecheck.rules import Severity
from tiecheck.units import count


@dataclass(frozen=True)
class Outcome:
    """One source's result: its report (filtered by its policy), or why it could not be read."""

    source: str
    policy: Policy
    report: Report | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Findings at or above the source's ``fail-on``."""
        return self.report is not None and self.policy.fails(self.report)

    @property
    def error_message(self) -> str:
        """Why the source could not be inspected, naming the source."""
        error = self.error or "could not be inspected"
        return error if error.startswith(self.source) else f"{self.source}: {error}"


@dataclass(frozen=True)
class Run:
    """Every outcome of one run, in the order the sources were given."""

    outcomes: tuple[Outcome, ...] = ()
    config: Config = field(default_factory=Config)
    """the configuration that applied (its file, or none)."""
    exit_zero: bool = False

    @classmethod
    def of(cls, reports: Sequence[Report]) -> Run:
        """A run of already-made reports under the default policy (fix's re-inspection)."""
        return cls(tuple(Outcome(r.checkpoint.source, Policy(), r) for r in reports))

    @property
    def reports(self) -> list[Report]:
        return [o.report for o in self.outcomes if o.report is not None]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.report is None]

    @property
    def failing(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def exit_code(self) -> ExitCode:
        """2 when a source could not be read (never hidden), 1 when one fails its policy
        (0 with ``exit_zero``), else 0."""
        if self.errors:
            return ExitCode.ERROR
        if self.failing and not self.exit_zero:
            return ExitCode.FINDINGS
        return ExitCode.OK

    def counts(self) -> dict[Severity, int]:
        return {s: sum(f.severity is s for r in self.reports for f in r.findings) for s in Severity}

    def summary(self) -> str:
        """One line: why the exit code is what it is, the findings, and the configuration."""
        total, failing, errors = len(self.outcomes), len(self.failing), len(self.errors)
        passed = total - failing - errors
        counts = self.counts()
        thresholds = sorted({o.policy.fail_on.value for o in self.outcomes}) or ["error"]
        code = self.exit_code
        if errors:
            why = f"{errors} of {count(total, 'source')} could not be read"
        elif failing:
            why = f"{failing} of {count(total, 'source')} failed (fail-on {', '.join(thresholds)})"
            if self.exit_zero:
                why += ", ignored by --exit-zero"
        else:
            why = f"{'all ' if total > 1 else ''}{count(total, 'source')} passed (fail-on "
            why += f"{', '.join(thresholds)})"
        tally = (
            f"{passed} passed, {failing} failed, {errors} unreadable; "
            f"{count(counts[Severity.ERROR], 'error')}, "
            f"{count(counts[Severity.WARNING], 'warning')}, {counts[Severity.INFO]:,} info"
        )
        return f"exit {int(code)}: {why}; {tally}; configuration: {self.config.describe()}"


def check(
    sources: Sequence[str | Path],
    options: Options | None = None,
    *,
    progress: Callable[[], Progress | None] | None = None,
    config: Config | None = None,
) -> Run:
    """Inspect every source under its policy and return the run.

    ``config`` is the configuration to use (default: ``options.config``, none with
    ``options.isolated``, else the nearest file found upward); an invalid configuration raises
    ``ConfigError`` before anything is read. A source that cannot be opened is an error
    outcome, never an exception: the other sources are still inspected. ``progress`` makes a
    fresh progress reporter per source (the CLI's bar).
    """
    options = options or Options()
    if config is None:
        config = resolve_config(options.config, options.isolated)
    cli = Layer(
        expect=options.expect,
        fail_on=options.fail_on,
        select=options.select,
        ignore=options.ignore,
    )
    outcomes = []
    for source in sources:
        policy = config.policy_for(str(source), cli)
        try:
            report = inspect(
                source,
                no_data=options.no_data,
                expect=policy.expect.value if policy.expect else None,
                base=options.base,
                progress=progress() if progress is not None else None,
                revision=options.revision,
                token=options.token,
                download=options.download,
                timeout=options.timeout,
                offline=options.offline,
                rtol=options.rtol,
                atol=options.atol,
                pair=options.pair,
            )
        except TiecheckError as e:
            outcomes.append(Outcome(str(source), policy, error=str(e)))
            continue
        outcomes.append(Outcome(str(source), policy, policy.apply(report)))
    return Run(tuple(outcomes), config, options.exit_zero)
