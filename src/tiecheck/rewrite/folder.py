"""The folder ``fix`` writes into, held open by descriptor so nothing in it can redirect a write.

An output folder may already hold files (``--overwrite``, an interrupted run, ``--in-place``), and
every one of them is hostile: a ``*.tiecheck-tmp`` that is a dangling symbolic link would make a
plain ``open()`` create a file wherever it points; a sub-folder that is a link would send shards
out of the folder. So the folder is opened once, every name inside it is resolved relative to
that descriptor component by component (``O_NOFOLLOW``, ``O_DIRECTORY``), files are created with
``O_EXCL | O_NOFOLLOW``, and renames use directory descriptors. The same descriptor carries an
exclusive ``flock``, so two ``fix`` runs never write into one folder at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from tiecheck.errors import TiecheckError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write every byte (``os.write`` may write fewer than asked)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        if offset is not None:
            offset += n


class FolderError(TiecheckError):
    """A name inside the output folder cannot be used safely (a link, a folder, a bad name)."""


class FolderBusy(TiecheckError):
    """Another ``tiecheck fix`` holds the folder's lock."""


def relative_parts(name: str) -> tuple[str, ...]:
    """The components of a relative POSIX name, refusing anything that could leave the folder
    or name it ambiguously (absolute names, ``..``, ``.``, empty components, NUL, backslash).

    Split by hand, not with ``PurePosixPath``: it silently drops ``.`` and empty components,
    so ``./`` would become no name at all."""
    if not name or "\0" in name or "\\" in name or name.startswith("/"):
        raise FolderError(f"{name!r} is not a plain relative file name")
    parts = tuple(name.split("/"))
    if any(p in ("..", ".", "") for p in parts):
        raise FolderError(f"{name!r} is not a plain relative file name")
    return parts


class Folder:
    """An open folder; names passed to its methods are relative POSIX paths inside it."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise FolderError(f"{path}: exists and is not a folder") from None
            except OSError as e:
                raise TiecheckError(f"cannot create {path}: {e.strerror or e}") from e
        try:
            # The folder itself is the user's choice (a link they made is theirs to follow);
            # only what is inside it is resolved without following links.
            self.fd = os.open(path, _DIR_FLAGS)
        except NotADirectoryError:
            raise FolderError(f"{path}: exists and is not a folder") from None
        except OSError as e:
            raise TiecheckError(f"cannot open {path}: {e.strerror or e}") from e
        self._dirs: dict[tuple[str, ...], int] = {(): self.fd}
        self._touched: set[tuple[str, ...]] = set()

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs.clear()

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def lock(self) -> None:
        """Take the folder's exclusive lock for the rest of this object's life.

        ``flock`` on the folder's own descriptor: no lock file is left behind, and the lock
        dies with the process (a killed run never leaves the folder locked)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(
                    f"{self.path}: another 'tiecheck fix' is writing into this folder; "
                    "wait for it to finish and run the command again"
                ) from None
            raise TiecheckError(f"cannot lock {self.path}: {e.strerror or e}") from e

    def _dir(self, parts: tuple[str, ...], *, create: bool) -> int:
        """Descriptor of the sub-folder ``parts``, each component opened without following
        links (a link or a file there is refused)."""
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        parent = self._dir(parts[:-1], create=create)
        name = parts[-1]
        if create:
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as e:
                raise TiecheckError(
                    f"cannot create {self.path / '/'.join(parts)}: {e.strerror or e}"
                ) from e
        try:
            fd = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FolderError(
                    f"{self.path / '/'.join(parts)} is a symbolic link or a file, not a folder; "
                    "tiecheck does not write through links"
                ) from None
            raise
        self._dirs[parts] = fd
        return fd

    def _split(self, name: str, *, create_parents: bool = False) -> tuple[int, str]:
        parts = relative_parts(name)
        parent = self._dir(parts[:-1], create=create_parents)
        self._touched.add(parts[:-1])
        return parent, parts[-1]

    def lstat(self, name: str) -> os.stat_result | None:
        """``lstat`` of a name inside the folder, None when absent (or its folder is)."""
        try:
            parent, base = self._split(name)
            return os.stat(base, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except FolderError:
            raise
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
                return None
            raise

    def create(self, name: str, mode: int = 0o644) -> int:
        """Create a new file for writing; fails if anything (a link included) has the name."""
        parent, base = self._split(name, create_parents=True)
        try:
            return os.open(
                base,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC,
                mode,
                dir_fd=parent,
            )
        except FileExistsError:
            raise FolderError(
                f"{self.path / name} already exists (left by another program?); not overwritten"
            ) from None

    def open_read(self, name: str) -> int:
        """Open an existing regular file for reading, never through a link."""
        parent, base = self._split(name)
        fd = os.open(base, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FolderError(f"{self.path / name} is not a regular file")
        return fd

    def replace(self, source: str, target: str) -> None:
        """Atomically rename ``source`` onto ``target`` (replacing a link, never its target)."""
        src_dir, src = self._split(source)
        dst_dir, dst = self._split(target)
        os.replace(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)

    def unlink(self, name: str) -> bool:
        """Remove a file or link (never a folder); False when it was not there."""
        try:
            parent, base = self._split(name)
            os.unlink(base, dir_fd=parent)
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            raise FolderError(f"{self.path / name} is a folder; not removed") from None
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.EPERM):
                raise FolderError(f"{self.path / name} is not a file; not removed") from None
            raise
        return True

    def names(self) -> list[str]:
        """Entries directly in the folder."""
        return os.listdir(self.fd)  # noqa: PTH208 - a descriptor, not a path

    def fsync(self) -> None:
        """Make every rename and creation in the folders touched so far durable."""
        for parts in sorted(self._touched | {()}, key=len, reverse=True):
            os.fsync(self._dir(parts, create=False))
