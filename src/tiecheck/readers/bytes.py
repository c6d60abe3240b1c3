"""Where tensor bytes come from: the ``ByteSource`` protocol and its implementations.

A ``Checkpoint`` is plain data (names, shapes, byte spans); the bytes behind it are read
through a ``ByteSource`` opened beside it, in a ``with`` block: ``LocalFiles`` for files on
disk (bounded descriptors, holes of sparse files, a map for strided views), the Hub's range
reader for remote repositories (``readers.hub``), and ``MemoryFiles`` for bytes already in
memory (tests, and callers that hold a checkpoint's files themselves). Analyses that compare
values take ``TensorData`` over any of them, so they are tested without files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tiecheck.model import Checkpoint

MAX_OPEN_FILES = 64
"""Descriptors ``LocalFiles`` keeps open at once (more only while pinned by ``opened``)."""


def short_read(file: str, start: int) -> OSError:
    return OSError(errno.EIO, f"{file}: short read at byte {start} (file changed or truncated?)")


class ByteSource(Protocol):
    """Byte ranges of a checkpoint's files, by the names ``Checkpoint.files`` uses.

    Every read returns exactly what was asked or raises ``OSError`` (a short read is an
    error: the file changed or lies about its size).
    """

    def read(self, file: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``file`` from ``start``."""
        ...

    def read_many(self, reads: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Several ``(file, start, length)`` ranges (remote sources ask for them at once)."""
        ...

    def readinto(self, file: str, start: int, buffer: memoryview) -> None:
        """Fill ``buffer`` with the bytes of ``file`` from ``start`` (no new allocation)."""
        ...

    def size(self, file: str) -> int:
        """The file's size now (a file truncated under a reader shows here)."""
        ...

    def holes(self, file: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Absolute ``[hole_start, hole_end)`` runs of ``[start, end)`` the file does not
        store (zeros), in order; nothing when the source cannot tell."""
        ...

    def mapped(self, file: str, start: int, length: int) -> Any:
        """Random access to ``length`` bytes from ``start``, as a buffer numpy can view
        (strided tensors gather their elements from it); ``OSError`` where there is none."""
        ...

    @property
    def bytes_transferred(self) -> int | None:
        """Bytes moved over a network for this source (None for local files)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> ByteSource: ...

    def __exit__(self, *_exc: object) -> None: ...


class LocalFiles:
    """Files on disk, read with ``pread``; at most ``max_open`` descriptors at once.

    A sharded checkpoint can have thousands of files, more than the process may open
    (``ulimit -n`` is often 256 or 1024), so the least recently used descriptor goes first;
    a caller that holds one across other reads pins it with ``opened``. Deliberately not
    ``mmap`` for reads: mapped pages count towards the resident set, so comparing two 4 GB
    tensors through a map would report gigabytes of RSS.
    """

    def __init__(self, paths: Mapping[str, Path], max_open: int = MAX_OPEN_FILES) -> None:
        self._paths = dict(paths)
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._pins: dict[str, int] = {}
        self._max_open = max(1, max_open)
        # A source dropped without ``close`` (an exception between creation and the caller's
        # ``finally``) still closes its descriptors when it is collected.
        weakref.finalize(self, _close_all, self._fds)

    @classmethod
    def of(cls, checkpoint: Checkpoint, max_open: int = MAX_OPEN_FILES) -> LocalFiles:
        """The files of a checkpoint read from disk."""
        return cls({name: f.path for name, f in checkpoint.files.items()}, max_open)

    def __enter__(self) -> LocalFiles:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every descriptor (a later read opens what it needs again)."""
        _close_all(self._fds)

    @property
    def bytes_transferred(self) -> int | None:
        return None

    @property
    def open_files(self) -> int:
        """Descriptors open right now (at most ``max_open`` unless pinned beyond it)."""
        return len(self._fds)

    def _fd(self, file: str) -> int:
        fd = self._fds.get(file)
        if fd is not None:
            self._fds.move_to_end(file)
            return fd
        while len(self._fds) >= self._max_open:
            victim = next((f for f in self._fds if not self._pins.get(f)), None)
            if victim is None:  # every open one is in use: exceed the cap, never close those
                break
            os.close(self._fds.pop(victim))
        fd = os.open(self._paths[file], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._fds[file] = fd
        return fd

    def fileno(self, file: str) -> int:
        """An open descriptor, valid until the next call that opens another file (which may
        close it) or ``close``: use it at once, or pin it with ``opened``."""
        return self._fd(file)

    @contextlib.contextmanager
    def opened(self, file: str) -> Iterator[int]:
        """A descriptor of ``file`` that stays open for the ``with`` block (pinned)."""
        fd = self._fd(file)
        self._pins[file] = self._pins.get(file, 0) + 1
        try:
            yield fd
        finally:
            left = self._pins[file] - 1
            if left:
                self._pins[file] = left
            else:
                del self._pins[file]

    def read(self, file: str, start: int, length: int) -> bytes:
        data = os.pread(self._fd(file), length, start)
        if len(data) != length:
            raise short_read(file, start)
        return data

    def read_many(self, reads: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return [self.read(*r) for r in reads]

    def readinto(self, file: str, start: int, buffer: memoryview) -> None:
        if os.preadv(self._fd(file), [buffer], start) != len(buffer):
            raise short_read(file, start)

    def size(self, file: str) -> int:
        return os.fstat(self._fd(file)).st_size

    def holes(self, file: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        """Holes found with ``SEEK_DATA``/``SEEK_HOLE``: two system calls per data extent.
        ENXIO means no data from there to the end of the file; EINVAL (a filesystem that
        cannot tell) or a nonsensical answer stops the search (all data from there on)."""
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        if seek_data is None or seek_hole is None:
            return
        with self.opened(file) as fd:
            pos = start
            while pos < end:
                try:
                    data = os.lseek(fd, pos, seek_data)
                except OSError as e:
                    if e.errno != errno.ENXIO:
                        return
                    data = end
                if data > pos:
                    yield pos, min(data, end)
                if data >= end:
                    return
                try:
                    hole = os.lseek(fd, data, seek_hole)
                except OSError:
                    return
                if data < pos or hole <= data:  # a filesystem answering nonsense
                    return
                pos = hole

    def mapped(self, file: str, start: int, length: int) -> Any:
        import numpy as np

        return np.memmap(self._paths[file], dtype=np.uint8, mode="r", offset=start, shape=(length,))


class MemoryFiles:
    """Files held in memory, by name: a ``ByteSource`` for tests and in-memory callers."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = dict(files)

    def __enter__(self) -> MemoryFiles:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    @property
    def bytes_transferred(self) -> int | None:
        return None

    def read(self, file: str, start: int, length: int) -> bytes:
        data = self._files[file][start : start + length]
        if len(data) != length:
            raise short_read(file, start)
        return data

    def read_many(self, reads: Sequence[tuple[str, int, int]]) -> list[bytes]:
        return [self.read(*r) for r in reads]

    def readinto(self, file: str, start: int, buffer: memoryview) -> None:
        buffer[:] = self.read(file, start, len(buffer))

    def size(self, file: str) -> int:
        return len(self._files[file])

    def holes(self, file: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        return iter(())

    def mapped(self, file: str, start: int, length: int) -> Any:
        import numpy as np

        return np.frombuffer(self._files[file], dtype=np.uint8, count=length, offset=start)


def _close_all(fds: OrderedDict[str, int]) -> None:
    while fds:
        _, fd = fds.popitem(last=False)
        with contextlib.suppress(OSError):  # close every one even if one fails
            os.close(fd)
