"""Bounded access to tensor bytes: memory, open descriptors and work, whatever a checkpoint claims.

Deliberately not ``mmap``: pages of a mapped file count towards the process's resident set, so
comparing two 4 GB tensors through a map would report gigabytes of RSS and can push a small CI
machine into reclaim. ``pread`` into short-lived buffers keeps memory at a few chunks whatever
the checkpoint size, and the page cache still makes repeated reads cheap.

Descriptors: a sharded checkpoint can have thousands of files, more than the process may open
(``ulimit -n`` is often 256 or 1024), so at most ``MAX_OPEN_FILES`` stay open, least recently
used first to go; a caller that holds a descriptor across other calls pins it with ``opened``.

Holes: a sparse file can claim gigabytes it does not store. ``regions`` asks the filesystem
where the data is (``SEEK_DATA``/``SEEK_HOLE``) and reports holes as zero runs without reading
them, so comparisons cost the bytes actually stored, not the bytes claimed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator

from tiecheck.model import DTYPE_BITS, ByteSpan, Checkpoint, TensorInfo, element_extent

CHUNK_BYTES = 8 << 20
SAMPLE_BYTES = 4096
MAX_OPEN_FILES = 64
"""Descriptors a ``TensorData`` keeps open at once (more only while pinned by ``opened``)."""
BUDGET_SLACK = 1 << 30
"""Bytes a comparison may stream beyond ``BUDGET_FILES`` times the files' size (``claim``)."""
BUDGET_FILES = 4
ALIGN = 4096
"""Grid, relative to a tensor's first byte, on which ``regions`` places every boundary: a
multiple of every element size, so pieces cut on it hold whole elements, and small enough that
rounding a hole inward to it costs at most two such blocks of reading per hole."""

Block = bytes | bytearray
Region = tuple[int, Block | None]
"""``(length, block)``: ``block`` holds the ``length`` bytes, or is None for ``length`` zero
bytes the file does not store (a hole), which were not read."""


def _close_all(fds: OrderedDict[str, int]) -> None:
    while fds:
        _, fd = fds.popitem(last=False)
        with contextlib.suppress(OSError):  # close every one even if one fails
            os.close(fd)


def _short(file: str, start: int) -> OSError:
    return OSError(errno.EIO, f"{file}: short read at byte {start} (file changed or truncated?)")


