"""Execute a plan: read every file it names into one ``Checkpoint``.

A file that cannot be read becomes a finding (TC001/TC002/TC003) and the rest of the checkpoint
is still read, so a report always says everything that is wrong, not just the first thing.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, Protocol

from tiecheck.errors import FormatError, UnsafePickleError
from tiecheck.model import (
    AdapterInfo,
    Checkpoint,
    ConfigInfo,
    FileFormat,
    IndexInfo,
    Problem,
    ProblemKind,
    SourceKind,
    TensorInfo,
    WeightFile,
)
from tiecheck.readers.declarations import classify, read_yaml_flags
from tiecheck.readers.discover import Plan
from tiecheck.readers.index_format import read_index, unsafe_shard_name
from tiecheck.readers.jsonfile import MAX_CONFIG_BYTES, read_json_file
from tiecheck.readers.paths import outside_folder
from tiecheck.readers.pickle_format import read_pickle
from tiecheck.readers.safetensors_format import SafetensorsHeader, read_header


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class RemoteFiles(Protocol):
    """Weight files that live elsewhere (a Hub repo): sizes from a listing, headers and byte
    ranges by request. ``load`` reads the plan's weights through it instead of from disk;
    small files (index, configs) are always local paths."""

    def file_size(self, name: str) -> int | None:
        """The file's size, or None when the source has no such file."""
        ...

    def header(self, name: str, size: int) -> SafetensorsHeader:
        """The validated safetensors header (raises FormatError when invalid)."""
        ...


