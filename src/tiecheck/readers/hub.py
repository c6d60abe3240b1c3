"""Hugging Face Hub sources: inspect a repo by id, reading headers with range requests.

Everything goes through ``huggingface_hub`` (``HfApi`` for metadata and listings, ``HfFileSystem``
for byte ranges, ``hf_hub_download``/``snapshot_download`` for small files and the cache), so
the endpoint, token, cache location, offline mode and proxies are the library's. What tiecheck
adds is *which* bytes to ask for: the index, each shard's header (kilobytes), and only the byte
ranges of tensors whose values must be compared.

A remote repo is turned into the same ``Plan`` a local folder gives (the small files, config
and index, are downloaded into the Hub cache and are local paths; the weight files are read
through ``RangeReader``), and ``load`` does the rest, so a repo and a local copy of it produce
the same findings.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiecheck.errors import FormatError, SourceError
from tiecheck.model import Checkpoint, SourceKind
from tiecheck.readers.discover import ADAPTER_FILES, PICKLE_SUFFIXES, Plan, choose_weights
from tiecheck.readers.index_format import read_index, unsafe_shard_name
from tiecheck.readers.load import load
from tiecheck.readers.safetensors_format import SafetensorsHeader, header_length, parse_header
from tiecheck.rules import Finding

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
FIRST_READ = 64 << 10
"""First range request per shard: holds the whole header of nearly every real file."""
PARALLEL_READS = 8
"""Concurrent range requests for ``RangeReader.fetch_many`` (a tensor's samples)."""
_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".json")
"""A path in a Hub URL ending like this names a file, not a folder."""


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None
    subfolder: str = ""
    filename: str | None = None
    """set when the source names one file (a ``/blob/`` URL): read it as a local file would be."""
    explicit: bool = field(default=False, compare=False)
    """spelled as ``hf://`` or a URL, so it cannot have been meant as a local path."""

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        sub = f"/{self.subfolder}" if self.subfolder else ""
        name = f"/{self.filename}" if self.filename else ""
        return f"{self.repo_id}{rev}{sub}{name}"

    def path(self, name: str) -> str:
        """Path in the repo of ``name`` (relative to the subfolder)."""
        return f"{self.subfolder}/{name}" if self.subfolder else name


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _is_hub_url(source: str) -> bool:
    if not source.lower().startswith(("https://", "http://")):
        return False
    host = (urlsplit(source).hostname or "").lower()
    hosts = {"huggingface.co", "www.huggingface.co", "hf.co", urlsplit(_endpoint()).hostname}
    return host in hosts


