"""Hugging Face Hub sources: inspect a repo by id, reading headers with range requests.

Everything goes through ``huggingface_hub`` (``HfApi.model_info`` for the commit and the file
listing, its HTTP session and ``hf_hub_url`` for byte ranges, ``hf_hub_download`` for small
files and the cache), so the endpoint, token, cache location, offline mode and proxies are the
library's. What tiecheck adds is *which* bytes to ask for: the index, each shard's header
(kilobytes), and only the byte ranges of tensors whose values must be compared; and a time limit
on every request (``hub_net``).

One run asks the Hub once what the revision is now (``model_info`` with file sizes: the commit
and every file), chooses files from that listing with ``discover.choose`` (as for a local
folder), and reads that commit: from the cache when it holds the commit's files, else remotely.
A remote repo is turned into the same ``Plan`` a local folder gives (the small files, config and
index, are downloaded into the Hub cache and are local paths; the weight files are read through
``RangeReader``), and ``load`` does the rest, so a repo and a local copy of it produce the same
findings.
"""

from __future__ import annotations

import posixpath
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tiecheck.errors import FormatError, SourceError
from tiecheck.model import Checkpoint, SourceKind
from tiecheck.readers.bytes import ByteSource, LocalFiles
from tiecheck.readers.discover import (
    PICKLE_SUFFIXES,
    Choice,
    FolderListing,
    choose,
    model_folders_hint,
    names_a_checkpoint_file,
)
from tiecheck.readers.hub_net import Limit, hub_timeout, limited, read_range
from tiecheck.readers.index_format import read_index, unsafe_shard_name
from tiecheck.readers.jsonfile import MAX_CONFIG_BYTES, read_json_file
from tiecheck.readers.load import load
from tiecheck.readers.safetensors_format import SafetensorsHeader, header_length, parse_header
from tiecheck.readers.tensor_data import CHUNK_BYTES
from tiecheck.units import human_bytes

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
FIRST_READ = 64 << 10
"""First range request per shard: holds the whole header of nearly every real file."""
PARALLEL_READS = 8
"""Concurrent range requests for ``RangeReader.read_many`` (a tensor's samples)."""
_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".json")
"""A path in a Hub URL ending like this names a file, not a folder."""


Opened = tuple[Checkpoint, ByteSource]
"""A checkpoint and the source of its bytes (close the source when done)."""


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
    if looks_local(name):
        return None
    if _REPO_ID.match(name) and ".." not in name and "--" not in name:
        return HubRef(name, revision or None)
    return None


_LOCAL_SUFFIXES = (
    *_FILE_SUFFIXES,
    ".gguf",
    ".onnx",
    ".h5",
    ".msgpack",
    ".npz",
    ".npy",
    ".txt",
    ".toml",
    ".yaml",
    ".yml",
)


def looks_local(source: str) -> bool:
    """A spelling only a path has, never a repo id: what it names is looked for on disk only.

    ``./x``, ``../x``, ``~/x``, absolute paths, backslashes, more than one ``/``, and a name
    ending like a file (``models/model.safetensors``, ``org/config.json``): sending these to
    the Hub would turn a mistyped path into a request (and, online, a misleading "repository
    not found")."""
    name = source.partition("@")[0] if not source.startswith(("/", "~", ".")) else source
    if not name or name.startswith(("/", "~", ".")) or "\\" in name or ":" in name:
        return True
    if name.count("/") != 1:
        return True
    if name.lower().endswith(_LOCAL_SUFFIXES):
        return True
    # 'fixtures/no-such-model' beside a local 'fixtures/' folder is a mistyped path, not a
    # repo of an organisation that happens to share the folder's name
    return _is_dir(name.split("/", 1)[0])


def _is_dir(name: str) -> bool:
    try:
        return Path(name).is_dir()
    except OSError:  # a name too long for the file system is no folder
        return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _hub_error(e: BaseException, ref: HubRef, token: str | None = None) -> SourceError:
    """One clear line for each way reaching a repo fails."""
    import httpx2
    from huggingface_hub import errors, get_token

    if isinstance(e, SourceError):  # already one line (a time limit that ran out, offline)
        return e
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


