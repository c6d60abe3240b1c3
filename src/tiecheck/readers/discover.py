"""Turn what the user typed into a plan: which weight files, index, config and adapter config.

This mirrors how loaders pick files, so tiecheck judges the weights a user would actually get:
transformers prefers ``model.safetensors`` over its index, safetensors over ``.bin``, and an
adapter folder is read as an adapter even when it also holds a ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tiecheck.errors import SourceError
from tiecheck.model import SourceKind

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


def _sniff(path: Path) -> SourceKind | None:
    """Guess a file's format from its first bytes, for files with unusual names."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return SourceKind.PICKLE_FILE
    if len(head) == 9 and head[8:9] == b"{":
        return SourceKind.SAFETENSORS_FILE
    return None


def _kind_of_index(path: Path) -> SourceKind:
    return SourceKind.PICKLE_SHARDED if ".bin." in path.name else SourceKind.SAFETENSORS_SHARDED


def _config_beside(folder: Path) -> Path | None:
    config = folder / "config.json"
    return config if config.is_file() else None


def plan_file(path: Path, source: str) -> Plan:
    name = path.name
    folder = path.parent
    if name == "adapter_config.json" or name == "config.json":
        return plan_folder(folder, source)
    if name.endswith(".index.json"):
        return Plan(source, folder, _kind_of_index(path), index=path, config=_config_beside(folder))
    if name.endswith(".safetensors"):
        kind: SourceKind | None = SourceKind.SAFETENSORS_FILE
    elif name.endswith(PICKLE_SUFFIXES):
        kind = SourceKind.PICKLE_FILE
    else:
        kind = _sniff(path)
    if kind is None:
        raise SourceError(
            f"{source}: not a checkpoint tiecheck can read (expected .safetensors, "
            ".bin/.pt/.pth/.ckpt, an *.index.json or a model folder)"
        )
    plan = Plan(source, folder, kind, weights=[path], config=_config_beside(folder))
    if name in ADAPTER_FILES and (folder / "adapter_config.json").is_file():
        plan.kind = SourceKind.PEFT_ADAPTER
        plan.adapter_config = folder / "adapter_config.json"
        plan.config = None
    return plan


def plan_folder(folder: Path, source: str) -> Plan:
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        for name in ADAPTER_FILES:
            if (folder / name).is_file():
                return Plan(
                    source,
                    folder,
                    SourceKind.PEFT_ADAPTER,
                    weights=[folder / name],
                    adapter_config=adapter_config,
                )
        raise SourceError(f"{source}: adapter folder has no {' or '.join(ADAPTER_FILES)}")
    config = _config_beside(folder)
    names = {p.name for p in folder.iterdir() if p.is_file()}
    choice = choose_weights(names)
    if choice is None:
        raise SourceError(
            f"{source}: no weights found in this folder (looked for model.safetensors, "
            "*.safetensors.index.json, pytorch_model.bin, *.bin.index.json, *.safetensors, "
            "*.bin/.pt/.pth/.ckpt)"
        )
    kind, weights, index, notes = choice
    return Plan(
        source,
        folder,
        kind,
        weights=[folder / w for w in weights],
        index=folder / index if index else None,
        config=config,
        notes=notes,
    )


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
        return _kind_of_index(Path(indexes[0])), [], indexes[0], notes
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
    raise SourceError(f"{source}: no such file or folder")