def parse_hub_source(source: str) -> HubRef | None:
    """``ORG/NAME[@REV]``, ``hf://ORG/NAME[@REV][/SUB]`` or a Hub URL; else None.

    Callers check local paths first: a folder named ``org/name`` always wins. ``hf://`` URIs and
    Hub URLs are parsed by huggingface_hub itself (``parse_hf_uri``: ``refs/pr/N`` revisions,
    ``/tree/``, ``/blob/`` and ``/resolve/`` routes); a malformed one raises ``SourceError``.
    """
    if source.startswith("hf://") or _is_hub_url(source):
        from huggingface_hub.utils import parse_hf_uri

        try:
            uri = parse_hf_uri(source, endpoint=_endpoint())
        except ValueError as e:  # HfUriError
            raise SourceError(str(e).strip().splitlines()[0]) from e
        if uri.type != "model":
            raise SourceError(f"{source}: a {uri.type} repository; tiecheck reads model repos")
        sub, filename = uri.path_in_repo.strip("/"), None
        if sub.endswith(_FILE_SUFFIXES):
            sub, filename = posixpath.dirname(sub), posixpath.basename(sub)
        return HubRef(uri.id, uri.revision, sub, filename, explicit=True)
    name, _, revision = source.partition("@")
    if _REPO_ID.match(name) and ".." not in name and "--" not in name:
        return HubRef(name, revision or None)
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _hub_error(e: BaseException, ref: HubRef, token: str | None = None) -> SourceError:
    """One clear line for each way reaching a repo fails."""
    import httpx2
    from huggingface_hub import errors, get_token

    if isinstance(e, errors.GatedRepoError):
        if token or get_token():
            return SourceError(
                f"{ref}: gated repository, and this token has not been granted access: accept "
                f"its terms on the Hub (huggingface.co/{ref.repo_id})"
            )
        return SourceError(
            f"{ref}: gated repository; accept its terms on the Hub, then pass --token or set "
            "HF_TOKEN"
        )
    if isinstance(e, errors.RepositoryNotFoundError):
        where = "" if ref.explicit else "no such local path, and "
        if token or get_token():
            return SourceError(
                f"{ref}: {where}repository not found on the Hub (or this token cannot read it)"
            )
        return SourceError(
            f"{ref}: {where}repository not found on the Hub (if it is private, pass --token or "
            "set HF_TOKEN)"
        )
    if isinstance(e, errors.RevisionNotFoundError):
        return SourceError(f"{ref}: revision {ref.revision or 'main'!r} not found in {ref.repo_id}")
    if isinstance(e, errors.RemoteEntryNotFoundError):
        return SourceError(f"{ref}: no such file or folder in the repository")
    if isinstance(e, errors.OfflineModeIsEnabled):
        return SourceError(f"{ref}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set")
    if isinstance(e, errors.HFValidationError):
        return SourceError(f"{ref}: not a valid repository id ({_first_line(e)})")
    if isinstance(e, errors.HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        return SourceError(f"{ref}: the Hub answered {status or 'an error'}: {_first_line(e)}")
    if isinstance(e, (httpx2.TransportError, errors.LocalEntryNotFoundError)):
        cause = e.__cause__ if isinstance(e, errors.LocalEntryNotFoundError) and e.__cause__ else e
        return SourceError(
            f"{ref}: cannot reach the Hub at {_endpoint()} ({_first_line(cause)}), and the "
            "Hugging Face cache does not hold this revision"
        )
    return SourceError(f"{ref}: cannot read from the Hub ({type(e).__name__}: {_first_line(e)})")


class _RemoteError(Exception):
    """A failure of the Hub while reading headers: becomes a ``SourceError``, not a finding."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Listing:
    """File sizes in the repo's subfolder (and folders below it), listed on first use."""

    def __init__(self, api: Any, ref: HubRef, commit: str) -> None:
        self._api, self._ref, self._commit = api, ref, commit
        self._dirs: dict[str, dict[str, int]] = {}
        self.folders: dict[str, list[str]] = {}
        """sub-folders of each listed folder (for a hint when there are no weights)."""

    def names(self, folder: str = "") -> dict[str, int]:
        """Files directly in ``folder`` (relative to the subfolder): name -> size."""
        from huggingface_hub import errors
        from huggingface_hub.hf_api import RepoFile

        folder = folder.strip("/")
        if folder not in self._dirs:
            path = self._ref.path(folder) if folder else self._ref.subfolder
            try:
                entries = list(
                    self._api.list_repo_tree(
                        self._ref.repo_id, path_in_repo=path or None, revision=self._commit
                    )
                )
            except errors.RemoteEntryNotFoundError:
                if not folder:
                    raise
                entries = []
            files = [e for e in entries if isinstance(e, RepoFile)]
            self._dirs[folder] = {posixpath.basename(e.path): e.size for e in files}
            self.folders[folder] = sorted(
                posixpath.basename(e.path) for e in entries if not isinstance(e, RepoFile)
            )
        return self._dirs[folder]

    def size(self, name: str) -> int | None:
        if unsafe_shard_name(name):
            return None
        folder, base = posixpath.split(name)
        return self.names(folder).get(base)


class RangeReader:
    """Byte ranges of files in one repo revision, via ``HfFileSystem``; counts what it moves.

    ``transferred`` is every file byte fetched for this inspection: headers, tensor ranges, and
    the small files (config, index) when they were not already cached.
    """

    def __init__(self, ref: HubRef, revision: str, token: str | None, listing: _Listing) -> None:
        self._ref = ref
        self._revision = revision
        self._token = token
        self._listing = listing
        self._fs: Any = None
        self._files: dict[str, Any] = {}
        self._owner = threading.current_thread()
        self._thread_files = threading.local()
        self._all_thread_files: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._pool: Any = None
        self._heads: dict[str, bytes] = {}
        """first reads fetched ahead by ``prefetch_headers``, until ``header`` takes them."""
        self.transferred = 0

    def _open(self, name: str) -> Any:
        # One handle per file and thread: a handle has a position, ``fetch_many`` has threads.
        files = self._files if threading.current_thread() is self._owner else self._local()
        handle = files.get(name)
        if handle is None:
            with self._lock:
                if self._fs is None:
                    from huggingface_hub import HfFileSystem

                    self._fs = HfFileSystem(token=self._token, skip_instance_cache=True)
            # cache_type "none": fsspec fetches exactly the requested range, no read-ahead.
            handle = files[name] = self._fs.open(
                f"{self._ref.repo_id}/{self._ref.path(name)}",
                "rb",
                revision=self._revision,
                cache_type="none",
                block_size=1 << 20,
            )
        return handle

    def _local(self) -> dict[str, Any]:
        files = getattr(self._thread_files, "files", None)
        if files is None:
            files = self._thread_files.files = {}
            with self._lock:
                self._all_thread_files.append(files)
        return files

    def _read(self, name: str, start: int, length: int) -> bytes:
        handle = self._open(name)
        handle.seek(start)
        data = handle.read(length)
        with self._lock:
            self.transferred += len(data)
        return data

    def __call__(self, name: str, start: int, length: int) -> bytes:
        """Tensor bytes for ``TensorData``: any failure is an ``OSError`` (a TC001 finding)."""
        try:
            return self._read(name, start, length)
        except OSError:
            raise
        except Exception as e:  # httpx2 transport errors are not OSErrors
            raise OSError(f"{name}: {type(e).__name__}: {_first_line(e)}") from e

    def fetch_many(self, reads: list[tuple[str, int, int]]) -> list[bytes]:
        """Several ``(name, start, length)`` ranges, requested concurrently (a round trip per
        request is what remote sampling costs; the bytes are the same)."""
        if len(reads) <= 1:
            return [self(*read) for read in reads]
        for name in dict.fromkeys(name for name, _, _ in reads):
            # opened here first: the file system's repo and listing caches are then warm, and
            # the threads do not each ask the Hub for them (a failure is raised by the read)
            with contextlib.suppress(Exception):
                self._open(name)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=PARALLEL_READS)
        return list(self._pool.map(lambda read: self(*read), reads))

    def size(self, name: str) -> int | None:
        try:
            return self._listing.size(name)
        except Exception as e:
            raise _RemoteError(e) from e

    def prefetch_headers(self, names: list[str]) -> None:
        """The first read of each of these files, all at once: a repo of many shards then
        costs one round trip for its headers, not one per shard. Best effort: a failure here
        is met again, and reported, by ``header``."""
        try:
            reads = []
            for name in dict.fromkeys(names):
                size = self._listing.size(name)
                if size is not None and size >= 8 and name.endswith(".safetensors"):
                    reads.append((name, 0, min(size, FIRST_READ)))
            for (name, _, _), data in zip(reads, self.fetch_many(reads)):
                self._heads[name] = data
        except Exception:
            self._heads.clear()

    def header(self, name: str, size: int) -> SafetensorsHeader:
        """The first 64 KiB (one request), then the rest of the header if it is longer."""
        try:
            first = self._heads.pop(name, None) or self._read(name, 0, min(size, FIRST_READ))
            length = header_length(first[:8], size)
            raw = first[8 : 8 + length]
            if len(raw) < length:
                raw += self._read(name, len(first), 8 + length - len(first))
        except FormatError:
            raise
        except Exception as e:
            raise _RemoteError(e) from e
        return parse_header(raw, size)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for files in (self._files, *self._all_thread_files):
            for handle in files.values():
                handle.close()
            files.clear()


