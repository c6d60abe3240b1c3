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
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from tiecheck.analysis.ties import Verdict
from tiecheck.api import Progress, inspect
from tiecheck.errors import SourceError, TiecheckError
from tiecheck.model import Checkpoint
from tiecheck.options import ExitCode
from tiecheck.readers.bytes import LocalFiles
from tiecheck.readers.paths import existing_path, lstat_or_none
from tiecheck.readers.tensor_data import TensorData
from tiecheck.report import Report
from tiecheck.rewrite.commit import commit, is_temp_name, recover, remove_temporaries, temp_name
from tiecheck.rewrite.folder import Folder, write_all
from tiecheck.rewrite.plan import FixPlan, FixRefused, build_plan, parse_size
from tiecheck.rewrite.streaming import Copier, copy_file, write_file
from tiecheck.rewrite.verify import VerificationError, verify_json, verify_weights
from tiecheck.rules import Severity


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

    @property
    def exit_code(self) -> ExitCode:
        """1 when the inspection of what was written still has an error, else 0."""
        if self.after is not None and self.after.fails(Severity.ERROR):
            return ExitCode.FINDINGS
        return ExitCode.OK


def _signature(checkpoint: Checkpoint) -> dict[str, tuple[int, int, int]]:
    out = {}
    for f in checkpoint.files.values():
        st = f.path.stat()
        out[f.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _open_output(checkpoint: Checkpoint, output: Path, overwrite: bool) -> Folder:
    """Open (creating it) and lock the ``-o`` folder; finish an interrupted commit there.

    The folder is compared with the source by device and inode, not by path: a bind mount, a
    symbolic link or a hard-linked folder name must not turn ``-o`` into an in-place rewrite.
    """
    try:
        st = output.stat() if lstat_or_none(output) is not None else None
    except OSError as e:
        raise SourceError(f"{output}: {e.strerror or e}") from e
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{output}: exists and is not a folder")
    same = SourceError(f"{output} is the source folder; use --in-place to rewrite it")
    root = checkpoint.root.stat()
    if st is not None and os.path.samestat(st, root):
        raise same
    folder = Folder(output, create=True)
    try:
        if os.path.samestat(folder.stat(), root):
            raise same
        folder.lock()
        # An earlier run into this folder was killed during its commit: finish it from the
        # journal (verified files only) rather than leave a journal that names temporaries
        # this run is about to rewrite.
        recover(folder)
        if not overwrite and any(not is_temp_name(n) for n in folder.names()):
            raise SourceError(f"{output}: folder is not empty (pass --overwrite to write into it)")
    except BaseException:
        folder.close()
        raise
    return folder


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TiecheckError(
            f"not enough space in {folder}: the output needs {needed:,} bytes, "
            f"{free:,} are free; nothing was written"
        )


def _json_bytes(value: object) -> bytes:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate read from a JSON escape: write escapes back
        return (json.dumps(value, indent=2, ensure_ascii=True) + "\n").encode("utf-8")


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
    pair: tuple[str, str] | None = None,
) -> FixResult:
    """Rewrite a checkpoint into deduplicated-tied (``to="tied"``) or explicitly-untied form.

    Writes safetensors into ``output`` (a new or empty folder) or, with ``in_place``, beside
    the source, replacing files only after verification. Raises ``FixRefused`` when the
    rewrite would lose data or change the model, ``SourceError`` for unusable paths.
    ``revision``, ``token``, ``timeout`` and ``offline`` apply to Hub repo ids, as in ``inspect``;
    ``pair`` (``(embedding, head)``) confirms a tie group only the names suggest, as there.
    """
    to = Verdict(to)
    if keep not in (None, "embedding", "head"):
        raise ValueError("keep must be 'embedding' or 'head'")
    if not dry_run and (output is None) == (not in_place):
        raise ValueError("give exactly one of output or in_place")
    if isinstance(max_shard_size, str):
        max_shard_size = parse_size(max_shard_size)
    local = existing_path(str(source))
    source_path = local if local is not None else Path(source)
    if local is None:
        source_path = _download_repo(str(source), revision, token, in_place, timeout, offline)
        source = str(source_path)
    recovered: list[str] = []
    held: Folder | None = None
    try:
        if in_place and not dry_run:
            held = Folder(source_path if source_path.is_dir() else source_path.parent)
            held.lock()
            recovered = recover(held)
            remove_temporaries(held)
        return _fix(
            source,
            source_path,
            held,
            to=to,
            output=output,
            dry_run=dry_run,
            keep=keep,
            max_shard_size=max_shard_size,
            overwrite=overwrite,
            progress=progress,
            recovered=recovered,
            pair=pair,
        )
    finally:
        if held is not None:
            held.close()


def _fix(
    source: str | Path,
    source_path: Path,
    in_place: Folder | None,
    *,
    to: Verdict,
    output: Path | None,
    dry_run: bool,
    keep: str | None,
    max_shard_size: int | None,
    overwrite: bool,
    progress: Progress | None,
    recovered: list[str],
    pair: tuple[str, str] | None = None,
) -> FixResult:
    report = inspect(source, progress=progress, pair=pair)
    plan = build_plan(report, to, keep=keep, max_shard_size=max_shard_size)
    if in_place is not None and plan.index_name is not None:
        shadow = report.checkpoint.root / "model.safetensors"
        if shadow.exists() and shadow.name not in {f.name for f in plan.files}:
            raise FixRefused(
                f"--in-place would write sharded files beside {shadow}, which loaders read "
                "first (the fix would not take effect); write to a new folder with -o instead"
            )
    if dry_run:
        return FixResult(plan, None, recovered=recovered, dry_run=True)
    if in_place is not None and not plan.changes_anything:
        return FixResult(plan, None, recovered=recovered)
    checkpoint = report.checkpoint
    if in_place is not None:
        folder = in_place
    else:
        assert output is not None
        folder = _open_output(checkpoint, output, overwrite)
    try:
        return _write_and_commit(
            report, plan, folder, in_place is not None, progress, recovered, pair
        )
    finally:
        if folder is not in_place:
            folder.close()


