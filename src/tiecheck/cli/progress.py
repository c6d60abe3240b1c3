"""A byte-progress bar on stderr, shown only to a person watching a terminal."""

from __future__ import annotations

import sys
from typing import ClassVar

MIN_BYTES_FOR_BAR = 64 << 20
"""Below this, reading takes well under a second; a flashing bar would only be noise."""


class BarProgress:
    """Implements ``tiecheck.api.Progress`` with rich (bytes, rate, ETA), transient on stderr."""

    _active: ClassVar[set[BarProgress]] = set()

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    @classmethod
    def stop_all(cls) -> None:
        """End every bar on screen (an interrupt: the message must not land on a bar)."""
        for bar in list(cls._active):
            bar.stop()

    @staticmethod
    def wanted(quiet: bool) -> bool:
        return not quiet and sys.stderr.isatty()

    def start(self, total_bytes: int, description: str) -> None:
        if total_bytes < MIN_BYTES_FOR_BAR:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        BarProgress._active.add(self)
        self._task = self._progress.add_task(description, total=total_bytes)

    def advance(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nbytes)

    def stop(self) -> None:
        BarProgress._active.discard(self)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
