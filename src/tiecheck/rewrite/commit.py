"""Give written files their final names atomically, with a journal for crash recovery.

Every output is first written under a hidden temporary name beside its destination and
verified. Only then is a journal of the renames written (atomically), the renames performed
(each one atomic), and the journal removed. Killed before the journal exists: only hidden
temporaries are left and the destination is untouched. Killed during the renames: the next
``fix`` on that folder finishes them from the journal, so the folder never stays half-old,
half-new. ``os.replace`` on a symlink replaces the link, never the file it points to, which
keeps the Hugging Face cache's shared ``blobs/`` intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tiecheck.errors import TiecheckError

JOURNAL = ".tiecheck-commit.json"
TEMP_MARK = ".tiecheck-tmp"


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{TEMP_MARK}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporaries(folder: Path) -> list[str]:
    """Delete hidden temporaries left by an interrupted run; returns their names."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TEMP_MARK) and p.is_file():
                p.unlink()
                removed.append(p.name)
    return removed


def recover(folder: Path) -> list[str]:
    """Finish a commit that was interrupted after its journal was written."""
    journal = folder / JOURNAL
    if not journal.is_file():
        return []
    try:
        renames = json.loads(journal.read_text(encoding="utf-8"))["renames"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TiecheckError(f"{journal}: unreadable commit journal ({e}); inspect by hand") from e
    done = []
    for temp, final in renames:
        temp_file, final_file = folder / temp, folder / final
        if temp_file.exists():
            temp_file.replace(final_file)
            done.append(final)
    _fsync_dir(folder)
    journal.unlink()
    _fsync_dir(folder)
    return done


def commit(folder: Path, finals: list[Path]) -> None:
    """Rename each ``temp_path(final)`` onto ``final`` as one recoverable step."""
    # Paths relative to the folder, not bare names: an index may keep shards in a sub-folder.
    renames = [
        [temp_path(f).relative_to(folder).as_posix(), f.relative_to(folder).as_posix()]
        for f in finals
    ]
    journal_temp = temp_path(folder / JOURNAL)
    journal_temp.write_text(json.dumps({"renames": renames}), encoding="utf-8")
    with journal_temp.open("rb+") as f:
        os.fsync(f.fileno())
    journal_temp.replace(folder / JOURNAL)
    _fsync_dir(folder)
    for temp, final in renames:
        (folder / temp).replace(folder / final)
    _fsync_dir(folder)
    (folder / JOURNAL).unlink()
    _fsync_dir(folder)
