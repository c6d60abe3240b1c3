"""The ``tiecheck`` command: a thin shell over the library. Each command parses its options
into the library's terms, calls it, renders what it returns and exits with its code.

Exit codes (``tiecheck.options.ExitCode``): 0 nothing at or above ``--fail-on``; 1 findings at
or above it; 2 usage errors, configuration errors or a source that cannot be opened (never
hidden by ``--exit-zero``); 130/143 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperArgument, TyperCommand

from tiecheck import __version__
from tiecheck.options import ExitCode, Expect, FailOn, Keep
from tiecheck.render import FixFormat, OutputFormat
from tiecheck.units import count

app = typer.Typer(
    name="tiecheck",
    help=(
        "Inspect and repair weight tying (input embedding <-> output head) in model "
        "checkpoints, from the files alone: no model class, no transformers."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Help text names paths like ORG/NAME[@REV]: plain text, not rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@contextlib.contextmanager
def stdout_may_close(code: int) -> Iterator[None]:
    """Write a report to stdout whose reader may go away (``| head``): the exit code stays
    the one the run earned, and nothing is printed about the closed pipe."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        raise typer.Exit(code) from None


def _err(message: str) -> None:
    """One line on stderr; input text in it (paths, names) cannot drive the terminal."""
    from tiecheck.render.text import printable

    print(f"tiecheck: {printable(message)}", file=sys.stderr)


def _fail(message: str) -> typer.Exit:
    """Say ``error: message`` and return the exit to raise (code 2)."""
    _err(f"error: {message}")
    return typer.Exit(ExitCode.ERROR)


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


def _codes_option(values: list[str] | None, flag: str):  # type: ignore[no-untyped-def]
    from tiecheck.config import parse_codes

    if not values:
        return None
    try:
        return parse_codes(values)
    except ValueError as e:
        raise _fail(f"{flag}: {e} (see 'tiecheck rules')") from None


def _output(path: Path | None):  # type: ignore[no-untyped-def]
    """Where a report goes: the ``-o`` file (opened before any work, so a bad path fails
    fast) or stdout."""
    if path is None:
        return contextlib.nullcontext(sys.stdout)
    try:
        return path.open("w", encoding="utf-8", errors="backslashreplace")
    except OSError as e:
        raise _fail(f"cannot write {path}: {e.strerror or e}") from None


PAIR_HELP = (
    "Name the tie group yourself, as EMBEDDING=HEAD (e.g. tok.weight=proj.weight), when "
    "nothing in the files confirms the pair the names suggest (a model type tiecheck does "
    "not know, no config). Replaces every other grouping; the head may be absent."
)

# Options that inspect and fix share, declared once so their spelling and help cannot drift.
RevisionOption = Annotated[
    str | None,
    typer.Option(
        metavar="REV",
        help="Hub sources: branch, tag or commit (default: main).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        metavar="TOKEN",
        help="Hub sources: access token for private or gated repos (default: HF_TOKEN or "
        "the token saved by 'hf auth login').",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Hub sources: give up (exit 2) when a request gets no answer for this long "
        "(default: TIECHECK_HUB_TIMEOUT, else 30).",
        show_default=False,
    ),
]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Hub sources: read the Hugging Face cache only and make no network request "
        "(as HF_HUB_OFFLINE=1 does).",
    ),
]
PairOption = Annotated[
    str | None,
    typer.Option("--pair", metavar="EMBEDDING=HEAD", help=PAIR_HELP, show_default=False),
]


def _pair_option(value: str | None) -> tuple[str, str] | None:
    from tiecheck.options import parse_pair

    if value is None:
        return None
    try:
        return parse_pair(value)
    except ValueError as e:
        raise _fail(f"--pair: {e}") from None


SOURCES_HELP = (
    "Checkpoints to inspect: a .safetensors file, a .bin/.pt/.pth/.ckpt pickle, an "
    "*.index.json, a model folder, a PEFT adapter folder, or a Hugging Face Hub repo "
    "(ORG/NAME[@REV], hf://ORG/NAME[@REV][/SUBFOLDER], https://huggingface.co/ORG/NAME). "
    "A local path always wins over a repo id of the same spelling, and a path that does not "
    "exist is never sent to the Hub. Glob patterns ('**' crosses folders) are expanded."
)