class _Loader:
    def __init__(self, plan: Plan, remote: RemoteFiles | None = None) -> None:
        self.plan = plan
        self.remote = remote
        self.problems: list[Problem] = []
        self.files: dict[str, WeightFile] = {}
        self.tensors: list[TensorInfo] = []
        self.unreadable: set[str] = set()
        self.notes = list(plan.notes)
        self.config_unreadable = False

    def invalid(self, name: str, error: FormatError) -> None:
        kind = (
            ProblemKind.UNSAFE_PICKLE
            if isinstance(error, UnsafePickleError)
            else ProblemKind.INVALID_FILE
        )
        self.problems.append(Problem(kind, f"{name}: {error}", file=name))
        self.unreadable.add(name)

    def read_weight_file(self, path: Path, name: str) -> None:
        is_pickle = path.name.endswith((".bin", ".pt", ".pth", ".ckpt")) or (
            self.plan.kind in (SourceKind.PICKLE_FILE, SourceKind.PICKLE_SHARDED)
            and not path.name.endswith(".safetensors")
        )
        if self.remote is not None:
            self._read_remote(path, name, is_pickle)
            return
        try:
            st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                raise FormatError("is a folder, not a file")
            if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block; a device never ends
                raise FormatError("is not a regular file (a FIFO, socket or device); not opened")
            size = st.st_size
            if is_pickle:
                self._read_pickle(path, name, size)
            else:
                self._read_safetensors(path, name, size)
        except FormatError as e:
            self.invalid(name, e)
        except OSError as e:
            self.invalid(name, FormatError(f"cannot read: {e.strerror or e}"))

    def _read_remote(self, path: Path, name: str, is_pickle: bool) -> None:
        assert self.remote is not None
        size = self.remote.file_size(name)
        try:
            if size is None:
                raise FormatError("not found in the repository")
            if is_pickle:  # callers download pickles first; never unpickle a remote stream
                raise FormatError("a pickle: it must be downloaded to be inspected")
            self.add_safetensors(name, path, size, self.remote.header(name, size))
        except FormatError as e:
            self.invalid(name, e)

    def _exists(self, path: Path, name: str) -> bool:
        """Whether the shard exists (an error other than "not found", such as a name longer
        than the file system allows, is for ``read_weight_file`` to report)."""
        if self.remote is not None:
            return self.remote.file_size(name) is not None
        try:
            return path.exists()
        except OSError:
            return True

    def _read_safetensors(self, path: Path, name: str, size: int) -> None:
        # Our validator enforces every rule of the Rust loader with precise messages and
        # gives offsets; safetensors' own loader (which imports numpy, ~0.1 s) is asked by
        # ``fix`` before it commits a file, where being the library's verdict matters most.
        self.add_safetensors(name, path, size, read_header(path))

    def add_safetensors(self, name: str, path: Path, size: int, header: SafetensorsHeader) -> None:
        """Record a validated header (read locally or by a remote range request)."""
        for key in dict.fromkeys(header.duplicate_keys):
            self.problems.append(
                Problem(
                    ProblemKind.REPEATED_KEY,
                    f"{name}: tensor {key!r} appears more than once in the header; loaders keep "
                    "the last entry and silently drop the others",
                    file=name,
                    keys=(key,),
                )
            )
        self.files[name] = WeightFile(name, path, FileFormat.SAFETENSORS, size, header.metadata)
        self.tensors.extend(
            TensorInfo(e.name, name, e.dtype, e.shape, e.span, e.name) for e in header.entries
        )

    def _read_pickle(self, path: Path, name: str, size: int) -> None:
        ckpt = read_pickle(path)
        self.files[name] = WeightFile(
            name, path, ckpt.format, size, container=ckpt.container, prefix=ckpt.prefix
        )
        if ckpt.container:
            self.notes.append(f"{name}: state dict read from the {ckpt.container!r} entry")
        if ckpt.others:
            self.notes.append(
                f"{name}: also holds tensors under "
                + ", ".join(ckpt.others[:5])
                + (f" and {len(ckpt.others) - 5} more" if len(ckpt.others) > 5 else "")
                + "; not read as the model's weights"
            )
        if ckpt.prefix:
            self.notes.append(f"{name}: wrapper prefix {ckpt.prefix!r} removed from every key")
        self.tensors.extend(
            TensorInfo(e.name, name, e.dtype, e.shape, e.span, e.stored_name, e.storage)
            for e in ckpt.entries
        )

    def read_index(self, path: Path) -> IndexInfo | None:
        try:
            index, duplicates = read_index(path)
        except FormatError as e:
            self.invalid(path.name, e)
            return None
        for key in dict.fromkeys(duplicates):
            self.problems.append(
                Problem(
                    ProblemKind.REPEATED_KEY,
                    f"{path.name}: key {key!r} appears more than once in the index; the last "
                    "entry wins",
                    file=path.name,
                    keys=(key,),
                )
            )
        return index

    def read_shards(self, index: IndexInfo) -> None:
        folder = index.path.parent
        for shard in dict.fromkeys(index.weight_map.values()):
            why = unsafe_shard_name(shard)
            if why:
                self.invalid(index.name, FormatError(f"shard name {shard!r} {why}; not read"))
                self.unreadable.add(shard)
                continue
            path = folder / shard
            name = _display(path, self.plan.root)
            if not self._exists(path, name):
                self.missing_shard(index, shard, name)
                continue
            if self.remote is None and self.outside_folder(folder, path, name):
                continue
            self.read_weight_file(path, name)

    def outside_folder(self, folder: Path, path: Path, name: str) -> bool:
        """Report (and do not read) a file the folder names that really lives elsewhere."""
        outside = outside_folder(folder, path)
        if outside is not None:
            message = f"is a symbolic link to {outside}, outside the model folder; not read"
            self.invalid(name, FormatError(message))
        return outside is not None

    def missing_shard(self, index: IndexInfo, shard: str, name: str | None = None) -> None:
        self.unreadable.add(name or shard)
        listed = sum(1 for v in index.weight_map.values() if v == shard)
        self.problems.append(
            Problem(
                ProblemKind.MISSING_SHARD,
                f"{index.name} maps {listed} tensors to {shard!r}, which does not exist",
                file=shard,
            )
        )

    def read_config(self, path: Path | None, *, folder: Path | None = None) -> ConfigInfo | None:
        """Read a JSON config; ``folder`` (when the file was found in one rather than named by
        the user) must hold it: a link out of the folder is reported and not read."""
        if path is None:
            return None
        name = _display(path, self.plan.root)
        if folder is not None and self.remote is None:
            outside = outside_folder(folder, path)
            if outside is not None:
                message = (
                    f"{name}: is a symbolic link to {outside}, outside the model folder; not read"
                )
                self.config_problem(name, message)
                return None
        try:
            if path.name.endswith(".yaml"):
                data: Any = read_yaml_flags(path)
            else:
                data, _ = read_json_file(path, max_bytes=MAX_CONFIG_BYTES)
        except FormatError as e:
            self.config_problem(name, f"{name}: {e}")
            return None
        if not isinstance(data, dict):
            self.config_problem(name, f"{name}: not a JSON object")
            return None
        return ConfigInfo(name, path, data, classify(path.name, data))

    def config_problem(self, name: str, message: str) -> None:
        self.problems.append(Problem(ProblemKind.INVALID_FILE, message, file=name))
        self.config_unreadable = True


