"""Prove a written file is what the plan says before it may take a final name.

Two independent checks: safetensors' own loader must open it (its validation, not ours), and
every tensor's bytes are streamed back and compared with the source's, so a bug in the writer,
a bad disk or a source that changed mid-run cannot produce a silently wrong checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiecheck.errors import TiecheckError
from tiecheck.readers.jsonfile import read_json_file
from tiecheck.readers.safetensors_format import check_with_library, read_header
from tiecheck.readers.tensor_data import TensorData
from tiecheck.rewrite.plan import OutFile

BLOCK_BYTES = 1 << 20


class VerificationError(TiecheckError):
    """A written file does not match its plan or its source; it was not committed."""


def _same(block: bytes | bytearray, written: memoryview) -> bool:
    """``block == written`` with memcmp: a bytearray compares with any buffer that way, but
    ``bytes`` (strided or remote blocks) only with ``bytes``; a memoryview on the left would
    compare item by item, ~80x slower."""
    if isinstance(block, bytearray):
        return block == written
    return block == written.tobytes()


def verify_weights(path: Path, out: OutFile, data: TensorData) -> None:
    try:
        check_with_library(path)
        header = read_header(path)
    except TiecheckError as e:
        raise VerificationError(f"{out.name}: written file is invalid: {e}") from e
    planned = {t.name: t.source for t in out.tensors}
    written = {e.name: e for e in header.entries}
    if set(planned) != set(written):
        raise VerificationError(f"{out.name}: written tensors differ from the plan")
    if out.whole_copy_of is None and header.metadata != out.metadata:
        raise VerificationError(f"{out.name}: written metadata differs from the plan")
    # Two buffers reused for every block: a fresh multi-MiB ``bytes`` per read costs page
    # faults and zeroing that dominated verification (see TensorData.blocks).
    source_buffer = bytearray(BLOCK_BYTES)
    written_view = memoryview(bytearray(BLOCK_BYTES))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        for name, source in planned.items():
            entry = written[name]
            if (entry.dtype, entry.shape) != (source.dtype, source.shape):
                raise VerificationError(f"{out.name}: {name} has the wrong dtype or shape")
            offset = entry.span.start
            for block in data.blocks(source, source_buffer):
                n = len(block)
                if n > len(written_view):  # remote sources come in larger blocks
                    written_view = memoryview(bytearray(n))
                got = os.preadv(fd, [written_view[:n]], offset)
                if got != n or not _same(block, written_view[:n]):
                    raise VerificationError(
                        f"{out.name}: bytes of {name} differ from the source at offset "
                        f"{offset - entry.span.start} (did the source change during fix?)"
                    )
                offset += n
                data.count(n)
    finally:
        os.close(fd)


def verify_json(path: Path, expected: object, name: str) -> None:
    try:
        value, _ = read_json_file(path)
    except TiecheckError as e:
        raise VerificationError(f"{name}: written file is invalid: {e}") from e
    if value != expected:
        raise VerificationError(f"{name}: written content differs from the plan")