class _Command(TyperCommand):
    """Arguments whose metavar already says what they are (``SOURCE``) are shown without
    typer's Python type beside it (``SOURCE <list[str]>`` reads as noise to a user), and a
    required one reads ``SOURCE`` in the usage line, as in POSIX synopses (typer writes
    ``{SOURCE}``, which looks like literal braces to type)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is not None:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
                if param.required:
                    usage = param.metavar + ("..." if param.nargs != 1 else "")
                    param.get_usage_pieces = lambda ctx, u=usage: [u]  # type: ignore[method-assign]


@app.command("inspect", cls=_Command)
def inspect_command(
    sources: Annotated[
        list[str] | None,
        typer.Argument(metavar="SOURCE", help=SOURCES_HELP, show_default=False),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="Report format: table (people), concise (one line per finding), json "
            "(scripts; 'tiecheck schema'), sarif (GitHub code scanning), github (workflow "
            "annotations), junit (GitLab/Jenkins test reports), markdown (PR comments).",
        ),
    ] = OutputFormat.TABLE,
    as_json: Annotated[bool, typer.Option("--json", help="Shorthand for --format json.")] = False,
    statistics: Annotated[
        bool,
        typer.Option(
            "--statistics",
            help="Print how many findings each rule produced instead of the findings.",
        ),
    ] = False,
    no_data: Annotated[
        bool,
        typer.Option(
            "--no-data",
            help="Work from headers alone: read no tensor bytes (fast; an identical copy of "
            "the head cannot be told from a diverged one).",
        ),
    ] = False,
    expect: Annotated[
        Expect | None,
        typer.Option(
            metavar="STATE",
            help="Fail (TC112) unless the verdict is this tie state: tied or untied "
            "(config key: expect).",
            show_default=False,
        ),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            metavar="SEVERITY",
            help="Lowest severity that makes the exit code 1: error, warning, info or never "
            "(config key: fail-on; default: error).",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            metavar="RULES",
            help="Report only these rules (codes or names; repeatable, comma-separated). "
            "Replaces the configured selection.",
            show_default=False,
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
            metavar="RULES",
            help="Do not report these rules (codes or names; repeatable, comma-separated). "
            "Added to the configured ignores.",
            show_default=False,
        ),
    ] = None,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero",
            help="Exit 0 even when findings reach --fail-on (errors reading sources or the "
            "configuration still exit 2).",
        ),
    ] = False,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file",
            metavar="LIST",
            help="Also inspect the sources listed in this file ('-' for stdin): one path or "
            "repo id a line; blank lines and '#' comments are skipped.",
            show_default=False,
        ),
    ] = None,
    group_shards: Annotated[
        bool,
        typer.Option(
            "--group-shards",
            help="Inspect a file that belongs to a model folder (a shard, its index, the "
            "config) as that folder, once: what the pre-commit hook passes is changed files.",
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Configuration file (tiecheck.toml or pyproject.toml) instead of the nearest "
            "one found from the current folder upward.",
            show_default=False,
        ),
    ] = None,
    isolated: Annotated[
        bool,
        typer.Option(
            "--isolated",
            "--no-config",
            help="Ignore configuration files: flags and defaults only.",
        ),
    ] = False,
    base: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="Base model folder or config.json for a PEFT adapter (default: the adapter's "
            "base_model_name_or_path, locally or in the Hugging Face cache).",
            show_default=False,
        ),
    ] = None,
    revision: RevisionOption = None,
    token: TokenOption = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Hub sources with only .bin pickles: download them into the Hugging Face "
            "cache to inspect them (safetensors repos never need this: headers are read with "
            "range requests).",
        ),
    ] = False,
    timeout: TimeoutOption = None,
    offline: OfflineOption = False,
    rtol: Annotated[
        float,
        typer.Option(
            "--rtol",
            metavar="R",
            min=0.0,
            help="Copies whose every value is within atol + rtol * |embedding| of the "
            "embedding are numerically identical, not a trained head (numpy.allclose's rule).",
        ),
    ] = 1e-5,
    atol: Annotated[
        float,
        typer.Option("--atol", metavar="A", min=0.0, help="See --rtol."),
    ] = 1e-8,
    pair: PairOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report to this file instead of stdout.",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on stderr.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also list notes, shared storages and identical tensors."
        ),
    ] = False,
) -> None:
    """Report storage sharing, duplicate and missing tensors and the tie state of checkpoints.

    Exit code 0 when nothing reaches --fail-on, 1 when something does (0 with --exit-zero),
    2 when a source cannot be opened or the command line or configuration is wrong. The last
    line on stderr says why, and which configuration file applied.

    Settings come from the tool.tiecheck table of pyproject.toml or from tiecheck.toml (the
    nearest one from the current folder upward); flags override them.

    Examples:

      tiecheck inspect ./my-model

      tiecheck inspect model.safetensors --expect tied --fail-on warning

      tiecheck inspect 'models/**/config.json' --format sarif -o tiecheck.sarif

      tiecheck inspect --from-file checkpoints.txt --ignore TC106,TC111 --format junit

      tiecheck inspect Qwen/Qwen2.5-0.5B-Instruct --no-data
    """
    from tiecheck.cli.progress import BarProgress
    from tiecheck.cli.sources import collect_sources
    from tiecheck.errors import TiecheckError
    from tiecheck.options import Options
    from tiecheck.render import render
    from tiecheck.render.statistics import render_statistics
    from tiecheck.run import check

    fmt = OutputFormat.JSON if as_json else output_format
    options = Options(
        expect=expect,
        fail_on=fail_on,
        select=_codes_option(select, "--select"),
        ignore=_codes_option(ignore, "--ignore") or frozenset(),
        exit_zero=exit_zero,
        no_data=no_data,
        base=base,
        config=config,
        isolated=isolated,
        revision=revision,
        token=token,
        download=download,
        timeout=timeout,
        offline=offline,
        rtol=rtol,
        atol=atol,
        pair=_pair_option(pair),
    )
    try:
        targets = collect_sources(sources or [], from_file, group_shards=group_shards)
        if not targets:
            if group_shards and (sources or from_file):
                # only config files of folders without weights: nothing a loader would read
                if not quiet:
                    _err("no checkpoint among the given files")
                raise typer.Exit(ExitCode.OK)
            raise _fail("give at least one source (a path, a glob or a repo id) or --from-file")
        wanted = BarProgress.wanted(quiet)
        run = check(targets, options, progress=lambda: BarProgress() if wanted else None)
    except TiecheckError as e:
        raise _fail(str(e)) from None
    for outcome in run.errors:
        _err(f"error: {outcome.error_message}")
    pipe = stdout_may_close(run.exit_code) if output is None else contextlib.nullcontext()
    with _output(output) as out, pipe:
        if statistics:
            render_statistics(run, out, json=fmt is OutputFormat.JSON)
        else:
            render(run, fmt, out, verbose=verbose)
    if not quiet:
        if len(run.outcomes) > 1:
            for outcome in run.failing:
                report = outcome.report
                assert report is not None
                _err(
                    f"  failed      {outcome.source} ({report.verdict.value}; "
                    f"{count(len(report.findings), 'finding')})"
                )
        _err(run.summary())
    raise typer.Exit(run.exit_code)


@app.command("fix", cls=_Command)
def fix_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="Checkpoint to rewrite: a file, an index, a model folder, or a Hub repo id "
            "(downloaded into the Hugging Face cache; write with -o). A local path wins over a "
            "repo id of the same spelling.",
            show_default=False,
        ),
    ],
    to: Annotated[
        Expect,
        typer.Option(
            "--to",
            metavar="STATE",
            help="tied: store each tie group once and set the flag true; untied: store "
            "the head explicitly and set the flag false.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Write the fixed checkpoint into this new or empty folder.",
            show_default=False,
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
            metavar="MEMBER",
            help="--to tied with copies that differ: whose values survive, embedding or head "
            "(stored under the embedding's name).",
            show_default=False,
        ),
    ] = None,
    max_shard_size: Annotated[
        str | None,
        typer.Option(
            "--max-shard-size",
            metavar="SIZE",
            help="Re-shard the output (e.g. 5GB, 500MB, 2GiB).",
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Allow writing into a non-empty --output folder.")
    ] = False,
    output_format: Annotated[
        FixFormat,
        typer.Option("--format", "-f", help="Plan and result on stdout: table or json."),
    ] = FixFormat.TABLE,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; one line of result.")
    ] = False,
    revision: RevisionOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = None,
    offline: OfflineOption = False,
    pair: PairOption = None,
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
    from tiecheck.render.fix_report import render_fix_json, render_fix_line, render_fix_table
    from tiecheck.rewrite.fix import fix
    from tiecheck.rewrite.plan import parse_size

    if not dry_run and (output is None) == (not in_place):
        raise _fail("give exactly one of --output/-o DIR or --in-place (or use --dry-run)")
    try:
        shard_limit = parse_size(max_shard_size) if max_shard_size is not None else None
    except ValueError as e:
        raise _fail(f"--max-shard-size: {e}") from None
    named_pair = _pair_option(pair)
    if keep is not None and to is Expect.UNTIED:
        _err("warning: --keep only applies to --to tied (untying keeps every tensor); ignored")
        keep = None
    progress = BarProgress() if BarProgress.wanted(quiet) else None
    try:
        result = fix(
            source,
            to=to,
            output=output,
            in_place=in_place,
            dry_run=dry_run,
            keep=keep,
            max_shard_size=shard_limit,
            overwrite=overwrite,
            progress=progress,
            revision=revision,
            token=token,
            timeout=timeout,
            offline=offline,
            pair=named_pair,
        )
    except TiecheckError as e:
        raise _fail(str(e)) from None
    code = result.exit_code
    with stdout_may_close(code):
        if output_format is FixFormat.JSON:
            render_fix_json(result, sys.stdout)
        elif quiet:
            render_fix_line(result, sys.stdout)
        else:
            render_fix_table(result, sys.stdout)
    raise typer.Exit(code)


class RulesFormat(str, Enum):
    TEXT = "text"
    JSON = "json"


@app.command("rules", cls=_Command)
def rules_command(
    codes: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="RULE",
            help="Rule codes (TC101) or names (untied-head-missing) to explain; all rules, "
            "one a line, when omitted.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        RulesFormat,
        typer.Option("--format", "-f", help="text, or json (every field of each rule)."),
    ] = RulesFormat.TEXT,
) -> None:
    """List every rule, or explain some: what each means, why it matters, how to fix it.

    Examples:

      tiecheck rules

      tiecheck rules TC101 tied-but-diverged

      tiecheck rules --format json
    """
    import json
    import textwrap

    from tiecheck.render.text import report_width
    from tiecheck.rules import RULES, find_rule

    rules = list(RULES.values())
    if codes:
        rules = []
        for code in codes:
            rule = find_rule(code)
            if rule is None:
                raise _fail(f"unknown rule {code!r} (see 'tiecheck rules')")
            rules.append(rule)
    with stdout_may_close(ExitCode.OK):
        if output_format is RulesFormat.JSON:
            print(json.dumps([rule.as_dict() for rule in rules], indent=2))
        elif codes:
            width = min(report_width(sys.stdout), 100)
            print("\n\n".join(rule.doc_text(width=width) for rule in rules))
        else:
            width = report_width(sys.stdout)
            for rule in rules:
                start = f"{rule.code.value}  {rule.severity.value:<8} {rule.name:<28} "
                print(
                    textwrap.fill(
                        rule.summary,
                        width,
                        initial_indent=start,
                        subsequent_indent=" " * len(start),
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )


class SchemaKind(str, Enum):
    REPORT = "report"
    FIX = "fix"


@app.command("schema", cls=_Command)
def schema_command(
    kind: Annotated[
        SchemaKind,
        typer.Argument(
            metavar="KIND",
            help="report ('tiecheck inspect --format json') or fix ('tiecheck fix --format json').",
        ),
    ] = SchemaKind.REPORT,
) -> None:
    """Print the JSON Schema of tiecheck's JSON output.

    Examples:

      tiecheck schema > tiecheck-report.schema.json

      tiecheck schema fix
    """
    from importlib.resources import files

    name = f"schema/{kind.value}.schema.json"
    text = files("tiecheck").joinpath(name).read_text(encoding="utf-8")
    with stdout_may_close(ExitCode.OK):
        print(text, end="")


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is so the same cleanup runs (``fix``
    removes its temporaries) before the process exits with 128 + the signal number.

    Not ``KeyboardInterrupt``: typer turns that into a silent exit 130 deep inside, before
    the progress bar can be ended and the interruption said."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _interrupted() -> None:
    from tiecheck.cli.progress import BarProgress

    BarProgress.stop_all()  # end the progress line before anything else is printed
    _err("interrupted")


def _usage_error(e: Exception) -> str:
    """A command-line error in tiecheck's one style (typer words pydantic's validation errors
    as "Value error, ..."): the message, then where to read more."""
    message = getattr(e, "format_message", lambda: str(e))()
    if message.startswith("Usage:"):  # no arguments at all: the help is the message
        return message
    message = " ".join(message.replace("Value error, ", "").split())  # one line
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {message}{hint}"


def run(args: list[str] | None = None) -> int:
    """Run the command line and return its exit code; every way out is a code, never a
    traceback: usage errors 2, Ctrl-C 130, SIGTERM 143, a bug 2 with one line."""
    try:
        result = app(args=args, prog_name="tiecheck", standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except typer.Exit as e:
        return e.exit_code
    except Interrupted as e:
        _interrupted()
        return 128 + e.signum
    except (KeyboardInterrupt, typer.Abort):  # a caller that kept Python's SIGINT handler
        _interrupted()
        return 130
    except typer.TyperException as e:  # typer's click: usage errors and bad values
        text = _usage_error(e)
        if text.startswith("Usage:"):
            print(text, file=sys.stderr)
        else:
            _err(text)
        return ExitCode.ERROR
    except BrokenPipeError:
        silence_stdout()
        return 141  # what a shell reports for a writer killed by SIGPIPE
    except Exception as e:  # a bug: say so plainly; users get no traceback
        if "--debug" in sys.argv or os.environ.get("TIECHECK_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set TIECHECK_DEBUG=1 for details)")
        return ExitCode.ERROR


def silence_stdout() -> None:
    """The reader of stdout went away (``| head``): send the rest of the output, and the
    interpreter's final flush, to /dev/null instead of failing again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main() -> None:
    """Console entry point."""
    for stream in (sys.stdout, sys.stderr):
        # Names read from a checkpoint may hold lone surrogates (pickled strings can): print
        # them escaped instead of failing to encode them.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    sys.exit(run())