class RepoListing:
    """A repo revision's files under the source's subfolder, from one ``model_info`` answer
    (``files_metadata``: every file's path and size): the ``Listing`` that ``discover.choose``
    reads, and the sizes the loader asks for. Nothing else lists the repo."""

    def __init__(self, ref: HubRef, files: dict[str, int | None]) -> None:
        self._ref = ref
        self.repo_files = frozenset(files)
        """every file of the revision, by its path in the repo (not only the subfolder's)."""
        prefix = f"{ref.subfolder}/" if ref.subfolder else ""
        self._files = {p[len(prefix) :]: n for p, n in files.items() if p.startswith(prefix)}
        self.where = "repository"
        if ref.subfolder:
            self.where = f"folder {ref.subfolder!r} of the repository"

    @classmethod
    def from_info(cls, ref: HubRef, info: Any) -> RepoListing:
        files: dict[str, int | None] = {}
        for sibling in info.siblings or []:
            size = sibling.size
            if size is None and sibling.lfs is not None:
                size = sibling.lfs.size
            files[sibling.rfilename] = size
        return cls(ref, files)

    @property
    def empty(self) -> bool:
        return not self._files

    def names(self) -> set[str]:
        return {n for n in self._files if "/" not in n}

    def is_file(self, name: str) -> bool:
        return name in self._files

    def sniff(self, name: str) -> SourceKind | None:
        return None  # reading a file's first bytes would cost a request

    def hint(self, source: str) -> str:
        folders = {
            folder
            for folder, _, name in (n.partition("/") for n in self._files)
            if name and "/" not in name and names_a_checkpoint_file(name)
        }
        ref = self._ref
        root = f"hf://{ref.repo_id}{'@' + ref.revision if ref.revision else ''}/"
        return model_folders_hint(list(folders), lambda first: f"{root}{ref.path(first)}")

    def size(self, name: str) -> int | None:
        if unsafe_shard_name(name):
            return None
        return self._files.get(name)


