"""Open what the user named: a local path, or a Hugging Face Hub repository.

One entry point for every reader: ``open_source`` returns the checkpoint (plain data) and the
``ByteSource`` its tensors' bytes are read from, which the caller closes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tiecheck.errors import SourceError
from tiecheck.model import Checkpoint
from tiecheck.readers.bytes import ByteSource, LocalFiles
from tiecheck.readers.discover import plan_source
from tiecheck.readers.load import load
from tiecheck.readers.paths import existing_path


def open_source(
    source: str,
    *,
    base: Path | None = None,
    revision: str | None = None,
    token: str | None = None,
    download: bool = False,
    timeout: float | None = None,
    offline: bool = False,
) -> tuple[Checkpoint, ByteSource]:
    """Local paths win over repo ids of the same spelling; anything else that reads as a Hub
    repo is read through huggingface_hub. Raises ``SourceError`` when there is nothing to
    open."""
    if existing_path(source) is None:
        from tiecheck.readers.hub import load_hub, parse_hub_source

        ref = parse_hub_source(source)
        if ref is not None:
            if revision and ref.revision and revision != ref.revision:
                raise SourceError(
                    f"{source}: revision given twice ({ref.revision!r}, {revision!r})"
                )
            ref = replace(ref, revision=ref.revision or revision)
            return load_hub(
                ref, token=token, download=download, base=base, timeout=timeout, offline=offline
            )
    checkpoint = load(plan_source(source), base=base)
    return checkpoint, LocalFiles.of(checkpoint)