def _write_and_commit(
    report: Report,
    plan: FixPlan,
    folder: Folder,
    in_place: bool,
    progress: Progress | None,
    recovered: list[str],
    pair: tuple[str, str] | None,
) -> FixResult:
    checkpoint = report.checkpoint
    names = _final_names(plan, in_place)
    remove_temporaries(folder, [temp_name(n) for n in names])
    extras = sum(p.stat().st_size for p in plan.extra_files) if not in_place else 0
    _check_space(folder.path, plan.bytes_after + extras + (1 << 20))
    signature = _signature(checkpoint)

    finals: list[str] = []
    notes: list[str] = []
    try:
        with LocalFiles.of(checkpoint) as files:
            data = TensorData.of(checkpoint, files, on_read=progress.advance if progress else None)
            _write_all(plan, folder, in_place, Copier(files, data), progress, finals, notes)
            if _signature(checkpoint) != signature:
                raise VerificationError("the source changed while fix was running; not committed")
    except BaseException as e:
        for final in finals:
            with contextlib.suppress(OSError, TiecheckError):  # a read-only folder refuses that
                folder.unlink(temp_name(final))
        with contextlib.suppress(OSError, TiecheckError):
            remove_temporaries(folder)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TiecheckError(
                f"no space left on the device holding {folder.path}; nothing was "
                "committed and the source is unchanged"
            ) from e
        if isinstance(e, OSError):
            raise TiecheckError(
                f"writing to {folder.path} failed: {e.strerror or e}; nothing was committed"
            ) from e
        raise
    # From here on the journal names the verified temporaries: they must survive a failure so
    # the next run can finish the commit instead of leaving a half-old, half-new folder.
    try:
        commit(folder, finals)
    except OSError as e:
        raise TiecheckError(
            f"committing in {folder.path} failed part-way ({e.strerror or e}); every file is "
            "either old or new and verified: run the same command again to finish"
        ) from e
    plan.notes.extend(notes)
    after_path = _after_source(plan, folder.path, Path(checkpoint.source).is_dir())
    after = inspect(after_path, expect=plan.to, pair=pair)
    return FixResult(plan, folder.path, finals, after, recovered)


def _final_names(plan: FixPlan, in_place: bool) -> list[str]:
    names = [out.name for out in plan.files]
    names += [n for n in (plan.index_name,) if n is not None]
    names += [plan.config_name] if plan.config is not None and plan.config_name else []
    names += [] if in_place else [p.name for p in plan.extra_files]
    return names


def _create(folder: Folder, final: str, in_place: bool, notes: list[str]) -> int:
    """Create ``final``'s temporary; in place, it takes the mode and owner of the file it will
    replace (a 0600 checkpoint stays 0600)."""
    fd = folder.create(temp_name(final))
    if not in_place:
        return fd
    try:
        old = folder.lstat(final)
        if old is not None and stat.S_ISREG(old.st_mode):
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
            mine = os.fstat(fd)
            if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except PermissionError:
                    notes.append(
                        f"{final}: could not keep its owner ({old.st_uid}:{old.st_gid}); the "
                        f"new file belongs to {mine.st_uid}:{mine.st_gid}"
                    )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(
    plan: FixPlan,
    folder: Folder,
    in_place: bool,
    copier: Copier,
    progress: Progress | None,
    finals: list[str],
    notes: list[str],
) -> None:
    """Write and verify every output under its temporary name; ``finals`` collects each
    final name as soon as its temporary may exist, so a failure can clean up all of them."""
    data = copier.data
    if progress is not None:
        progress.stop()
        progress.start(plan.bytes_after * 3, "writing and verifying")

    def json_file(name: str, value: object) -> None:
        finals.append(name)
        fd = _create(folder, name, in_place, notes)
        try:
            write_all(fd, _json_bytes(value))
            os.fsync(fd)
        finally:
            os.close(fd)
        verify_json(folder.path / temp_name(name), value, name)

    for out in plan.files:
        finals.append(out.name)
        fd = _create(folder, out.name, in_place, notes)
        try:
            write_file(fd, out, copier)
        finally:
            os.close(fd)
        verify_weights(folder.path / temp_name(out.name), out, data)
    if plan.index_name is not None:
        index = {
            "metadata": plan.index_metadata,
            "weight_map": {t.name: f.name for f in plan.files for t in f.tensors},
        }
        json_file(plan.index_name, index)
    if plan.config is not None:
        json_file(plan.config_name or "config.json", plan.config)
    if not in_place:
        for extra in plan.extra_files:
            finals.append(extra.name)
            # the resolved file, never a link (plan.extra_files checked it stays in the folder)
            src = os.open(
                os.path.realpath(extra), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            )
            try:
                if not stat.S_ISREG(os.fstat(src).st_mode):
                    raise TiecheckError(f"{extra} is not a regular file; not copied")
                fd = folder.create(temp_name(extra.name))
                try:
                    copy_file(src, fd)
                finally:
                    os.close(fd)
            finally:
                os.close(src)
    if progress is not None:
        progress.stop()
