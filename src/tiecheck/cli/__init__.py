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
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Hub sources: give up (exit 2) when a request gets no answer for this long "
            "(default: TIECHECK_HUB_TIMEOUT, else 30).",
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Hub sources: read the Hugging Face cache only and make no network request "
            "(as HF_HUB_OFFLINE=1 does).",
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
                timeout=timeout,
                offline=offline,
            )
        except TiecheckError as e:
            _err(f"error: {e}")
            outcomes.append(Outcome(source, policy, error=str(e)))
            continue
        outcomes.append(Outcome(source, policy, policy.apply(report)))
    run = Run(outcomes)

    if run.reports or fmt in RUN_FORMATS:
        if output is not None:
            try:
                with output.open("w", encoding="utf-8", errors="backslashreplace") as out:
                    render(run.reports, fmt, out, verbose=verbose, run=run)
            except OSError as e:
                _err(f"error: cannot write {output}: {e.strerror or e}")
                raise typer.Exit(ExitCode.ERROR) from None
        else:
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
    if run.errors:
        raise typer.Exit(ExitCode.ERROR)
    raise typer.Exit(ExitCode.FINDINGS if run.failing and not exit_zero else ExitCode.OK)


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
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Hub sources: give up (exit 2) when a request gets no answer for this long "
            "(default: TIECHECK_HUB_TIMEOUT, else 30).",
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Hub sources: read the Hugging Face cache only and make no network request "
            "(as HF_HUB_OFFLINE=1 does).",
        ),
    ] = False,
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
            timeout=timeout,
            offline=offline,
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
        print("\n\n".join(rule.doc_text() for rule in rules))
        return
    for rule in RULES.values():
        print(f"{rule.code}  {rule.severity.value:<8} {rule.name:<28} {rule.summary}")


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of 'tiecheck inspect --format json' reports.

    Example:

      tiecheck schema > tiecheck-report.schema.json
    """
    from importlib.resources import files

    print(
        files("tiecheck").joinpath("schema/report.schema.json").read_text(encoding="utf-8"), end=""
    )


def main() -> None:
    """Console entry point; turns any unexpected failure into exit 2 without a traceback."""
    for stream in (sys.stdout, sys.stderr):
        # Names read from a checkpoint may hold lone surrogates (pickled strings can): print
        # them escaped instead of failing to encode them.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
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
