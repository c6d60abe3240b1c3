"""The ``tiecheck`` command: a thin shell over the library that parses, renders and exits.

Exit codes (``ExitCode``): 0 nothing at or above ``--fail-on``; 1 findings at or above it;
2 usage errors or a source that cannot be opened. A 2 is never hidden by findings elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
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
    # Help text names paths like ORG/NAME[@REV]: plain text, not rich markup.
    rich_markup_mode=None,
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


def _codes_option(values: list[str] | None, flag: str) -> frozenset[str] | None:
    from tiecheck.policy import parse_codes

    if not values:
        return None
    try:
        return parse_codes(values)
    except ValueError as e:
        _err(f"error: {flag}: {e} (see 'tiecheck rules')")
        raise typer.Exit(ExitCode.ERROR) from None


@app.command("inspect")
def inspect_command(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Checkpoints to inspect: a .safetensors file, a .bin/.pt/.pth/.ckpt pickle, an "
            "*.index.json, a model folder, a PEFT adapter folder, or a Hugging Face Hub repo "
            "(ORG/NAME[@REV], hf://ORG/NAME[@REV][/SUBFOLDER], https://huggingface.co/ORG/NAME). "
            "A local path always wins over a repo id of the same spelling. Glob patterns ('**' "
            "crosses folders) are expanded.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="Report format: table, json, sarif (GitHub code scanning), github (workflow "
            "annotations), junit (GitLab/Jenkins test reports), markdown (PR comments).",
        ),
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
        Expect | None,
        typer.Option(
            help="Fail (TC112) unless the verdict is this tie state (config key: expect).",
            show_default=False,
        ),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            help="Lowest severity that makes the exit code 1 (config key: fail-on; default: "
            "error).",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(
            "--select",
            help="Report only these rules (codes or names; repeatable, comma-separated). "
            "Replaces the configured selection.",
            show_default=False,
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
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
            help="Configuration file (tiecheck.toml or pyproject.toml) instead of the nearest "
            "one found from the current folder upward.",
            show_default=False,
        ),
    ] = None,
    no_config: Annotated[
        bool,
        typer.Option("--no-config", help="Ignore configuration files: flags and defaults only."),
    ] = False,
    base: Annotated[
        Path | None,
        typer.Option(
            help="Base model folder or config.json for a PEFT adapter (default: the adapter's "
            "base_model_name_or_path, locally or in the Hugging Face cache)."
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            help="Hub sources: branch, tag or commit (default: main).", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Hub sources: access token for private or gated repos (default: HF_TOKEN or "
            "the token saved by 'hf auth login').",
            show_default=False,
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="Hub sources with only .bin pickles: download them into the Hugging Face "
            "cache to inspect them (safetensors repos never need this: headers are read with "
            "range requests).",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
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
    2 when a source cannot be opened or the command line or configuration is wrong.

    Settings come from the tool.tiecheck table of pyproject.toml or from tiecheck.toml (the
    nearest one from the current folder upward); flags override them.

    Examples:

      tiecheck inspect ./my-model

      tiecheck inspect model.safetensors --expect tied --fail-on warning

      tiecheck inspect 'models/**/config.json' --format sarif -o tiecheck.sarif

      tiecheck inspect --from-file checkpoints.txt --ignore TC106,TC111 --format junit

      tiecheck inspect Qwen/Qwen2.5-0.5B-Instruct --no-data
    """
    from tiecheck.api import inspect
    from tiecheck.cli.progress import BarProgress
    from tiecheck.cli.sources import (
        expand_globs,
        group_by_checkpoint,
        read_source_list,
    )
    from tiecheck.errors import TiecheckError
    from tiecheck.policy import Config, Layer, Outcome, Run, discover_config, load_config
    from tiecheck.render import RUN_FORMATS, render

    fmt = OutputFormat.JSON if as_json else output_format
    try:
        wanted = list(sources or [])
        if from_file is not None:
            wanted += read_source_list(from_file)
        if not wanted:
            _err("error: give at least one source (a path, a glob or a repo id) or --from-file")
            raise typer.Exit(ExitCode.ERROR)
        targets = expand_globs(wanted)
        if group_shards:
            targets = group_by_checkpoint(targets)
            if not targets:
                # only config files of folders without weights: nothing a loader would read
                if not quiet:
                    _err("no checkpoint among the given files")
                raise typer.Exit(ExitCode.OK)
        if no_config:
            settings = Config()
        elif config is not None:
            settings = load_config(config)
        else:
            settings = discover_config()
    except TiecheckError as e:
        _err(f"error: {e}")
        raise typer.Exit(ExitCode.ERROR) from None
    cli = Layer(
        expect=expect.value if expect else None,
        fail_on=fail_on.value if fail_on else None,
        select=_codes_option(select, "--select"),
        ignore=_codes_option(ignore, "--ignore") or frozenset(),
    )

    outcomes = []
    for source in targets:
        policy = settings.policy_for(source, cli)
        progress = BarProgress() if BarProgress.wanted(quiet) else None
        try:
            report = inspect(
                source,
                no_data=no_data,
                expect=policy.expect,
                base=base,
                progress=progress,
                revision=revision,
                token=token,
                download=download,
            )
        except TiecheckError as e:
            _err(f"error: {e}")
            outcomes.append(Outcome(source, policy, error=str(e)))
            continue
        outcomes.append(Outcome(source, policy, policy.apply(report)))
    run = Run(outcomes)
    if run.errors:
        code = ExitCode.ERROR
    else:
        code = ExitCode.FINDINGS if run.failing and not exit_zero else ExitCode.OK

    if run.reports or fmt in RUN_FORMATS:
        if output is not None:
            try:
                with output.open("w", encoding="utf-8", errors="backslashreplace") as out:
                    render(run.reports, fmt, out, verbose=verbose, run=run)
            except OSError as e:
                _err(f"error: cannot write {output}: {e.strerror or e}")
                raise typer.Exit(ExitCode.ERROR) from None
        else:
            with stdout_may_close(code):
                render(run.reports, fmt, sys.stdout, verbose=verbose, run=run)
    if not quiet and (len(targets) > 1 or fmt is not OutputFormat.TABLE or output is not None):
        if len(targets) > 1:
            for outcome in run.outcomes:
                if outcome.report is None:
                    _err(f"  unreadable  {outcome.source}")
                elif outcome.failed:
                    counts = {
                        s: sum(f.severity is s for f in outcome.report.findings) for s in Severity
                    }
                    _err(
                        f"  failed      {outcome.source} ({outcome.report.verdict.value}; "
                        f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} "
                        f"warning(s))"
                    )
        _err(run.summary())
    raise typer.Exit(code)


