"""Tensors' bytes, read through a ``ByteSource`` with memory and work bounded, whatever a
checkpoint claims.

Bytes are read into short-lived (or reused) buffers, so memory stays at a few chunks whatever
the checkpoint size. Holes: a sparse file can claim gigabytes it does not store; ``regions``
asks the source where the data is and reports holes as zero runs without reading them, so
comparisons cost the bytes actually stored, not the bytes claimed. Budget: a pickle's views
that overlap one storage can claim terabytes from megabytes; ``claim`` holds comparisons to a
multiple of the files' size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from tiecheck.model import DTYPE_BITS, ByteSpan, Checkpoint, TensorInfo, element_extent
from tiecheck.readers.bytes import MAX_OPEN_FILES, ByteSource, LocalFiles, short_read

CHUNK_BYTES = 8 << 20
SAMPLE_BYTES = 4096
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


class TensorData:
    """Reads tensors' bytes from a ``ByteSource``, counting what it reads and holding every
    comparison to a budget of the checkpoint's size."""

    def __init__(
        self,
        source: ByteSource,
        *,
        files_size: int = 0,
        on_read: Callable[[int], None] | None = None,
    ):
        self.source = source
        self.bytes_read = 0
        self._on_read = on_read
        self._budget = BUDGET_FILES * files_size + BUDGET_SLACK

    @classmethod
    def of(
        cls,
        checkpoint: Checkpoint,
        source: ByteSource,
        on_read: Callable[[int], None] | None = None,
    ) -> TensorData:
        """A reader of ``checkpoint``'s tensors, budgeted by its files' size."""
        files_size = sum(f.size for f in checkpoint.files.values())
        return cls(source, files_size=files_size, on_read=on_read)

    @classmethod
    @contextlib.contextmanager
    def reading(
        cls, checkpoint: Checkpoint, max_open: int = MAX_OPEN_FILES
    ) -> Iterator[TensorData]:
        """A reader of a local checkpoint's files, closed with the ``with`` block."""
        with LocalFiles.of(checkpoint, max_open) as files:
            yield cls.of(checkpoint, files)

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
        data = self.source.read(file, start, length)
        self.count(length)
        return data

    def _read_into(self, file: str, start: int, buffer: bytearray, n: int) -> Block:
        """``n`` bytes at ``start`` into ``buffer``: the buffer itself when it is filled, else
        a copy of its first ``n`` bytes (so every block compares with ``==`` by memcmp)."""
        self.source.readinto(file, start, memoryview(buffer)[:n])
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
        """Like ``chunks``, but contiguous bytes are read into ``buffer``, reused.

        Allocating a fresh multi-MiB ``bytes`` per read costs page faults and zeroing that
        dominate a comparison (measured: 5x slower than reusing two 1 MiB buffers). Each
        yielded block is only valid until the next one. A source that prefers larger reads
        (a remote one: each read is a range request) gets its preferred size instead.
        """
        preferred = getattr(self.source, "preferred_read", 0)
        if preferred > len(buffer):
            yield from self.chunks(tensor, preferred)
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
        sparse file, which the source reports); otherwise it holds the bytes, read into
        ``buffer`` as in ``blocks`` (valid until the next region). Every boundary falls on a
        multiple of ``ALIGN`` from the tensor's start (or at its end), and data is cut on
        multiples of the buffer's size, so two dense tensors give aligned blocks.

        Work is bounded by what the file stores, not what it claims: two system calls per
        data extent, at most two ``ALIGN`` blocks of hole read per extent (rounding inward),
        and nothing for the holes themselves. A strided view that reaches only a hole is one
        zero run; other strided views, and sources that cannot tell holes, are all data.
        """
        size = len(buffer) - len(buffer) % ALIGN
        span = tensor.span
        if span is None and self._unstored_view(tensor):
            yield tensor.nbytes, None  # every element it can reach is in a hole: zeros
            return
        preferred = getattr(self.source, "preferred_read", 0)
        if span is None or span.length < ALIGN or size <= 0 or preferred > len(buffer):
            # no hole to find (strided, remote) or none worth the system calls (small)
            for block in self.blocks(tensor, buffer):
                yield len(block), block
            return
        if self.source.size(tensor.file) < span.end:
            raise short_read(tensor.file, span.start)
        pos = 0
        for hole_start, hole_end in self._holes(tensor.file, span):
            while pos < hole_start:  # the data before this hole, on the buffer's grid
                n = min(hole_start, (pos // size + 1) * size) - pos
                yield n, self._read_into(tensor.file, span.start + pos, buffer, n)
                pos += n
            if hole_end > pos:
                yield hole_end - pos, None
                pos = hole_end
        # A file truncated while its holes were looked up reads as one long hole: check.
        if self.source.size(tensor.file) < span.end:
            raise short_read(tensor.file, span.start + pos)

    def _unstored_view(self, tensor: TensorInfo) -> bool:
        """Whether a strided view (a pickle's) reaches only zeros its file does not store.

        Its elements are gathered through a map of the storage, which pages in every byte
        they cover, holes too; a view over a storage that claims gigabytes and stores none
        is recognised here with one look for data and two reads of less than ``ALIGN`` (the
        ends of the range share a block with stored bytes). A storage stored in part is
        gathered in full: which elements fall in holes is not worked out.
        """
        storage = tensor.storage
        itemsize = DTYPE_BITS[tensor.dtype] // 8
        if storage is None or storage.span is None or not itemsize:
            return False
        start = storage.span.start + storage.offset * itemsize
        end = start + element_extent(tensor.shape, storage.stride) * itemsize
        inner_start, inner_end = -(-start // ALIGN) * ALIGN, end // ALIGN * ALIGN
        if inner_end <= inner_start or end > storage.span.end:
            return False
        if self.source.size(tensor.file) < end:
            return False  # let the read report it
        first = next(self.source.holes(tensor.file, inner_start, inner_end), None)
        if first != (inner_start, inner_end):
            return False
        edges = self._pread(tensor.file, start, inner_start - start)
        edges += self._pread(tensor.file, inner_end, end - inner_end)
        return edges.count(0) == len(edges)

    def _holes(self, file: str, span: ByteSpan) -> Iterator[tuple[int, int]]:
        """The holes of ``span``, relative to its start and rounded inward to ``ALIGN``,
        followed by an empty one at its end (so the data after the last hole is seen)."""
        length = span.length
        for hole_start, hole_end in self.source.holes(file, span.start, span.end):
            start, end = hole_start - span.start, hole_end - span.start
            start = -(-start // ALIGN) * ALIGN
            end = end if end == length else end // ALIGN * ALIGN
            if end > start:
                yield start, end
        yield length, length

    def _strided_view(self, tensor: TensorInfo):  # type: ignore[no-untyped-def]
        """A numpy view of a non-contiguous pickled tensor over a map of its storage.

        The view is checked against the storage's span before numpy strides over it: a view
        past its storage would read (and fault) outside the map. Readers already refuse such
        views (``pickle_format.check_view``); this guards every other producer of records.
        """
        import numpy as np

        storage = tensor.storage
        if storage is None or storage.span is None:
            raise OSError(f"{tensor.name}: bytes are not addressable (compressed record?)")
        itemsize = DTYPE_BITS[tensor.dtype] // 8
        extent = storage.offset + element_extent(tensor.shape, storage.stride)
        if not itemsize or extent * itemsize > storage.span.length:
            raise OSError(f"{tensor.name}: view reaches past its storage; not read")
        whole = self.source.mapped(tensor.file, storage.span.start, storage.span.length)
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
        # at once: a remote source asks for the three ranges concurrently, not in turn
        reads = [(tensor.file, tensor.span.start + s, SAMPLE_BYTES) for s in starts]
        data = self.source.read_many(reads)
        self.count(SAMPLE_BYTES * len(reads))
        return b"".join(data)
