"""``tiecheck.fix``: inspect, plan, stream-write, verify, commit, re-inspect.

The order is what makes it safe: nothing takes a final name until every output file has been
opened by safetensors and compared byte for byte with its source, and the source's files are
re-checked for changes right before the commit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from tiecheck.analysis.ties import Verdict
from tiecheck.api import Progress, inspect
from tiecheck.errors import SourceError, TiecheckError
from tiecheck.model import Checkpoint
from tiecheck.readers.tensor_data import TensorData
from tiecheck.report import Report
from tiecheck.rewrite.commit import commit, recover, remove_temporaries, temp_path
from tiecheck.rewrite.plan import FixPlan, FixRefused, build_plan, parse_size
from tiecheck.rewrite.streaming import Copier, write_file
from tiecheck.rewrite.verify import VerificationError, verify_json, verify_weights


@dataclass
class FixResult:
    plan: FixPlan
    target: Path | None
    """the folder written (None for a dry run or when nothing needed changing)."""
    written: list[str] = field(default_factory=list)
    after: Report | None = None
    """inspection of the output, with ``expect`` set to the target state."""
    recovered: list[str] = field(default_factory=list)
    """files an interrupted earlier run had verified and this run committed."""
    dry_run: bool = False


def _signature(checkpoint: Checkpoint) -> dict[str, tuple[int, int, int]]:
    out = {}
    for f in checkpoint.files.values():
        st = f.path.stat()
        out[f.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _target_folder(
    checkpoint: Checkpoint, output: Path | None, in_place: bool, overwrite: bool
) -> Path:
    if in_place:
        return checkpoint.root
    assert output is not None
    if output.exists() and not output.is_dir():
        raise SourceError(f"{output}: exists and is not a folder")
    if output.exists() and output.resolve() == checkpoint.root.resolve():
        raise SourceError(f"{output} is the source folder; use --in-place to rewrite it")
    if output.is_dir():
        # An earlier run into this folder was killed during its commit: finish it from the
        # journal (its files were verified) rather than leave a journal that names
        # temporaries this run is about to rewrite.
        recover(output)
    if (
        output.is_dir()
        and not overwrite
        and any(not p.name.endswith(".tiecheck-tmp") for p in output.iterdir())
    ):
        raise SourceError(f"{output}: folder is not empty (pass --overwrite to write into it)")
    return output


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TiecheckError(
            f"not enough space in {folder}: the output needs {needed:,} bytes, "
            f"{free:,} are free; nothing was written"
        )


def _write_json(path: Path, value: object) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate read from a JSON escape: write escapes back
        text = json.dumps(value, indent=2, ensure_ascii=True)
    with path.open("x", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _after_source(plan: FixPlan, folder: Path, source_was_folder: bool) -> Path:
    if source_was_folder or (plan.index_name is None and len(plan.files) != 1):
        return folder
    return folder / (plan.index_name or plan.files[0].name)


def _download_repo(
    source: str,
    revision: str | None,
    token: str | None,
    in_place: bool,
    timeout: float | None = None,
    offline: bool = False,
) -> Path:
    """A Hub repo id: fetch what fix reads into the normal cache and fix from there."""
    from tiecheck.readers.hub import download_snapshot, parse_hub_source

    ref = parse_hub_source(source)
    if ref is None:
        raise SourceError(f"{source}: no such file or folder")
    if in_place:
        raise SourceError(
            f"{source}: --in-place is refused for Hub repos (the cache is shared); use -o DIR"
        )
    if revision and ref.revision and revision != ref.revision:
        raise SourceError(f"{source}: revision given twice ({ref.revision!r}, {revision!r})")
    return download_snapshot(
        replace(ref, revision=ref.revision or revision),
        token=token,
        timeout=timeout,
        offline=offline,
    )


def fix(
    source: str | Path,
    *,
    to: Verdict | str,
    output: Path | None = None,
    in_place: bool = False,
    dry_run: bool = False,
    keep: str | None = None,
    max_shard_size: int | str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    revision: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
    offline: bool = False,
) -> FixResult:
    """Rewrite a checkpoint into deduplicated-tied (``to="tied"``) or explicitly-untied form.

    Writes safetensors into ``output`` (a new or empty folder) or, with ``in_place``, beside
    the source, replacing files only after verification. Raises ``FixRefused`` when the
    rewrite would lose data or change the model, ``SourceError`` for unusable paths.
    ``revision``, ``token``, ``timeout`` and ``offline`` apply to Hub repo ids, as in ``inspect``.
    """
    to = Verdict(to)
    if keep not in (None, "embedding", "head"):
        raise ValueError("keep must be 'embedding' or 'head'")
    if not dry_run and (output is None) == (not in_place):
        raise ValueError("give exactly one of output or in_place")
    if isinstance(max_shard_size, str):
        max_shard_size = parse_size(max_shard_size)
    source_path = Path(source)
    if not (source_path.exists() or source_path.is_symlink()):
        source_path = _download_repo(str(source), revision, token, in_place, timeout, offline)
        source = str(source_path)
    recovered: list[str] = []
    if in_place and not dry_run:
        folder = source_path if source_path.is_dir() else source_path.parent
        recovered = recover(folder)
        remove_temporaries(folder)

    report = inspect(source, progress=progress)
    plan = build_plan(report, to, keep=keep, max_shard_size=max_shard_size)
    if in_place and plan.index_name is not None:
        shadow = report.checkpoint.root / "model.safetensors"
        if shadow.exists() and shadow.name not in {f.name for f in plan.files}:
            raise FixRefused(
                f"--in-place would write sharded files beside {shadow}, which loaders read "
                "first (the fix would not take effect); write to a new folder with -o instead"
            )
    if dry_run:
        return FixResult(plan, None, recovered=recovered, dry_run=True)
    if in_place and not plan.changes_anything:
        return FixResult(plan, None, recovered=recovered)
    checkpoint = report.checkpoint
    folder = _target_folder(checkpoint, output, in_place, overwrite)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TiecheckError(f"cannot create {folder}: {e.strerror or e}") from e
    remove_temporaries(folder)
    _check_space(folder, plan.bytes_after + (1 << 20))
    signature = _signature(checkpoint)

    finals: list[Path] = []
    try:
        with TensorData(checkpoint, on_read=progress.advance if progress else None) as data:
            _write_all(plan, folder, in_place, data, progress, finals)
            if _signature(checkpoint) != signature:
                raise VerificationError("the source changed while fix was running; not committed")
    except BaseException as e:
        for final in finals:
            with contextlib.suppress(OSError):  # a read-only folder refuses even that
                temp_path(final).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            remove_temporaries(folder)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TiecheckError(
                f"no space left on the device holding {folder}; nothing was "
                "committed and the source is unchanged"
            ) from e
        if isinstance(e, OSError):
            raise TiecheckError(
                f"writing to {folder} failed: {e.strerror or e}; nothing was committed"
            ) from e
        raise
    # From here on the journal names the verified temporaries: they must survive a failure so
    # the next run can finish the commit instead of leaving a half-old, half-new folder.
    try:
        commit(folder, finals)
    except OSError as e:
        raise TiecheckError(
            f"committing in {folder} failed part-way ({e.strerror or e}); every file is either "
            "old or new and verified: run the same command again to finish"
        ) from e
    after_path = _after_source(plan, folder, source_path.is_dir())
    after = inspect(after_path, expect=to)
    written = [f.relative_to(folder).as_posix() for f in finals]
    return FixResult(plan, folder, written, after, recovered)


def _write_all(
    plan: FixPlan,
    folder: Path,
    in_place: bool,
    data: TensorData,
    progress: Progress | None,
    finals: list[Path],
) -> None:
    """Write and verify every output under its temporary name; ``finals`` collects each
    final path as soon as its temporary may exist, so a failure can clean up all of them."""
    copier = Copier(data)
    if progress is not None:
        progress.stop()
        progress.start(plan.bytes_after * 3, "writing and verifying")
    for out in plan.files:
        final = folder / out.name
        final.parent.mkdir(parents=True, exist_ok=True)
        finals.append(final)
        write_file(temp_path(final), out, copier)
        verify_weights(temp_path(final), out, data)
    if plan.index_name is not None:
        index = {
            "metadata": plan.index_metadata,
            "weight_map": {t.name: f.name for f in plan.files for t in f.tensors},
        }
        final = folder / plan.index_name
        finals.append(final)
        _write_json(temp_path(final), index)
        verify_json(temp_path(final), index, plan.index_name)
    if plan.config is not None:
        final = folder / "config.json"
        finals.append(final)
        _write_json(temp_path(final), plan.config)
        verify_json(temp_path(final), plan.config, "config.json")
    if not in_place:
        for extra in plan.extra_files:
            final = folder / extra.name
            finals.append(final)
            shutil.copyfile(extra, temp_path(final))
    if progress is not None:
        progress.stop()