@dataclass
class _Choice:
    """What a loader would read, as repo paths relative to the subfolder."""

    kind: SourceKind
    weights: list[str]
    index: str | None = None
    config: str | None = None
    adapter_config: str | None = None
    notes: list[str] = field(default_factory=list)


def _choose(ref: HubRef, names: set[str], folders: list[str] | None = None) -> _Choice:
    """``discover.plan_folder`` / ``plan_file`` for a listing instead of a folder."""
    config = "config.json" if "config.json" in names else None
    if ref.filename is not None and ref.filename not in ("config.json", "adapter_config.json"):
        name = ref.filename
        if name not in names:
            raise SourceError(f"{ref}: no such file in the repository")
        if name.endswith(".index.json"):
            kind = SourceKind.PICKLE_SHARDED if ".bin." in name else SourceKind.SAFETENSORS_SHARDED
            return _Choice(kind, [], index=name, config=config)
        if name.endswith(".safetensors"):
            if name in ADAPTER_FILES and "adapter_config.json" in names:
                return _Choice(
                    SourceKind.PEFT_ADAPTER, [name], adapter_config="adapter_config.json"
                )
            return _Choice(SourceKind.SAFETENSORS_FILE, [name], config=config)
        if name.endswith(PICKLE_SUFFIXES):
            return _Choice(SourceKind.PICKLE_FILE, [name], config=config)
        raise SourceError(
            f"{ref}: not a checkpoint tiecheck can read (expected .safetensors, "
            ".bin/.pt/.pth/.ckpt, an *.index.json or a model folder)"
        )
    if "adapter_config.json" in names:
        for name in ADAPTER_FILES:
            if name in names:
                return _Choice(
                    SourceKind.PEFT_ADAPTER, [name], adapter_config="adapter_config.json"
                )
        raise SourceError(f"{ref}: adapter repo has no {' or '.join(ADAPTER_FILES)}")
    choice = choose_weights(names)
    if choice is None:
        where = f"folder {ref.subfolder!r} of the repository" if ref.subfolder else "repository"
        hint = ""
        if folders:
            shown = ", ".join(folders[:5]) + (" ..." if len(folders) > 5 else "")
            first = f"hf://{ref.repo_id}{'@' + ref.revision if ref.revision else ''}/"
            first += ref.path(folders[0])
            hint = f"; it has folders ({shown}): inspect one as {first}"
        raise SourceError(
            f"{ref}: no weights in this {where} (no .safetensors, .bin, .pt, .pth or .ckpt "
            f"files){hint}"
        )
    kind, weights, index, notes = choice
    return _Choice(kind, weights, index=index, config=config, notes=notes)


