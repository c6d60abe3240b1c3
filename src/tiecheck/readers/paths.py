"""Where a file a model folder names really is, and whether tiecheck may read it.

A folder is hostile input like any file in it: a shard, a config or a README that is a symbolic
link elsewhere would let a repository make a CI job (or ``fix``, which copies files into its
output) read any file on the machine. The rule is the same for every reader: a file found in a
folder must resolve inside that folder. The one layout where links leave the folder by design
is the Hugging Face cache: ``snapshots/<revision>/...`` links into the same repository's
``blobs/``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def outside_folder(folder: Path, path: Path) -> Path | None:
    """Where ``path`` really is when that is outside ``folder`` (else None).

    ``os.path.realpath``, not ``Path.resolve``: a link loop (a hostile folder can hold one)
    makes ``resolve`` raise; here it stays a path inside the folder, which fails to open
    later as the unreadable file it is."""
    real_folder, target = Path(os.path.realpath(folder)), Path(os.path.realpath(path))
    if target.is_relative_to(real_folder):
        return None
    for ancestor in (real_folder, *real_folder.parents):
        if ancestor.parent.name == "snapshots":
            if target.parent == ancestor.parent.parent / "blobs":
                return None
            break
    return target


_NOT_THERE = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EACCES)


def lstat_or_none(path: Path) -> os.stat_result | None:
    """``lstat`` that answers None for every way a hostile name can fail to exist (too long,
    a loop, a component that is a file, a NUL byte), instead of raising where pathlib would."""
    try:
        return path.lstat()
    except ValueError:  # "embedded null byte": no file has such a name
        return None
    except OSError as e:
        if e.errno in _NOT_THERE:
            return None
        raise


def existing_path(source: str) -> Path | None:
    """The local path ``source`` names when anything (a file, folder or link) is there, else
    None. Raises ``SourceError`` for a name the file system cannot even look up (too long,
    ``~nosuchuser``)."""
    from tiecheck.errors import SourceError

    try:
        path = Path(source).expanduser()
        path.lstat()
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    except (OSError, RuntimeError) as e:
        raise SourceError(f"{source}: {getattr(e, 'strerror', None) or e}") from e
    return path
