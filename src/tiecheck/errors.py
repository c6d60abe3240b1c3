"""Exceptions that cross module boundaries.

Per-file problems become findings (TC001/TC002) so one bad shard never hides the rest of a
report; only ``SourceError`` stops a whole run, and it maps to exit code 2.
"""

from __future__ import annotations


class TiecheckError(Exception):
    """Base class: anything tiecheck raises on purpose has a message fit for a user."""


class SourceError(TiecheckError):
    """The source cannot be opened at all (missing path, no weights in a folder, unknown type)."""


class FormatError(TiecheckError):
    """A file is not valid in its format; the message says why, in the file's own terms."""


class UnsafePickleError(FormatError):
    """A pickle asks for a callable outside the allow-list; it was not loaded."""

    def __init__(self, global_name: str) -> None:
        super().__init__(
            f"needs {global_name!r} to load, which could execute code; not loaded "
            "(only tensors and plain containers are allowed)"
        )
        self.global_name = global_name