def _is_pickled(choice: _Choice) -> bool:
    return choice.kind in (SourceKind.PICKLE_FILE, SourceKind.PICKLE_SHARDED) or any(
        w.endswith(PICKLE_SUFFIXES) for w in choice.weights
    )


def _index_shards(path: Path) -> list[str]:
    """Shard names an index lists (empty when it cannot be read: ``load`` reports that)."""
    try:
        index, _ = read_index(path)
    except (FormatError, OSError):
        return []
    return [s for s in dict.fromkeys(index.weight_map.values()) if not unsafe_shard_name(s)]


def _plan(ref: HubRef, root: Path, choice: _Choice) -> Plan:
    def local(name: str | None) -> Path | None:
        return root / name if name else None

    return Plan(
        str(ref),
        root,
        choice.kind,
        weights=[root / w for w in choice.weights],
        index=local(choice.index),
        config=local(choice.config),
        adapter_config=local(choice.adapter_config),
        notes=list(choice.notes),
    )


def _needed(choice: _Choice, root: Path) -> list[str]:
    """Every file a loader of this choice reads (shards from the index, when it is at hand)."""
    names = [n for n in (choice.index, choice.config, choice.adapter_config) if n]
    names += choice.weights
    if choice.index and (root / choice.index).is_file():
        folder = posixpath.dirname(choice.index)
        names += [posixpath.join(folder, s) for s in _index_shards(root / choice.index)]
    return names


