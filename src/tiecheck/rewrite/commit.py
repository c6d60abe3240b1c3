"""Give written files their final names atomically, with a journal for crash recovery.

Every output is first written under a hidden temporary name beside its destination and
verified. Only then is a journal of the renames written (atomically), the renames performed
(each one atomic), and the journal removed. Killed before the journal exists: only hidden
temporaries are left and the destination is untouched. Killed during the renames: the next
``fix`` on that folder finishes them from the journal, so the folder never stays half-old,
half-new. ``os.replace`` on a symlink replaces the link, never the file it points to, which
keeps the Hugging Face cache's shared ``blobs/`` intact.

A journal found in a folder is hostile input like any other file there (a repository can ship
one). It is replayed only if every entry names a temporary tiecheck itself creates, in that
folder, for that final name, *and* the temporary (or, once renamed, the final file) is the very
file the journal recorded: same device, inode and size. Inode numbers are assigned when a file
is created on this machine, so a journal planted in a downloaded or copied folder cannot match
them. Anything else is refused before a single rename.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tiecheck.errors import FormatError, TiecheckError
from tiecheck.readers.jsonfile import parse_json
from tiecheck.rewrite.folder import Folder, FolderError, relative_parts, write_all

JOURNAL = ".tiecheck-commit.json"
TEMP_MARK = ".tiecheck-tmp"
JOURNAL_VERSION = 2
MAX_JOURNAL_BYTES = 16 << 20
"""A journal names each output file once (~150 bytes each): 16 MiB is ~100,000 files."""


class JournalError(TiecheckError):
    """A commit journal that tiecheck will not replay; nothing was renamed."""


def temp_name(name: str) -> str:
    """The hidden temporary beside ``name`` (a relative POSIX name)."""
    folder, _, base = name.rpartition("/")
    return f"{folder}/.{base}{TEMP_MARK}" if folder else f".{base}{TEMP_MARK}"


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_MARK}")


def is_temp_name(name: str) -> bool:
    base = name.rpartition("/")[2]
    return base.startswith(".") and base.endswith(TEMP_MARK) and len(base) > len(TEMP_MARK) + 1


@dataclass(frozen=True)
class _Entry:
    temp: str
    final: str
    dev: int
    ino: int
    size: int

    def matches(self, st: os.stat_result | None) -> bool:
        return (
            st is not None
            and stat.S_ISREG(st.st_mode)
            and (st.st_dev, st.st_ino, st.st_size) == (self.dev, self.ino, self.size)
        )


def remove_temporaries(folder: Folder, names: Iterable[str] = ()) -> list[str]:
    """Delete hidden temporaries left by an interrupted run: those at the top of the folder
    and the given ones (temporaries this run is about to create, in sub-folders too). Links
    are removed as links; folders are never touched. Returns what was removed."""
    candidates = [n for n in folder.names() if is_temp_name(n)]
    candidates += [n for n in names if n not in candidates]
    removed = []
    for name in candidates:
        try:
            st = folder.lstat(name)
        except FolderError:
            continue  # its folder is a link: nothing of ours can be in it
        if st is None or stat.S_ISDIR(st.st_mode):
            continue
        if folder.unlink(name):
            removed.append(name)
    return removed


def _read_journal(folder: Folder) -> list[_Entry] | None:
    where = folder.path / JOURNAL
    st = folder.lstat(JOURNAL)
    if st is None:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise JournalError(f"{where} is not a regular file (tiecheck never writes one like it)")
    if st.st_size > MAX_JOURNAL_BYTES:
        raise JournalError(
            f"{where} is {st.st_size:,} bytes, more than any journal tiecheck writes"
        )
    fd = folder.open_read(JOURNAL)
    try:
        raw = os.pread(fd, MAX_JOURNAL_BYTES + 1, 0)
    finally:
        os.close(fd)
    try:
        data, _ = parse_json(raw)
    except FormatError as e:
        raise JournalError(f"{where}: unreadable commit journal ({e})") from e
    if not (
        isinstance(data, dict)
        and data.get("tiecheck_journal") == JOURNAL_VERSION
        and isinstance(data.get("renames"), list)
    ):
        raise JournalError(f"{where} is not a commit journal this version of tiecheck wrote")
    entries = []
    for item in data["renames"]:
        if not (
            isinstance(item, dict)
            and set(item) == {"temp", "final", "dev", "ino", "size"}
            and isinstance(item["temp"], str)
            and isinstance(item["final"], str)
            and all(type(item[k]) is int and 0 <= item[k] < 2**64 for k in ("dev", "ino", "size"))
        ):
            raise JournalError(f"{where} has a malformed entry")
        final = item["final"]
        try:
            relative_parts(final)
        except FolderError as e:
            raise JournalError(f"{where} names {final!r}, outside the folder ({e})") from None
        if item["temp"] != temp_name(final) or final == JOURNAL or is_temp_name(final):
            raise JournalError(
                f"{where} renames {item['temp']!r} onto {final!r}: not a temporary tiecheck "
                "creates for that name"
            )
        entries.append(_Entry(item["temp"], final, item["dev"], item["ino"], item["size"]))
    if len({e.final for e in entries}) != len(entries):
        raise JournalError(f"{where} names one final file twice")
    return entries


def recover(folder: Folder) -> list[str]:
    """Finish a commit that was interrupted after its journal was written; returns the final
    names it renamed. Raises ``JournalError`` (renaming nothing) for a journal that does not
    describe temporaries tiecheck wrote in this folder."""
    entries = _read_journal(folder)
    if entries is None:
        return []
    pending = []
    for entry in entries:
        try:
            temp, final = folder.lstat(entry.temp), folder.lstat(entry.final)
        except FolderError as e:
            raise JournalError(f"{folder.path / JOURNAL}: {e}; nothing was renamed") from None
        if final is not None and stat.S_ISDIR(final.st_mode):
            raise JournalError(
                f"{folder.path / JOURNAL} would replace the folder {entry.final!r}; nothing "
                "was renamed"
            )
        if entry.matches(temp):
            pending.append(entry)
        elif not entry.matches(final):  # neither waiting nor already renamed: not our file
            raise JournalError(
                f"{folder.path / JOURNAL} does not match the files beside it ({entry.temp!r} "
                "is missing or is not the file tiecheck wrote: a copied folder, or a journal "
                "tiecheck did not write); nothing was renamed. If no 'tiecheck fix' was "
                f"interrupted here, check and delete {JOURNAL} and the .*{TEMP_MARK} files"
            )
    for entry in pending:
        folder.replace(entry.temp, entry.final)
    folder.fsync()
    folder.unlink(JOURNAL)
    folder.fsync()
    return [e.final for e in pending]


def commit(folder: Folder, finals: list[str]) -> None:
    """Rename each ``temp_name(final)`` onto ``final`` as one recoverable step."""
    entries = []
    for final in finals:
        st = folder.lstat(temp_name(final))
        if st is None or not stat.S_ISREG(st.st_mode):
            raise TiecheckError(f"{folder.path / temp_name(final)} vanished before the commit")
        entries.append(
            {
                "temp": temp_name(final),
                "final": final,
                "dev": st.st_dev,
                "ino": st.st_ino,
                "size": st.st_size,
            }
        )
    journal_temp = temp_name(JOURNAL)
    folder.unlink(journal_temp)
    raw = json.dumps({"tiecheck_journal": JOURNAL_VERSION, "renames": entries}).encode()
    fd = folder.create(journal_temp, 0o600)
    try:
        write_all(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    folder.replace(journal_temp, JOURNAL)
    folder.fsync()
    for entry in entries:
        folder.replace(entry["temp"], entry["final"])
    folder.fsync()
    folder.unlink(JOURNAL)
    folder.fsync()
