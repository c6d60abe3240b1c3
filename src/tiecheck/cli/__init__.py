"""The ``tiecheck`` command: a thin shell over the library that parses, renders and exits.

Exit codes (``ExitCode``): 0 nothing at or above ``--fail-on``; 1 findings at or above it;
2 usage errors or a source that cannot be opened. A 2 is never hidden by findings elsewhere.
"""

from __future__ import annotations

import sys
from enum import Enum, IntEnum
from pathlib import Path
from typing import Annotated

import typer

from tiecheck import __version__
from tiecheck.render import OutputFormat

app = typer.Typer(
    name="tiecheck",
    help=(
        "Inspect and repair weight tying (input embedding <-> output head) in model "
        "checkpoints, from the files alone: no model class, no transformers."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1
    ERROR = 2


class Expect(str, Enum):
    TIED = "tied"
    UNTIED = "untied"


class FailOn(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    NEVER = "never"


def _err(message: str) -> None:
    print(f"tiecheck: {message}", file=sys.stderr)


def _version(value: bool) -> None:
    if value:
        print(f"tiecheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Inspect and repair weight tying in model checkpoints."""


@app.command("inspect")
def inspect_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Checkpoints to inspect: a .safetensors file, a .bin/.pt/.pth/.ckpt pickle, an "
            "*.index.json, a model folder or a PEFT adapter folder.",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Report format on stdout.")
    ] = OutputFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", help="Shorthand for --format json.")] = False,
    no_data: Annotated[
        bool,
        typer.Option(
            "--no-data",
            help="Work from headers alone: read no tensor bytes (fast; duplicate vs "
            "diverged copies cannot be told apart).",
        ),
    ] = False,
    expect: Annotated[
        Expect | None, typer.Option(help="Fail (TC112) unless the verdict is this tie state.")
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Lowest severity that makes the exit code 1.")
    ] = FailOn.ERROR,
    base: Annotated[
        Path | None,
        typer.Option(
            help="Base model folder or config.json for a PEFT adapter (default: the adapter's "
            "base_model_name_or_path, locally or in the Hugging Face cache)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line on stderr.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also list notes, shared storages and identical tensors."
        ),
    ] = False,
) -> None:
    """Report storage sharing, duplicate and missing tensors and the tie state of checkpoints.

    Exit code 0 when nothing reaches --fail-on, 1 when something does, 2 when a source
    cannot be opened or the command line is wrong.

    Examples:

      tiecheck inspect ./my-model

      tiecheck inspect model.safetensors --expect tied --fail-on warning

      tiecheck inspect ./shards/model.safetensors.index.json --json --no-data
    """
    from tiecheck.api import inspect
    from tiecheck.cli.progress import BarProgress
    from tiecheck.errors import TiecheckError
    from tiecheck.render import render
    from tiecheck.rules import Severity

    fmt = OutputFormat.JSON if as_json else output_format
    threshold = None if fail_on is FailOn.NEVER else Severity(fail_on.value)
    reports, errors = [], 0
    for source in sources:
        progress = BarProgress() if BarProgress.wanted(quiet) else None
        try:
            reports.append(
                inspect(
                    source,
                    no_data=no_data,
                    expect=expect.value if expect else None,
                    base=base,
                    progress=progress,
                )
            )
        except TiecheckError as e:
            _err(f"error: {e}")
            errors += 1
    if reports:
        if output is not None:
            try:
                with output.open("w", encoding="utf-8") as out:
                    render(reports, fmt, out, verbose=verbose)
            except OSError as e:
                _err(f"error: cannot write {output}: {e.strerror or e}")
                raise typer.Exit(ExitCode.ERROR) from None
        else:
            render(reports, fmt, sys.stdout, verbose=verbose)
    failed = sum(r.fails(threshold) for r in reports)
    if not quiet and (len(sources) > 1 or fmt is not OutputFormat.TABLE or output is not None):
        counts = {s: sum(f.severity is s for r in reports for f in r.findings) for s in Severity}
        _err(
            f"{len(sources)} source(s): {failed} failing, {errors} unreadable; "
            f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s), "
            f"{counts[Severity.INFO]} info"
        )
    if errors:
        raise typer.Exit(ExitCode.ERROR)
    raise typer.Exit(ExitCode.FINDINGS if failed else ExitCode.OK)


@app.command("rules")
def rules_command(
    code: Annotated[
        str | None, typer.Argument(help="A rule code (TC101) to explain; all rules when omitted.")
    ] = None,
) -> None:
    """List every rule code with its severity and meaning."""
    from tiecheck.rules import RULES

    if code is not None:
        rule = RULES.get(code.upper())
        if rule is None:
            _err(f"error: unknown rule {code!r} (see 'tiecheck rules')")
            raise typer.Exit(ExitCode.ERROR)
        print(f"{rule.code} {rule.name} ({rule.severity.value})\n  {rule.summary}")
        return
    for rule in RULES.values():
        print(f"{rule.code}  {rule.severity.value:<8} {rule.name:<28} {rule.summary}")


def main() -> None:
    """Console entry point; turns any unexpected failure into exit 2 without a traceback."""
    try:
        app()
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug: say so plainly; --verbose-free users get no traceback
        if "--debug" in sys.argv or __import__("os").environ.get("TIECHECK_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set TIECHECK_DEBUG=1 for details)")
        sys.exit(ExitCode.ERROR)