def _cached_snapshot(ref: HubRef) -> tuple[Path, _Choice] | None:
    """The cached snapshot of this revision, if it holds every file a loader would read.

    What "every file" means comes from the repo listing cached by ``snapshot_download`` when
    there is one, else from the snapshot folder itself. A partial snapshot (left by an earlier
    remote inspection, or by a download of some files) is not used.
    """
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import IncompleteSnapshotError

    try:
        snapshot = Path(
            snapshot_download(ref.repo_id, revision=ref.revision, local_files_only=True)
        )
    except IncompleteSnapshotError as e:  # the listing says files are missing: check ours
        snapshot = Path(e.snapshot_path)
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        return None
    folder = snapshot / ref.subfolder if ref.subfolder else snapshot
    if not folder.is_dir():
        return None
    try:
        listed = get_cached_repo_tree(ref.repo_id, revision=ref.revision)
        prefix = f"{ref.subfolder}/" if ref.subfolder else ""
        names = {
            f.path[len(prefix) :]
            for f in listed
            if f.path.startswith(prefix) and "/" not in f.path[len(prefix) :]
        }
    except Exception:  # no cached listing: judge by the folder
        names = {p.name for p in folder.iterdir() if p.is_file()}
    try:
        choice = _choose(ref, names)
    except SourceError:
        return None
    if all((folder / n).is_file() for n in _needed(choice, folder)):
        return folder, choice
    return None