class Keep(str, Enum):
    EMBEDDING = "embedding"
    HEAD = "head"


@app.command("fix")
def fix_command(
    source: Annotated[
        str,
        typer.Argument(
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
    revision: Annotated[
        str | None,
        typer.Option(
            help="Hub sources: branch, tag or commit (default: main).", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Hub sources: access token (default: HF_TOKEN).", show_default=False),
    ] = None,
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
            revision=revision,
            token=token,
        )
    except TiecheckError as e:
        _err(f"error: {e}")
        raise typer.Exit(ExitCode.ERROR) from None
    failed = result.after is not None and result.after.fails(Severity.ERROR)
    code = ExitCode.FINDINGS if failed else ExitCode.OK
    with stdout_may_close(code):
        if output_format is OutputFormat.JSON:
            from tiecheck.render.fix_report import render_fix_json

            render_fix_json(result, sys.stdout)
        else:
            from tiecheck.render.fix_report import render_fix_table

            render_fix_table(result, sys.stdout)
    raise typer.Exit(code)


@app.command("rules")
def rules_command(
    codes: Annotated[
        list[str] | None,
        typer.Argument(
            help="Rule codes (TC101) or names (untied-head-missing) to explain; all rules, "
            "one a line, when omitted.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List every rule, or explain some: what each means, why it matters, how to fix it.

    Examples:

      tiecheck rules

      tiecheck rules TC101 tied-but-diverged
    """
    from tiecheck.rules import RULES, find_rule

    if codes:
        rules = []
        for code in codes:
            rule = find_rule(code)
            if rule is None:
                _err(f"error: unknown rule {code!r} (see 'tiecheck rules')")
                raise typer.Exit(ExitCode.ERROR)
            rules.append(rule)
        with stdout_may_close(ExitCode.OK):
            print("\n\n".join(rule.doc_text() for rule in rules))
        return
    with stdout_may_close(ExitCode.OK):
        for rule in RULES.values():
            print(f"{rule.code}  {rule.severity.value:<8} {rule.name:<28} {rule.summary}")


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of 'tiecheck inspect --format json' reports.

    Example:

      tiecheck schema > tiecheck-report.schema.json
    """
    from importlib.resources import files

    text = files("tiecheck").joinpath("schema/report.schema.json").read_text(encoding="utf-8")
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
