"""Write safetensors files by moving bytes from the source files, never holding a tensor.

Hand-written on purpose: safetensors' own writers take tensors (or, in 0.8, raw pointers into
memory), so they need the data mapped or loaded, and a mapped checkpoint counts towards RSS.
Here the header is built from the plan and tensor bytes move file-to-file in the kernel with
``os.copy_file_range`` (which can reflink on btrfs/XFS); only non-contiguous pickled views pass
through user space, in bounded chunks.

The copy goes in steps of ``COPY_STEP``, and on Linux each step's writeback to disk is started
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, asynchronous) as soon as it is copied: the device
writes step N while step N+1 is copied, so the ``fsync`` that must precede the commit finds
little left to do (measured: 2.2 GB copied + fsync'd in 0.65 s instead of 1.05 s).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import sys
from collections.abc import Callable

from tiecheck.model import TensorInfo
from tiecheck.readers.bytes import LocalFiles
from tiecheck.readers.tensor_data import CHUNK_BYTES, TensorData
from tiecheck.rewrite.folder import write_all
from tiecheck.rewrite.plan import OutFile

COPY_STEP = 64 << 20
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}
_SYNC_FILE_RANGE_WRITE = 2


def _writeback_starter() -> Callable[[int, int, int], object] | None:
    """``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)`` from libc, or None.

    Only a hint (the fsync after the copy is what makes the file durable), so any failure to
    find it, and any error it returns (ESPIPE, EINVAL on some filesystems), is ignored.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        start = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, ImportError):
        return None
    start.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    start.restype = ctypes.c_int
    return lambda fd, offset, nbytes: start(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


_WRITEBACK = _writeback_starter()


def header_bytes(out: OutFile) -> bytes:
    """The 8-byte length and JSON header, padded with spaces to a multiple of 8 like writers do."""
    header: dict[str, object] = {"__metadata__": out.metadata} if out.metadata else {}
    offset = 0
    for t in out.tensors:
        nbytes = t.source.nbytes
        header[t.name] = {
            "dtype": t.source.dtype,
            "shape": list(t.source.shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def copy_range(
    src: int,
    dst: int,
    src_off: int,
    dst_off: int,
    length: int,
    on_copied: Callable[[int], object] | None = None,
) -> None:
    """Copy ``length`` bytes between descriptors in the kernel where it can (falling back to
    reads and writes), starting the output's writeback as each step lands."""
    kernel = hasattr(os, "copy_file_range")
    start_writeback = _WRITEBACK
    while length > 0:
        step = min(length, COPY_STEP)
        n = 0
        if kernel:
            try:
                n = os.copy_file_range(src, dst, step, src_off, dst_off)
            except OSError as e:
                if e.errno not in _NO_KERNEL_COPY:
                    raise
                kernel = False
        if not kernel:
            chunk = os.pread(src, min(step, CHUNK_BYTES), src_off)
            n = os.pwrite(dst, chunk, dst_off) if chunk else 0
        if n == 0:
            raise OSError(errno.EIO, "source ended early (file changed or truncated?)")
        if start_writeback is not None:
            start_writeback(dst, dst_off, n)
        if on_copied is not None:
            on_copied(n)
        src_off, dst_off, length = src_off + n, dst_off + n, length - n


class Copier:
    """Copies tensors' bytes from a checkpoint's files into an output descriptor."""

    def __init__(self, files: LocalFiles, data: TensorData) -> None:
        self.files = files
        self.data = data
        """counts what is copied (progress, ``bytes_read``) and reads strided views."""

    def tensor(self, t: TensorInfo, dst: int, dst_off: int) -> None:
        if t.span is not None:
            with self.files.opened(t.file) as src:
                copy_range(src, dst, t.span.start, dst_off, t.span.length, self.data.count)
            return
        for chunk in self.data.chunks(t):
            write_all(dst, chunk, dst_off)
            dst_off += len(chunk)

    def whole_file(self, file: str, dst: int) -> None:
        with self.files.opened(file) as src:
            copy_range(src, dst, 0, 0, os.fstat(src).st_size, self.data.count)


def write_file(fd: int, out: OutFile, copier: Copier) -> int:
    """Write ``out`` into the new, empty file open as ``fd`` and fsync it; returns its size."""
    if out.whole_copy_of is not None:
        size = copier.files.size(out.whole_copy_of)
        _reserve(fd, size)
        copier.whole_file(out.whole_copy_of, fd)
    else:
        header = header_bytes(out)
        size = len(header) + out.nbytes
        _reserve(fd, size)
        write_all(fd, header, 0)
        offset = len(header)
        for t in out.tensors:
            copier.tensor(t.source, fd, offset)
            offset += t.source.nbytes
    os.fsync(fd)
    return size


def copy_file(src: int, dst: int) -> int:
    """Copy a whole regular file between descriptors and fsync the copy; returns its size."""
    size = os.fstat(src).st_size
    _reserve(dst, size)
    copy_range(src, dst, 0, 0, size)
    os.fsync(dst)
    return size


def _reserve(fd: int, size: int) -> None:
    """Claim the space up front, so a full disk fails here and not half-way through."""
    if size and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