def _snapshot_root(ref: HubRef, commit: str) -> Path:
    """Where the Hub cache keeps this commit's files (the folder need not exist yet)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    cache = Path(constants.HF_HUB_CACHE).expanduser().resolve()
    root = cache / repo_folder_name(repo_id=ref.repo_id, repo_type="model") / "snapshots" / commit
    return root / ref.subfolder if ref.subfolder else root


def _remember_revision(ref: HubRef, commit: str) -> None:
    """Record branch -> commit in the cache's ``refs/``, as ``hf_hub_download`` does for the
    branch it was given: files are fetched by commit here, and an offline run later finds the
    snapshot through the branch name. Best effort (read-only cache, library internals)."""
    revision = ref.revision or "main"
    if revision == commit:
        return
    try:
        from huggingface_hub import constants
        from huggingface_hub.file_download import (
            _cache_commit_hash_for_specific_revision,
            repo_folder_name,
        )

        cache = Path(constants.HF_HUB_CACHE).expanduser().resolve()
        storage = cache / repo_folder_name(repo_id=ref.repo_id, repo_type="model")
        _cache_commit_hash_for_specific_revision(str(storage), revision, commit)
    except Exception:  # pragma: no cover - an older or newer huggingface_hub, a read-only cache
        pass


def _human(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"


def load_hub(
    ref: HubRef,
    *,
    token: str | None = None,
    download: bool = False,
    base: Path | None = None,
) -> tuple[Checkpoint, list[Finding]]:
    """Read a Hub repo: from the cache when it holds the revision, else with range requests."""
    from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache

    cached = _cached_snapshot(ref)
    if cached is not None:
        folder, choice = cached
        checkpoint, findings = load(_plan(ref, folder, choice), base=base)
        checkpoint.source, checkpoint.origin = str(ref), "hub-cache"
        checkpoint.notes.append(f"read from the Hugging Face cache: {folder}")
        checkpoint.transferred = 0
        return checkpoint, findings
    if constants.is_offline_mode():
        raise SourceError(
            f"{ref}: the Hugging Face cache does not hold this revision's weights, and "
            "HF_HUB_OFFLINE is set"
        )
    api = HfApi(token=token)
    try:
        info = api.model_info(ref.repo_id, revision=ref.revision)
        commit = info.sha
        listing = _Listing(api, ref, commit)
        sizes = listing.names()
    except Exception as e:
        raise _hub_error(e, ref, token) from e
    choice = _choose(ref, set(sizes), listing.folders.get(""))
    root = _snapshot_root(ref, commit)
    reader = RangeReader(ref, commit, token, listing)

    def fetch(name: str) -> Path:
        """A small or downloaded file, into the Hub cache (counted when it moved)."""
        repo_path = ref.path(name)
        was_cached = isinstance(
            try_to_load_from_cache(ref.repo_id, repo_path, revision=commit), str
        )
        path = Path(hf_hub_download(ref.repo_id, repo_path, revision=commit, token=token))
        if not was_cached:
            reader.transferred += path.stat().st_size
        return path

    small = [n for n in (choice.index, choice.config, choice.adapter_config) if n]
    try:
        for name in small:
            fetch(name)
    except Exception as e:
        raise _hub_error(e, ref, token) from e
    _remember_revision(ref, commit)

    if _is_pickled(choice):
        needed = [n for n in _needed(choice, root) if n not in small]
        total = sum(listing.size(n) or 0 for n in needed)
        if not download:
            shown = needed or [n for n in small if n.endswith(".index.json")]
            listed = ", ".join(shown[:3]) + (
                f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            )
            raise SourceError(
                f"{ref}: only PyTorch pickle weights ({listed}, {_human(total)}); pickles "
                "must be downloaded to be inspected: rerun with --download"
            )
        try:
            for name in needed:
                if listing.size(name) is not None:
                    fetch(name)
        except Exception as e:
            raise _hub_error(e, ref, token) from e
        checkpoint, findings = load(_plan(ref, root, choice), base=base)
        checkpoint.source, checkpoint.origin = str(ref), "hub-cache"
        checkpoint.notes.append(
            f"pickle weights downloaded into the Hugging Face cache ({_human(total)}): {root}"
        )
        checkpoint.transferred = reader.transferred
        return checkpoint, findings

    try:
        reader.prefetch_headers(_needed(choice, root))
        checkpoint, findings = load(_plan(ref, root, choice), base=base, remote=reader)
    except _RemoteError as e:
        raise _hub_error(e.error, ref, token) from e.error
    checkpoint.origin = "hub"
    checkpoint.notes.append(f"read from the Hub: {ref.repo_id} at commit {commit}")
    return checkpoint, findings


def download_snapshot(ref: HubRef, *, token: str | None = None) -> Path:
    """Download what ``fix`` reads from a repo revision into the Hub cache: the weights a
    loader would use (chosen as ``inspect`` chooses them), their index and config, and the
    folder's small non-weight files (tokenizer, generation config) that come along."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi(token=token)
    try:
        info = api.model_info(ref.repo_id, revision=ref.revision)
        listing = _Listing(api, ref, info.sha)
        sizes = listing.names()
        choice = _choose(ref, set(sizes), listing.folders.get(""))
        root = _snapshot_root(ref, info.sha)
        weight_like = (
            ".safetensors",
            *PICKLE_SUFFIXES,
            ".index.json",
            ".gguf",
            ".onnx",
            ".h5",
            ".msgpack",
        )
        first = [n for n in sizes if not n.endswith(weight_like)]
        first += [n for n in (choice.index,) if n]
        for name in first:
            hf_hub_download(ref.repo_id, ref.path(name), revision=info.sha, token=token)
        for name in _needed(choice, root):
            if name not in first:
                hf_hub_download(ref.repo_id, ref.path(name), revision=info.sha, token=token)
    except SourceError:
        raise
    except Exception as e:
        raise _hub_error(e, ref, token) from e
    _remember_revision(ref, info.sha)
    return root
