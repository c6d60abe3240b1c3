"""Turn what the user typed into a plan: which weight files, index, config and adapter config.

This mirrors how loaders pick files, so tiecheck judges the weights a user would actually get:
transformers prefers ``model.safetensors`` over its index, safetensors over ``.bin``, and an
adapter folder is read as an adapter even when it also holds a ``config.json``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tiecheck.errors import SourceError
from tiecheck.model import SourceKind
from tiecheck.readers.declarations import DECLARATION_FILES

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# In transformers' order of preference.
MODEL_FILES = (
    ("model.safetensors", SourceKind.SAFETENSORS_FILE),
    ("model.safetensors.index.json", SourceKind.SAFETENSORS_SHARDED),
    ("pytorch_model.bin", SourceKind.PICKLE_FILE),
    ("pytorch_model.bin.index.json", SourceKind.PICKLE_SHARDED),
)
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass
class Plan:
    source: str
    root: Path
    kind: SourceKind
    weights: list[Path] = field(default_factory=list)
    """weight files to read; empty when an index lists them."""
    index: Path | None = None
    config: Path | None = None
    adapter_config: Path | None = None
    notes: list[str] = field(default_factory=list)


class Listing(Protocol):
    """What choosing files needs to know about the place a checkpoint lives: a folder on disk
    or a repo on the Hub (known only by its listing). Names are relative to the listing's
    root, with ``/`` separators; one ``choose`` works on both, so a local folder and a Hub
    repo holding the same files pick the same files."""

    where: str
    """how messages name the place: 'folder', 'repository', "folder 'sub' of the repository"."""

    def names(self) -> set[str]:
        """Files directly in the root (not in folders below it)."""
        ...

    def is_file(self, name: str) -> bool: ...

    def sniff(self, name: str) -> SourceKind | None:
        """A file's format from its first bytes, when reading them costs nothing (else None)."""
        ...

    def hint(self, source: str) -> str:
        """Said after "no weights found" (e.g. which folders below hold some); may be empty."""
        ...


HINT_SCAN = 256
"""Entries of a folder (and of each sub-folder) looked at to suggest sub-folders to inspect."""
HINT_SHOWN = 5