class TensorData:
    """Reads tensor bytes from a checkpoint's files (local, or remote through its ``fetch``),
    counting what it reads."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        on_read: Callable[[int], None] | None = None,
        max_open: int = MAX_OPEN_FILES,
    ):
        self._files = checkpoint.files
        self._fetch = checkpoint.fetch
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._pins: dict[str, int] = {}
        self._max_open = max(1, max_open)
        # A reader dropped without ``close`` (an exception between creation and the caller's
        # ``finally``) still closes its descriptors when it is collected.
        weakref.finalize(self, _close_all, self._fds)
        self.bytes_read = 0
        self._on_read = on_read
        self._budget = BUDGET_FILES * sum(f.size for f in self._files.values()) + BUDGET_SLACK

    def __enter__(self) -> TensorData:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every descriptor (a later read opens what it needs again)."""
        _close_all(self._fds)

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
        fd = os.open(self._files[file].path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._fds[file] = fd
        return fd

    def fileno(self, file: str) -> int:
        """An open descriptor of a checkpoint file, valid until the next call on this reader
        that opens another file (which may close it to stay under ``max_open``) or ``close``.

        Use it at once (``os.fstat``); to keep it across other calls, use ``opened``.
        """
        return self._fd(file)

    @contextlib.contextmanager
    def opened(self, file: str) -> Iterator[int]:
        """A descriptor of ``file`` that stays open for the ``with`` block: pinned, so no
        eviction closes it while it is in use, however many other files are read meanwhile."""
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

    def claim(self, *tensors: TensorInfo) -> bool:
        """Reserve the sizes of tensors about to be read in full for a comparison; False, and
        nothing reserved, when that would pass the budget of this checkpoint.

        Comparisons read each separately stored tensor a bounded number of times (once to
        find identical sets, once per tie group it is diverged in), and tensors that do not
        overlap sum to at most the files' size, so an honest checkpoint stays well within
        ``BUDGET_FILES`` times its size. Only views that overlap one storage pass it: a
        pickle can hold 20,000 views of one 4 MB storage, each claiming 4 MB, and reading
        them all would take terabytes from a file of megabytes.
        """
        nbytes = sum(t.nbytes for t in tensors)
        if nbytes > self._budget:
            return False
        self._budget -= nbytes
        return True

    def count(self, nbytes: int) -> None:
        """Account for bytes moved on this reader's behalf (a kernel-side copy)."""
        self.bytes_read += nbytes
        if self._on_read is not None:
            self._on_read(nbytes)

    def _pread(self, file: str, start: int, length: int) -> bytes:
        if self._fetch is not None:
            data = self._fetch(file, start, length)
        else:
            data = os.pread(self._fd(file), length, start)
        return self._counted(file, start, length, data)

    def _counted(self, file: str, start: int, length: int, data: bytes) -> bytes:
        if len(data) != length:
            raise _short(file, start)
        self.count(length)
        return data

    def _read_into(self, file: str, start: int, buffer: bytearray, n: int) -> Block:
        """``n`` bytes at ``start`` into ``buffer``: the buffer itself when it is filled, else
        a copy of its first ``n`` bytes (so every block compares with ``==`` by memcmp)."""
        if os.preadv(self._fd(file), [memoryview(buffer)[:n]], start) != n:
            raise _short(file, start)
        self.count(n)
        return buffer if n == len(buffer) else buffer[:n]

    def chunks(self, tensor: TensorInfo, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The tensor's bytes in C order, at most ``chunk`` bytes at a time."""
        itemsize = max(1, DTYPE_BITS[tensor.dtype] // 8)
        chunk -= chunk % itemsize  # keep elements whole so numeric decoding can work per chunk
        if tensor.span is not None:
            for start in range(tensor.span.start, tensor.span.end, chunk):
                yield self._pread(tensor.file, start, min(chunk, tensor.span.end - start))
            return
        yield from self._strided_chunks(tensor, chunk)

    def blocks(self, tensor: TensorInfo, buffer: bytearray) -> Iterator[Block]:
        """Like ``chunks``, but local contiguous bytes are read into ``buffer``, reused.

        Allocating a fresh multi-MiB ``bytes`` per read costs page faults and zeroing that
        dominate a comparison (measured: 5x slower than reusing two 1 MiB buffers). Each
        yielded block is only valid until the next one.
        """
        if self._fetch is not None:
            # Remote: each read is an HTTP range request (two, with the Hub's redirect), so
            # fewer, larger ones; two tensors compared both come this way, blocks still align.
            yield from self.chunks(tensor, max(len(buffer), CHUNK_BYTES))
            return
        if tensor.span is None:
            yield from self.chunks(tensor, len(buffer))
            return
        size = len(buffer)
        for start in range(tensor.span.start, tensor.span.end, size):
            yield self._read_into(tensor.file, start, buffer, min(size, tensor.span.end - start))

    def regions(self, tensor: TensorInfo, buffer: bytearray) -> Iterator[Region]:
        """The tensor's bytes in C order as ``(length, block)`` regions, holes not read.

        A region's ``block`` is None for a run of zeros the file does not store (a hole of a
        sparse file, found with ``SEEK_DATA``/``SEEK_HOLE``); otherwise it holds the bytes,
        read into ``buffer`` as in ``blocks`` (valid until the next region). Every boundary
        falls on a multiple of ``ALIGN`` from the tensor's start (or at its end), and data is
        cut on multiples of the buffer's size, so two dense tensors give aligned blocks.

        Work is bounded by what the file stores, not what it claims: two system calls per
        data extent, at most two ``ALIGN`` blocks of hole read per extent (rounding inward),
        and nothing for the holes themselves. A strided view that reaches only a hole is one
        zero run; other strided views, remote files and filesystems without ``SEEK_DATA`` are
        all data, as in ``blocks``.
        """
        size = len(buffer) - len(buffer) % ALIGN
        span = tensor.span
        if span is None and self._unstored_view(tensor):
            yield tensor.nbytes, None  # every element it can reach is in a hole: zeros
            return
        if self._fetch is not None or span is None or span.length < ALIGN or size <= 0:
            # no hole to find (remote, strided) or none worth the system calls (small)
            for block in self.blocks(tensor, buffer):
                yield len(block), block
            return
        with self.opened(tensor.file) as fd:
            if os.fstat(fd).st_size < span.end:
                raise _short(tensor.file, span.start)
            pos = 0
            for hole_start, hole_end in self._holes(fd, span):
                while pos < hole_start:  # the data before this hole, on the buffer's grid
                    n = min(hole_start, (pos // size + 1) * size) - pos
                    yield n, self._read_into(tensor.file, span.start + pos, buffer, n)
                    pos += n
                if hole_end > pos:
                    yield hole_end - pos, None
                    pos = hole_end
            # A file truncated while its holes were looked up reads as one long hole: check.
            if os.fstat(fd).st_size < span.end:
                raise _short(tensor.file, span.start + pos)

    def _unstored_view(self, tensor: TensorInfo) -> bool:
        """Whether a strided view (a pickle's) reaches only zeros its file does not store.

        Its elements are gathered through a map of the storage, which pages in every byte
        they cover, holes too; a view over a storage that claims gigabytes and stores none
        is recognised here with one ``SEEK_DATA`` and two reads of less than ``ALIGN`` (the
        ends of the range share a block with stored bytes). A storage stored in part is
        gathered in full: which elements fall in holes is not worked out.
        """
        storage, seek_data = tensor.storage, getattr(os, "SEEK_DATA", None)
        itemsize = DTYPE_BITS[tensor.dtype] // 8
        if self._fetch is not None or storage is None or storage.span is None or not itemsize:
            return False
        start = storage.span.start + storage.offset * itemsize
        end = start + element_extent(tensor.shape, storage.stride) * itemsize
        inner_start, inner_end = -(-start // ALIGN) * ALIGN, end // ALIGN * ALIGN
        if seek_data is None or inner_end <= inner_start or end > storage.span.end:
            return False
        with self.opened(tensor.file) as fd:
            if os.fstat(fd).st_size < end:
                return False  # let the read report it
            try:
                if os.lseek(fd, inner_start, seek_data) < inner_end:
                    return False
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: no data from there to the end of the file
                    return False
        edges = self._pread(tensor.file, start, inner_start - start)
        edges += self._pread(tensor.file, inner_end, end - inner_end)
        return edges.count(0) == len(edges)

    @staticmethod
    def _holes(fd: int, span: ByteSpan) -> Iterator[tuple[int, int]]:
        """The holes of ``span``, relative to its start and rounded inward to ``ALIGN``,
        followed by an empty one at its end (so the data after the last hole is seen)."""
        length = span.length
        seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
        pos = span.start
        while seek_data is not None and seek_hole is not None and pos < span.end:
            try:
                data = os.lseek(fd, pos, seek_data)
            except OSError as e:
                if e.errno != errno.ENXIO:  # EINVAL, ENOTSUP...: cannot tell, all data
                    break
                data = span.end  # no data at or after pos: a hole to the end of the file
            if data > pos:
                start, end = pos - span.start, min(data, span.end) - span.start
                start = -(-start // ALIGN) * ALIGN
                end = end if end == length else end // ALIGN * ALIGN
                if end > start:
                    yield start, end
            if data >= span.end:
                break
            try:
                hole = os.lseek(fd, data, seek_hole)
            except OSError:
                break
            if data < pos or hole <= data:  # a filesystem answering nonsense: stop asking
                break
            pos = hole
        yield length, length

    def _strided_view(self, tensor: TensorInfo):  # type: ignore[no-untyped-def]
        """A numpy view of a non-contiguous pickled tensor over a read-only map of its storage."""
        import numpy as np

        storage = tensor.storage
        if storage is None or storage.span is None:
            raise OSError(f"{tensor.name}: bytes are not addressable (compressed record?)")
        itemsize = DTYPE_BITS[tensor.dtype] // 8
        fd_path = self._files[tensor.file].path
        whole = np.memmap(
            fd_path,
            dtype=np.uint8,
            mode="r",
            offset=storage.span.start,
            shape=(storage.span.length,),
        )
        flat = whole.view(f"V{itemsize}") if itemsize > 1 else whole
        view = np.lib.stride_tricks.as_strided(
            flat[storage.offset :],
            shape=tensor.shape,
            strides=tuple(s * itemsize for s in storage.stride),
        )
        return view, itemsize

    @staticmethod
    def _pieces(view, max_elements: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        """``view`` in C order as contiguous pieces of at most ``max_elements`` elements.

        Whole leading-axis slices where they fit, else one level down: a single row of a
        strided view can be gigabytes (a transposed (2, 2**30) tensor), and gathering it at
        once would allocate what the header claims.
        """
        import numpy as np

        if view.size <= max_elements:
            yield np.ascontiguousarray(view).tobytes()
            return
        if view.ndim == 1:
            for i in range(0, view.shape[0], max_elements):
                yield np.ascontiguousarray(view[i : i + max_elements]).tobytes()
            return
        inner = view[0].size
        if inner <= max_elements:
            per = max_elements // inner
            for i in range(0, view.shape[0], per):
                yield np.ascontiguousarray(view[i : i + per]).tobytes()
            return
        for i in range(view.shape[0]):
            yield from TensorData._pieces(view[i], max_elements)

    def _strided_chunks(self, tensor: TensorInfo, chunk: int) -> Iterator[bytes]:
        """Non-contiguous pickled views (a transposed head): gather pieces through numpy."""
        view, itemsize = self._strided_view(tensor)
        if view.ndim == 0:
            view = view.reshape(1)
        # Re-cut the pieces into blocks of exactly ``chunk`` bytes, as the contiguous path
        # yields: comparisons zip two tensors' chunks and need the boundaries to line up.
        pending = bytearray()
        for piece in self._pieces(view, max(1, chunk // max(1, itemsize))):
            pending += piece
            while len(pending) >= chunk:
                data = bytes(pending[:chunk])
                del pending[:chunk]
                self.count(len(data))
                yield data
        if pending:
            self.count(len(pending))
            yield bytes(pending)

    def _strided_bytes(self, tensor: TensorInfo, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of a non-contiguous tensor in C order, gathering
        only the elements they cover."""
        import numpy as np

        view, itemsize = self._strided_view(tensor)
        first, last = start // itemsize, -(-(start + length) // itemsize)
        index = np.unravel_index(np.arange(first, last), tensor.shape)
        data = np.ascontiguousarray(view[index]).tobytes()
        data = data[start - first * itemsize :][:length]
        self.count(len(data))
        return data

    def sample(self, tensor: TensorInfo) -> bytes:
        """A cheap fingerprint: the first, middle and last few KiB of the tensor's C-order
        bytes, the same whether it is stored contiguously or as a strided view."""
        size = tensor.nbytes
        if size <= 3 * SAMPLE_BYTES:
            return b"".join(self.chunks(tensor))
        starts = (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES)
        if tensor.span is None:
            return b"".join(self._strided_bytes(tensor, s, SAMPLE_BYTES) for s in starts)
        fetch_many = getattr(self._fetch, "fetch_many", None)
        if fetch_many is not None:  # remote: the three range requests at once, not in turn
            reads = [(tensor.file, tensor.span.start + s, SAMPLE_BYTES) for s in starts]
            return b"".join(
                self._counted(*read, data) for read, data in zip(reads, fetch_many(reads))
            )
        return b"".join(
            self._pread(tensor.file, tensor.span.start + s, SAMPLE_BYTES) for s in starts
        )