class RangeReader:
    """Byte ranges of files in one repo commit, one ranged GET each through the library's
    session (``hub_net.read_range``); counts what it moves.

    ``transferred`` is every file byte fetched for this inspection: headers, tensor ranges, and
    the small files (config, index) when they were not already cached. The first time limit
    that runs out stops every read after it (no request waits again for a stalled Hub).
    """

    def __init__(
        self, ref: HubRef, commit: str, token: str | None, listing: RepoListing, limit: Limit
    ) -> None:
        from huggingface_hub.utils import build_hf_headers

        self._ref = ref
        self._commit = commit
        self._listing = listing
        self._limit = limit
        self._headers = build_hf_headers(token=token)
        self._lock = threading.Lock()
        self._pool: Any = None
        self._heads: dict[str, bytes] = {}
        """first reads fetched ahead by ``prefetch_headers``, until ``header`` takes them."""
        self._stopped: SourceError | None = None
        self.transferred = 0

    def _read(self, name: str, start: int, length: int) -> bytes:
        from huggingface_hub import hf_hub_url

        if self._stopped is not None:
            raise self._stopped
        url = hf_hub_url(self._ref.repo_id, self._ref.path(name), revision=self._commit)
        try:
            with limited(self._limit):
                data = read_range(url, self._headers, start, length, self._limit.seconds)
        except SourceError as e:  # a time limit ran out: nothing more is asked
            self._stopped = e
            raise
        with self._lock:
            self.transferred += len(data)
        return data

    preferred_read = CHUNK_BYTES
    """each read is a range request (two, with the Hub's redirect): fewer, larger ones."""

    def read(self, name: str, start: int, length: int) -> bytes:
        """Tensor bytes (``ByteSource``): a failure of one read is an ``OSError`` (a TC001
        finding); a stalled Hub (``HubTimeout``) stops the run."""
        try:
            return self._read(name, start, length)
        except (OSError, SourceError):
            raise
        except Exception as e:  # httpx2 transport errors and HTTP errors are not OSErrors
            raise OSError(f"{name}: {type(e).__name__}: {_first_line(e)}") from e

    def read_many(self, reads: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Several ``(name, start, length)`` ranges, requested concurrently (a round trip per
        request is what remote sampling costs; the bytes are the same)."""
        if len(reads) <= 1:
            return [self.read(*read) for read in reads]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=PARALLEL_READS)
        return list(self._pool.map(lambda read: self.read(*read), reads))

    def readinto(self, name: str, start: int, buffer: memoryview) -> None:
        buffer[:] = self.read(name, start, len(buffer))

    def file_size(self, name: str) -> int | None:
        """The size the repository lists for ``name`` (None: no such file)."""
        return self._listing.size(name)

    def size(self, name: str) -> int:
        size = self._listing.size(name)
        if size is None:
            raise OSError(f"{name}: not in the repository")
        return size

    def holes(self, name: str, start: int, end: int) -> Iterator[tuple[int, int]]:
        return iter(())  # a repository's files are not known to have holes

    def mapped(self, name: str, start: int, length: int) -> Any:
        raise OSError(f"{name}: a remote file cannot be mapped (strided views are local only)")

    @property
    def bytes_transferred(self) -> int | None:
        return self.transferred

    def prefetch_headers(self, names: list[str]) -> None:
        """The first read of each of these files, all at once: a repo of many shards then
        costs one round trip for its headers, not one per shard. Best effort: a failure here
        is met again, and reported, by ``header`` (a stalled Hub is not asked twice)."""
        reads = []
        for name in dict.fromkeys(names):
            size = self._listing.size(name)
            if size is not None and size >= 8 and name.endswith(".safetensors"):
                reads.append((name, 0, min(size, FIRST_READ)))
        try:
            for (name, _, _), data in zip(reads, self.read_many(reads)):
                self._heads[name] = data
        except SourceError:
            raise
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

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _is_pickled(choice: Choice) -> bool:
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


def _needed(choice: Choice, root: Path) -> list[str]:
    """Every file a loader of this choice reads (shards from the index, when it is at hand)."""
    names = [n for n in (choice.index, choice.config, choice.adapter_config) if n]
    names += choice.weights
    if choice.index and (root / choice.index).is_file():
        folder = posixpath.dirname(choice.index)
        names += [posixpath.join(folder, s) for s in _index_shards(root / choice.index)]
    return names


class _CachedListing(FolderListing):
    """A cached snapshot folder, judged by the repo listing ``snapshot_download`` cached with
    it when there is one (a partial snapshot then lacks files the listing names)."""

    def __init__(self, folder: Path, names: set[str] | None) -> None:
        super().__init__(folder)
        self._listed = names

    def names(self) -> set[str]:
        return super().names() if self._listed is None else set(self._listed)

    def is_file(self, name: str) -> bool:
        if self._listed is not None and "/" not in name:
            return name in self._listed
        return super().is_file(name)


def _cached_snapshot(ref: HubRef) -> tuple[Path, Choice, str] | None:
    """The cached snapshot the revision resolves to *locally* (a branch through the cache's
    ``refs/``), if it holds every file a loader would read: (folder, choice, commit).

    For offline runs and an unreachable Hub only: online, the revision is resolved by the
    Hub first, and only that commit's snapshot is used (``load_hub``).
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
    names: set[str] | None
    try:
        listed = get_cached_repo_tree(ref.repo_id, revision=ref.revision)
        prefix = f"{ref.subfolder}/" if ref.subfolder else ""
        names = {
            f.path[len(prefix) :]
            for f in listed
            if f.path.startswith(prefix) and "/" not in f.path[len(prefix) :]
        }
    except Exception:  # no cached listing: judge by the folder
        names = None
    try:
        choice = choose(_CachedListing(folder, names), str(ref), ref.filename)
    except SourceError:
        return None
    if all((folder / n).is_file() for n in _needed(choice, folder)):
        return folder, choice, snapshot.name
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


def _unreachable(e: BaseException) -> bool:
    """The Hub cannot be reached at all (refused, no route, no name): the library then falls
    back on its cache, and so does tiecheck. A Hub that answers nothing in time is not
    unreachable: that is a ``HubTimeout``, an error."""
    import httpx2

    return isinstance(e, (httpx2.ConnectError, httpx2.UnsupportedProtocol)) and not isinstance(
        e, httpx2.ConnectTimeout
    )


def _resolve(
    ref: HubRef, token: str | None, limit: Limit
) -> tuple[str, RepoListing] | BaseException:
    """Ask the Hub once what the revision is now: its commit and every file with its size (one
    ``model_info`` request). Returns the error when the Hub cannot be reached at all."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(token=token).model_info(
            ref.repo_id, revision=ref.revision, files_metadata=True, timeout=limit.seconds
        )
    except SourceError:
        raise
    except Exception as e:
        if _unreachable(e):
            return e
        raise _hub_error(e, ref, token) from e
    listing = RepoListing.from_info(ref, info)
    if ref.subfolder and listing.empty:
        raise SourceError(f"{ref}: no such file or folder in the repository")
    return str(info.sha), listing


def _cached(checkpoint: Checkpoint, ref: HubRef, commit: str, note: str) -> Opened:
    """A checkpoint read from files in the Hub cache, as the repo it came from."""
    checkpoint = replace(
        checkpoint,
        source=str(ref),
        origin="hub-cache",
        commit=commit,
        notes=(*checkpoint.notes, note),
        transferred=0,
    )
    return checkpoint, LocalFiles.of(checkpoint)


def _from_cache(ref: HubRef, base: Path | None, why: str) -> Opened:
    """Read the snapshot the revision resolves to in the cache, without the Hub."""
    cached = _cached_snapshot(ref)
    if cached is None:
        raise SourceError(
            f"{ref}: the Hugging Face cache does not hold this revision's weights, and {why}"
        )
    folder, choice, commit = cached
    note = (
        f"read from the Hugging Face cache: {folder} (commit {commit}, what "
        f"{ref.revision or 'main'!r} pointed to when it was cached; {why}, so not checked "
        "against the Hub)"
    )
    return _cached(load(choice.plan(str(ref), folder), base=base), ref, commit, note)


def _offline_reason(offline: bool) -> str | None:
    from huggingface_hub import constants

    if offline:
        return "--offline was given"
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    return None


def load_hub(
    ref: HubRef,
    *,
    token: str | None = None,
    download: bool = False,
    base: Path | None = None,
    timeout: float | None = None,
    offline: bool = False,
) -> Opened:
    """Read a Hub repo at the commit its revision points to now: from the cache when it holds
    that commit, else with range requests. Offline, from the commit the cache resolves it to.

    Every request is bounded by ``timeout`` (``hub_timeout``); the first that runs out stops
    the run with ``HubTimeout``.
    """
    reason = _offline_reason(offline)
    limit = Limit(str(ref), hub_timeout(timeout), offline=reason is not None)
    with limited(limit):
        if reason is not None:
            return _from_cache(ref, base, reason)
        resolved = _resolve(ref, token, limit)
        if isinstance(resolved, BaseException):
            cause = resolved.__cause__ or resolved
            why = f"the Hub cannot be reached at {_endpoint()} ({_first_line(cause)})"
            try:
                return _from_cache(ref, base, why)
            except SourceError:
                raise _hub_error(resolved, ref, token) from resolved
        commit, listing = resolved
        choice = choose(listing, str(ref), ref.filename)
        _remember_revision(ref, commit)
        root = _snapshot_root(ref, commit)
        present = [n for n in _needed(choice, root) if listing.is_file(n)]
        if all((root / n).is_file() for n in present):
            note = (
                f"read from the Hugging Face cache: {root} (commit {commit}, what "
                f"{ref.revision or 'main'!r} points to on the Hub now)"
            )
            return _cached(load(choice.plan(str(ref), root), base=base), ref, commit, note)
        return _load_remote(ref, token, download, base, limit, commit, listing, choice)


def _sibling_base_config(ref: HubRef, listing: RepoListing, adapter_config: Path) -> str | None:
    """The repo path of the base model's config.json when an adapter names its base by a
    relative path inside the same repository (``../base``); None otherwise."""
    try:
        data, _ = read_json_file(adapter_config, max_bytes=MAX_CONFIG_BYTES)
    except (FormatError, OSError):
        return None
    base = data.get("base_model_name_or_path") if isinstance(data, dict) else None
    if not isinstance(base, str) or not base or base.startswith("/") or "\0" in base:
        return None
    path = posixpath.normpath(posixpath.join(ref.subfolder, base, "config.json"))
    if path.startswith("../") or path not in listing.repo_files:
        return None
    return path


def _load_remote(
    ref: HubRef,
    token: str | None,
    download: bool,
    base: Path | None,
    limit: Limit,
    commit: str,
    listing: RepoListing,
    choice: Choice,
) -> Opened:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    root = _snapshot_root(ref, commit)
    reader = RangeReader(ref, commit, token, listing, limit)

    def fetch(name: str, repo_path: str | None = None) -> Path:
        """A small or downloaded file, into the Hub cache (counted when it moved); ``name``
        is relative to the subfolder, unless ``repo_path`` gives the path in the repo."""
        repo_path = repo_path or ref.path(name)
        was_cached = isinstance(
            try_to_load_from_cache(ref.repo_id, repo_path, revision=commit), str
        )
        path = Path(
            hf_hub_download(
                ref.repo_id, repo_path, revision=commit, token=token, etag_timeout=limit.seconds
            )
        )
        if not was_cached:
            reader.transferred += path.stat().st_size
        return path

    small = [n for n in (choice.index, choice.config, choice.adapter_config) if n]
    try:
        for name in small:
            fetch(name)
        if choice.adapter_config:
            sibling = _sibling_base_config(ref, listing, root / choice.adapter_config)
            if sibling is not None:  # the adapter's base is a folder of the same repo
                fetch(sibling, repo_path=sibling)
    except Exception as e:
        raise _hub_error(e, ref, token) from e

    if _is_pickled(choice):
        needed = [n for n in _needed(choice, root) if n not in small]
        total = sum(listing.size(n) or 0 for n in needed)
        if not download:
            shown = needed or [n for n in small if n.endswith(".index.json")]
            listed = ", ".join(shown[:3]) + (
                f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            )
            raise SourceError(
                f"{ref}: only PyTorch pickle weights ({listed}, {human_bytes(total)}); pickles "
                "must be downloaded to be inspected: rerun with --download"
            )
        try:
            for name in needed:
                if listing.size(name) is not None:
                    fetch(name)
        except Exception as e:
            raise _hub_error(e, ref, token) from e
        note = (
            f"pickle weights downloaded into the Hugging Face cache ({human_bytes(total)}): {root} "
            f"(commit {commit})"
        )
        checkpoint, files = _cached(load(choice.plan(str(ref), root), base=base), ref, commit, note)
        return replace(checkpoint, transferred=reader.transferred), files

    try:
        reader.prefetch_headers(_needed(choice, root))
        checkpoint = load(choice.plan(str(ref), root), base=base, remote=reader)
    except _RemoteError as e:
        reader.close()
        raise _hub_error(e.error, ref, token) from e.error
    except BaseException:
        reader.close()
        raise
    note = f"read from the Hub: {ref.repo_id} at commit {commit}"
    checkpoint = replace(checkpoint, origin="hub", commit=commit, notes=(*checkpoint.notes, note))
    return checkpoint, reader


_WEIGHT_LIKE = (*_FILE_SUFFIXES[:-1], ".index.json", ".gguf", ".onnx", ".h5", ".msgpack")


def download_snapshot(
    ref: HubRef,
    *,
    token: str | None = None,
    timeout: float | None = None,
    offline: bool = False,
) -> Path:
    """Download what ``fix`` reads from a repo revision into the Hub cache: the weights a
    loader would use (chosen as ``inspect`` chooses them), their index and config, and the
    folder's small non-weight files (tokenizer, generation config) that come along. Offline,
    the cached snapshot the revision resolves to, when it holds all of that."""
    from huggingface_hub import hf_hub_download

    reason = _offline_reason(offline)
    limit = Limit(str(ref), hub_timeout(timeout), offline=reason is not None)
    with limited(limit):
        if reason is not None:
            cached = _cached_snapshot(ref)
            if cached is None:
                raise SourceError(
                    f"{ref}: the Hugging Face cache does not hold this revision's weights, "
                    f"and {reason}"
                )
            return cached[0]
        resolved = _resolve(ref, token, limit)
        if isinstance(resolved, BaseException):
            raise _hub_error(resolved, ref, token) from resolved
        commit, listing = resolved
        choice = choose(listing, str(ref), ref.filename)
        root = _snapshot_root(ref, commit)
        try:

            def fetch(name: str) -> None:
                hf_hub_download(
                    ref.repo_id,
                    ref.path(name),
                    revision=commit,
                    token=token,
                    etag_timeout=limit.seconds,
                )

            first = [n for n in listing.names() if not n.endswith(_WEIGHT_LIKE)]
            first += [n for n in (choice.index,) if n]
            for name in first:
                fetch(name)
            for name in _needed(choice, root):  # reads the index fetched above for the shards
                if name not in first and listing.is_file(name):
                    fetch(name)
        except SourceError:
            raise
        except Exception as e:
            raise _hub_error(e, ref, token) from e
        _remember_revision(ref, commit)
        return root
