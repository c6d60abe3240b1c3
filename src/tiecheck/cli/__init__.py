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
from tiecheck.rules import Severity

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


class Keep(str, Enum):
    EMBEDDING = "embedding"
    HEAD = "head"


@app.command("fix")
def fix_command(
    source: Annotated[
        str,
        typer.Argument(
            help="Checkpoint to rewrite (file, index, or model folder).", show_default=False
        ),
    ],
    to: Annotated[
        Expect,
        typer.Option(
            "--to",
            help="tied: store each tie group once and set the flag true; untied: store "
            "the head explicitly and set the flag false.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the fixed checkpoint into this new or empty folder."
        ),
    ] = None,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place", help="Replace the source's files, atomically, after verification."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and change nothing.")
    ] = False,
    keep: Annotated[
        Keep | None,
        typer.Option(
            help="When tying copies that differ, whose values survive (stored under the "
            "embedding's name)."
        ),
    ] = None,
    max_shard_size: Annotated[
        str | None, typer.Option("--max-shard-size", help="Re-shard the output (e.g. 5GB, 500MB).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Allow writing into a non-empty --output folder.")
    ] = False,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Plan/result format on stdout.")
    ] = OutputFormat.TABLE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Rewrite a checkpoint into deduplicated-tied or explicitly-untied safetensors.

    Tensor bytes are streamed file to file (memory stays flat), every output file is opened
    by safetensors and compared byte for byte with its source before it takes its final
    name, and the output is inspected afterwards (exit codes as for inspect).

    Examples:

      tiecheck fix ./model --to tied -o ./model-tied --dry-run

      tiecheck fix ./finetune --to untied --in-place

      tiecheck fix pytorch_model.bin --to tied -o ./converted --max-shard-size 2GB
    """
    from tiecheck.cli.progress import BarProgress
    from tiecheck.errors import TiecheckError
    from tiecheck.rewrite.fix import fix
    from tiecheck.rewrite.plan import parse_size

    if not dry_run and (output is None) == (not in_place):
        _err("error: give exactly one of --output/-o DIR or --in-place (or use --dry-run)")
        raise typer.Exit(ExitCode.ERROR)
    try:
        shard_limit = parse_size(max_shard_size) if max_shard_size else None
    except ValueError as e:
        _err(f"error: --max-shard-size: {e}")
        raise typer.Exit(ExitCode.ERROR) from None
    progress = BarProgress() if BarProgress.wanted(quiet) else None
    try:
        result = fix(
            source,
            to=to.value,
            output=output,
            in_place=in_place,
            dry_run=dry_run,
            keep=keep.value if keep else None,
            max_shard_size=shard_limit,
            overwrite=overwrite,
            progress=progress,
        )
    except TiecheckError as e:
        _err(f"error: {e}")
        raise typer.Exit(ExitCode.ERROR) from None
    if output_format is OutputFormat.JSON:
        from tiecheck.render.fix_report import render_fix_json

        render_fix_json(result, sys.stdout)
    else:
        from tiecheck.render.fix_report import render_fix_table

        render_fix_table(result, sys.stdout)
    failed = result.after is not None and result.after.fails(Severity.ERROR)
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