class FolderListing:
    """A folder on disk."""

    where = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> set[str]:
        return {p.name for p in self.folder.iterdir() if p.is_file()}

    def is_file(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def sniff(self, name: str) -> SourceKind | None:
        """Guess a file's format from its first bytes, for files with unusual names."""
        try:
            with (self.folder / name).open("rb") as f:
                head = f.read(9)
        except OSError:
            return None
        if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
            return SourceKind.PICKLE_FILE
        if len(head) == 9 and head[8:9] == b"{":
            return SourceKind.SAFETENSORS_FILE
        return None

    def hint(self, source: str) -> str:
        """Which folders directly below hold a checkpoint (a folder of model folders, such as
        an adapter beside its base): scanning stops after a few hundred entries, so a
        hostile folder of millions costs nothing."""
        found: list[str] = []
        try:
            with os.scandir(self.folder) as entries:
                for seen, entry in enumerate(entries):
                    if seen >= HINT_SCAN or len(found) > HINT_SHOWN:
                        break
                    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                        continue
                    if _holds_checkpoint(Path(entry.path)):
                        found.append(entry.name)
        except OSError:
            return ""
        if not found:
            return ""
        base = source.rstrip("/") or "."
        hint = model_folders_hint(found, lambda first: shlex.quote(f"{base}/{first}"))
        return f"{hint}, or all as {shlex.quote(f'{base}/*')}"


def names_a_checkpoint_file(name: str) -> bool:
    """A file that makes its folder worth suggesting to inspect: weights, an index, a config."""
    return name in ("config.json", "adapter_config.json") or name.endswith(
        (".safetensors", ".index.json", *PICKLE_SUFFIXES)
    )


def model_folders_hint(folders: list[str], inspect_as: Callable[[str], str]) -> str:
    """The sentence both listings add to "no weights found": which folders below hold a
    checkpoint (sorted, the first ``HINT_SHOWN``) and how to inspect one (``inspect_as``)."""
    if not folders:
        return ""
    folders = sorted(folders)
    shown = ", ".join(folders[:HINT_SHOWN]) + (" ..." if len(folders) > HINT_SHOWN else "")
    return f"it has model folders ({shown}): inspect one as {inspect_as(folders[0])}"


def _holds_checkpoint(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            for seen, entry in enumerate(entries):
                if seen >= HINT_SCAN:
                    return False
                if names_a_checkpoint_file(entry.name):
                    return True
    except OSError:
        return False
    return False


@dataclass(frozen=True)
class Choice:
    """What a loader would read, as names relative to the listing's root."""

    kind: SourceKind
    weights: tuple[str, ...] = ()
    """weight files to read; empty when an index lists them."""
    index: str | None = None
    config: str | None = None
    adapter_config: str | None = None
    notes: tuple[str, ...] = ()

    def plan(self, source: str, root: Path) -> Plan:
        """The choice as paths under ``root`` (a folder, or where a Hub snapshot is cached)."""

        def at(name: str | None) -> Path | None:
            return root / name if name else None

        return Plan(
            source,
            root,
            self.kind,
            weights=[root / w for w in self.weights],
            index=at(self.index),
            config=at(self.config),
            adapter_config=at(self.adapter_config),
            notes=list(self.notes),
        )


def _kind_of_index(name: str) -> SourceKind:
    return SourceKind.PICKLE_SHARDED if ".bin." in name else SourceKind.SAFETENSORS_SHARDED


def choose(listing: Listing, source: str, target: str | None = None) -> Choice:
    """The files a loader reads from ``listing``: all of a folder's (``target`` None), or the
    checkpoint one named file belongs to (an index, a weight file; a config names its folder).

    Raises ``SourceError`` when there is nothing a loader would read."""
    config = next((n for n in DECLARATION_FILES if listing.is_file(n)), None)
    adapter_config = "adapter_config.json" if listing.is_file("adapter_config.json") else None
    if target is not None and target not in ("config.json", "adapter_config.json"):
        if not listing.is_file(target):
            raise SourceError(f"{source}: no such file in this {listing.where}")
        if target.endswith(".index.json"):
            return Choice(_kind_of_index(target), index=target, config=config)
        if target in ADAPTER_FILES and adapter_config:
            return Choice(SourceKind.PEFT_ADAPTER, (target,), adapter_config=adapter_config)
        index = _index_of_shard(listing, target)
        if index is not None:
            # one shard alone looks like a model without its head or its embedding: read the
            # checkpoint it belongs to, as a loader would
            note = f"{target} is one shard of {index}: the whole checkpoint was read"
            return Choice(_kind_of_index(index), index=index, config=config, notes=(note,))
        if target.endswith(".safetensors"):
            kind: SourceKind | None = SourceKind.SAFETENSORS_FILE
        elif target.endswith(PICKLE_SUFFIXES):
            kind = SourceKind.PICKLE_FILE
        else:
            kind = listing.sniff(target)
        if kind is None:
            raise SourceError(
                f"{source}: not a checkpoint tiecheck can read (expected .safetensors, "
                ".bin/.pt/.pth/.ckpt, an *.index.json or a model folder)"
            )
        return Choice(kind, (target,), config=config)
    if adapter_config:
        for name in ADAPTER_FILES:
            if listing.is_file(name):
                return Choice(SourceKind.PEFT_ADAPTER, (name,), adapter_config=adapter_config)
        raise SourceError(f"{source}: adapter {listing.where} has no {' or '.join(ADAPTER_FILES)}")
    choice = choose_weights(listing.names())
    if choice is None:
        hint = listing.hint(source)
        raise SourceError(
            f"{source}: no weights found in this {listing.where} (looked for model.safetensors, "
            "*.safetensors.index.json, pytorch_model.bin, *.bin.index.json, *.safetensors, "
            f"*.bin/.pt/.pth/.ckpt){'; ' + hint if hint else ''}"
        )
    kind, weights, index, notes = choice
    return Choice(kind, tuple(weights), index=index, config=config, notes=tuple(notes))


_SHARD = re.compile(r"-\d{5}-of-(\d{5})\.(safetensors|bin)$")


def _index_of_shard(listing: Listing, name: str) -> str | None:
    """The index beside a file named like a shard (``...-00002-of-00003.safetensors``) of more
    than one, of the same format, when there is one."""
    match = _SHARD.search(name)
    if match is None or int(match[1]) < 2:
        return None
    suffix = ".safetensors.index.json" if match[2] == "safetensors" else ".bin.index.json"
    indexes = sorted(n for n in listing.names() if n.endswith(suffix))
    return indexes[0] if indexes else None


def plan_file(path: Path, source: str) -> Plan:
    if path.name in ("config.json", "adapter_config.json"):
        return plan_folder(path.parent, source)
    return choose(FolderListing(path.parent), source, path.name).plan(source, path.parent)


def plan_folder(folder: Path, source: str) -> Plan:
    return choose(FolderListing(folder), source).plan(source, folder)


WeightChoice = tuple[SourceKind, list[str], "str | None", list[str]]


def choose_weights(names: set[str]) -> WeightChoice | None:
    """Pick a folder's weights from its file names, as a loader would: (kind, files, index,
    notes). Shared by local folders and Hub repos, which are only known by their listing."""
    present = [(name, kind) for name, kind in MODEL_FILES if name in names]
    if present:
        name, kind = present[0]
        notes = []
        ignored = [n for n, _ in present[1:]]
        if ignored:
            notes.append(
                f"reading {name}, the file transformers loads; also present and not read: "
                + ", ".join(ignored)
            )
        if name.endswith(".index.json"):
            return kind, [], name, notes
        return kind, [name], None, notes
    files = sorted(names)
    indexes = [n for n in files if n.endswith(".index.json")]
    if indexes:
        notes = []
        if len(indexes) > 1:
            notes.append(
                f"several index files; reading {indexes[0]}, not " + ", ".join(indexes[1:])
            )
        return _kind_of_index(indexes[0]), [], indexes[0], notes
    for suffixes, single, many in (
        ((".safetensors",), SourceKind.SAFETENSORS_FILE, SourceKind.SAFETENSORS_SET),
        (PICKLE_SUFFIXES, SourceKind.PICKLE_FILE, SourceKind.PICKLE_FILE),
    ):
        found = [n for n in files if n.endswith(suffixes)]
        if found:
            notes = []
            if len(found) > 1:
                notes.append(
                    f"no index file: reading all {len(found)} {suffixes[0]} files as one checkpoint"
                )
            return (single if len(found) == 1 else many), found, None, notes
    return None


def plan_source(source: str) -> Plan:
    """Resolve a local path to a plan; raises ``SourceError`` when there is nothing to read."""
    path = Path(source).expanduser()
    try:
        if path.is_dir():
            return plan_folder(path, source)
        if path.is_file():
            return plan_file(path, source)
    except PermissionError as e:
        raise SourceError(f"{source}: permission denied") from e
    except OSError as e:  # a name longer than the file system allows, a loop of links...
        raise SourceError(f"{source}: {e.strerror or e}") from e
    if path.exists():
        raise SourceError(f"{source}: not a regular file or folder (a FIFO, socket or device)")
    if path.is_symlink():
        raise SourceError(f"{source}: broken symbolic link (its target does not exist)")
    first, sep, rest = source.partition("/")
    if sep and rest and "/" not in rest.rstrip("/") and Path(first).is_dir():
        raise SourceError(
            f"{source}: no such file or folder (read as a path because {first}/ is a folder "
            f"here; for the Hub repo write hf://{source})"
        )
    raise SourceError(f"{source}: no such file or folder")