def _adapter_info(path: Path, data: dict) -> AdapterInfo:
    modules = data.get("modules_to_save") or ()
    return AdapterInfo(
        path=path,
        base_model=data.get("base_model_name_or_path")
        if isinstance(data.get("base_model_name_or_path"), str)
        else None,
        modules_to_save=tuple(m for m in modules if isinstance(m, str))
        if isinstance(modules, list)
        else (),
        ensure_weight_tying=data.get("ensure_weight_tying") is True,
    )


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where the name cannot be looked up (too long for the file
    system: Python 3.11's pathlib raises OSError there); reading it then says why."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _base_config_path(adapter: AdapterInfo, base: Path | None) -> Path | None:
    """Find the base model's config: ``--base``, a local folder (relative to the working
    folder, as PEFT resolves it, then to the adapter's folder), or the Hugging Face cache."""
    if base is not None:
        return base / "config.json" if _is_dir(base) else base
    if not adapter.base_model:
        return None
    try:  # the name comes from the adapter's file: "~nosuchuser", a NUL, 5,000 characters
        local = Path(adapter.base_model).expanduser()
        for folder in (local, adapter.path.parent / local):
            if (folder / "config.json").is_file():
                return folder / "config.json"
    except (OSError, RuntimeError, ValueError):
        return None
    if local.is_absolute() or adapter.base_model.count("/") != 1:
        return None
    try:  # a cached download of the base repo; never touches the network
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(adapter.base_model, "config.json")
    except Exception:  # malformed repo ids raise validation errors
        return None
    return Path(cached) if isinstance(cached, str) else None


def load(plan: Plan, *, base: Path | None = None, remote: RemoteFiles | None = None) -> Checkpoint:
    """Read everything ``plan`` names; with ``remote``, its weight files are read through it
    (headers by range request) while index and config files are local paths."""
    loader = _Loader(plan, remote)
    index = loader.read_index(plan.index) if plan.index else None
    if index is not None:
        loader.read_shards(index)
    # Files found in a folder, like an index's shards, must be the folder's own; a file named
    # on the command line is read wherever its link points.
    found_in_folder = remote is None and Path(plan.source).expanduser().is_dir()
    for path in plan.weights:
        name = _display(path, plan.root)
        if found_in_folder and loader.outside_folder(plan.root, path, name):
            continue
        loader.read_weight_file(path, name)
    config_path = plan.config
    adapter = None
    if plan.adapter_config is not None:
        adapter_cfg = loader.read_config(plan.adapter_config, folder=plan.root)
        if adapter_cfg is not None:
            adapter = _adapter_info(plan.adapter_config, adapter_cfg.data)
            config_path = _base_config_path(adapter, base)
            if config_path is None or not _is_file(config_path):
                named = repr(adapter.base_model) if adapter.base_model else "(none named)"
                loader.problems.append(
                    Problem(
                        ProblemKind.BASE_NOT_FOUND,
                        f"{plan.adapter_config.name}: base model {named} not found (not a "
                        "folder from here or from the adapter's folder, not in the Hugging Face "
                        "cache): pass --base PATH",
                        file=plan.adapter_config.name,
                    )
                )
                config_path = None
    elif base is not None:
        config_path = base / "config.json" if _is_dir(base) else base
    in_folder = config_path is not None and config_path == plan.config
    config = loader.read_config(config_path, folder=plan.root if in_folder else None)
    return Checkpoint(
        source=plan.source,
        root=plan.root,
        kind=plan.kind,
        files=loader.files,
        tensors=tuple(loader.tensors),
        index=index,
        config=config,
        adapter=adapter,
        notes=tuple(loader.notes),
        problems=tuple(loader.problems),
        unreadable=frozenset(loader.unreadable),
        config_unreadable=loader.config_unreadable,
    )
