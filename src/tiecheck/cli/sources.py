"""What ``tiecheck inspect`` is asked to look at: arguments, ``--from-file`` lists and globs.

Kept apart from the typer layer so it can be tested without a command line. Errors are
``SourceListError`` (exit code 2), each naming the list file or pattern at fault.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterable
from pathlib import Path

from tiecheck.errors import TiecheckError

GLOB_CHARS = frozenset("*?[")


class SourceListError(TiecheckError):
    """A list file cannot be read, or a glob matches nothing."""


def read_source_list(name: str) -> list[str]:
    """Sources from a list file (``-`` for standard input): one path or repo id a line; blank
    lines and lines starting with ``#`` are skipped."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise SourceListError(f"--from-file {name}: cannot read the list: {reason}") from e
    sources = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            sources.append(line)
    return sources


def expand_globs(patterns: Iterable[str]) -> list[str]:
    """Expand glob patterns (``**`` crosses folders) that do not name an existing path; keep
    everything else as written (paths, repo ids). Duplicates are dropped, order kept."""
    out: list[str] = []
    for pattern in patterns:
        if GLOB_CHARS & set(pattern) and not Path(pattern).exists():
            # glob.glob, not Path.glob: patterns may be absolute or start with '..'
            matches = sorted(glob.glob(pattern, recursive=True))  # noqa: PTH207
            if not matches:
                raise SourceListError(f"{pattern}: no file or folder matches this pattern")
            out += matches
        else:
            out.append(pattern)
    return _unique(out)


def collect_sources(
    sources: Iterable[str], from_file: str | None, *, group_shards: bool = False
) -> list[str]:
    """What a run inspects: the arguments, then the ``--from-file`` list, globs expanded,
    duplicates dropped, and with ``group_shards`` files folded into their model folders."""
    wanted = list(sources)
    if from_file is not None:
        wanted += read_source_list(from_file)
    targets = expand_globs(wanted)
    return group_by_checkpoint(targets) if group_shards else targets


def _unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for item in items:
        key = str(Path(item)) if item else item
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _files_read(folder: Path) -> set[Path] | None:
    """The files a loader reads for a model folder (weights, index and shards, config,
    adapter config), or None when the folder is not a checkpoint."""
    from tiecheck.readers.discover import plan_folder
    from tiecheck.readers.index_format import read_index

    try:
        plan = plan_folder(folder, str(folder))
    except TiecheckError:
        return None
    except OSError:
        return None
    files = {*plan.weights}
    for extra in (plan.index, plan.config, plan.adapter_config):
        if extra is not None:
            files.add(extra)
    if plan.index is not None:
        try:
            index, _ = read_index(plan.index)
        except (TiecheckError, OSError):
            pass
        else:
            files |= {folder / shard for shard in set(index.weight_map.values())}
    return {Path(f).absolute() for f in files}


def group_by_checkpoint(sources: Iterable[str]) -> list[str]:
    """Replace files that belong to a model folder by that folder, once.

    What a pre-commit hook passes is changed *files*; what a loader reads is a *checkpoint*. A
    shard on its own looks like a model without its head, so a shard, an index, a config.json
    or the weights file a folder's loader would read stands for its folder. Files the folder's
    loader would not read (a stale ``pytorch_model.bin`` beside ``model.safetensors``) are
    inspected on their own; a ``config.json`` with no weights beside it is dropped.
    """
    out: list[str] = []
    cache: dict[Path, set[Path] | None] = {}
    for source in sources:
        path = Path(source)
        if not path.is_file():
            out.append(source)
            continue
        folder = path.parent
        if folder not in cache:
            cache[folder] = _files_read(folder)
        read = cache[folder]
        if read is not None and path.absolute() in read:
            out.append(str(folder))
        elif path.name in ("config.json", "adapter_config.json"):
            continue
        else:
            out.append(source)
    return _unique(out)
