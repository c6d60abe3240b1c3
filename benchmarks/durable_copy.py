"""The physical limit of a durable rewrite: copy every file in the kernel and make it durable.

``python benchmarks/durable_copy.py SRC_FOLDER OUT_FOLDER`` copies each file of ``SRC_FOLDER``
with ``os.copy_file_range`` (no byte passes through user space) in 64 MiB steps, starts each
step's writeback at once (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, so the disk writes while
the next step is copied: the fastest durable copy this machine does), ``fsync``s each copy and
then the folder, as ``tiecheck fix`` must before it renames anything. It neither reads anything
back nor renames, so it is a floor for ``fix`` (which also verifies every byte it wrote).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

STEP = 64 << 20
SYNC_FILE_RANGE_WRITE = 2

_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = _libc.sync_file_range
_sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


def copy(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, dst.open("xb") as fout:
        size = os.fstat(fin.fileno()).st_size
        done = 0
        while done < size:
            n = os.copy_file_range(fin.fileno(), fout.fileno(), min(size - done, STEP))
            if n == 0:
                raise OSError(f"{src}: copy_file_range returned 0 at {done} of {size} bytes")
            _sync_file_range(fout.fileno(), done, n, SYNC_FILE_RANGE_WRITE)
            done += n
        os.fsync(fout.fileno())


def main(src: Path, out: Path) -> None:
    out.mkdir()
    for path in sorted(src.iterdir()):
        if path.is_file():
            copy(path, out / path.name)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
