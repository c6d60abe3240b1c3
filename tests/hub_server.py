"""A small stand-in for the Hugging Face Hub, serving model repos from folders on disk.

It answers exactly the requests ``huggingface_hub`` 2.4 makes for ``HfApi.model_info`` /
``repo_info``, ``HfApi.list_repo_tree`` (with ``Link`` pagination), ``HfApi.get_paths_info``,
``hf_hub_download`` / ``snapshot_download`` (``HEAD`` + ``GET`` on ``/resolve/``) and
``HfFileSystem`` range reads, the way the real Hub does:

* ``/{org}/{name}/resolve/{rev}/{path}``: small (git) files are served directly with ``ETag``
  (the git blob id), ``X-Repo-Commit``, ``Accept-Ranges`` and ``Content-Range`` on ranges;
  LFS files (weights) answer ``302`` to a signed "CDN" URL on another host (``localhost``
  instead of ``127.0.0.1``, both loopback) with ``X-Linked-Etag`` (sha256) and
  ``X-Linked-Size``, so the client drops its ``Authorization`` header on the way, as it must.
* errors carry the ``X-Error-Code`` the client maps to exceptions: ``RepoNotFound`` (401
  without a token, 404 with one; also for private repos the token cannot read),
  ``GatedRepo`` (401 without a token, 403 with one not on the list; metadata and listings of a
  gated repo stay public, as on the Hub), ``RevisionNotFound`` and ``EntryNotFound``.

Every request is logged (method, host, path, ``Range``, status, body bytes, and for file
bodies the byte span served), so tests can assert what went over the wire. ``loopback_only``
makes any connection attempt to a non-loopback address fail loudly.

Use::

    with HubServer() as hub:
        hub.add_repo("org/model", folder)               # branch "main"
        hub.add_repo("org/gated", folder, gated=True, tokens={"hf_ok"})
        os.environ["HF_ENDPOINT"] = hub.endpoint       # and huggingface_hub.constants.ENDPOINT
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
LFS_MIN_SIZE = 10 << 20
"""Files this large are LFS whatever their name (the Hub refuses larger plain git blobs)."""
REAL_SHA256_LIMIT = 256 << 20
"""Larger files get a stable fake sha256 (hashing multi-GB sparse files would dominate)."""
SEND_CHUNK = 1 << 20
STALL_LIMIT = 60.0
"""A stalled handler gives up after this long even if the server is not stopped."""


# ---------------------------------------------------------------------------------------------
# repos


@dataclass
class Repo:
    repo_id: str
    branches: dict[str, Path]
    """branch or tag name -> folder holding that revision's files."""
    private: bool = False
    gated: bool = False
    tokens: frozenset[str] = frozenset()
    """tokens that may read a private repo, or that have accepted a gated repo's terms."""
    commits: dict[str, str] = field(default_factory=dict)
    """branch -> commit sha (40 hex), derived from the repo id and branch name."""
    history: dict[str, Path] = field(default_factory=dict)
    """commits branches pointed to before they moved (still readable by sha)."""

    def resolve(self, revision: str) -> tuple[str, Path] | None:
        """A branch name or commit sha -> (commit sha, folder)."""
        if revision in self.branches:
            return self.commits[revision], self.branches[revision]
        for branch, sha in self.commits.items():
            if revision == sha:
                return sha, self.branches[branch]
        if revision in self.history:
            return revision, self.history[revision]
        return None


@dataclass(frozen=True)
class FileMeta:
    size: int
    lfs: bool
    blob_id: str
    """git blob sha1 (for LFS files: of the pointer file)."""
    sha256: str | None


@dataclass
class Record:
    method: str
    host: str
    path: str
    """decoded path, no query string."""
    query: str
    range: str | None
    status: int = 0
    body_bytes: int = 0
    kind: str = "other"
    """'api', 'resolve', 'cdn' or 'other'."""
    repo: str | None = None
    file: str | None = None
    """repo-relative path of a file whose bytes were sent."""
    span: tuple[int, int] | None = None
    """[start, end) of the file bytes sent (GET with a body only)."""
    authorized: bool = False


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode()


class HubState:
    """Repos, the request log and file metadata, shared by the handler threads."""

    def __init__(self, page_size: int = 1000) -> None:
        self.repos: dict[str, Repo] = {}
        self.page_size = page_size
        self.log: list[Record] = []
        self.lock = threading.Lock()
        self.secret = os.urandom(16)
        self.fault: Callable[[Record], int | None] | None = None
        """tests: an HTTP status to answer a request with instead of serving it."""
        self.stall: Callable[[Record], str | None] | None = None
        """tests: 'silent' (read the request, never answer) or 'body' (send the headers and
        part of the body, then nothing) for the requests it picks; None serves normally."""
        self.release = threading.Event()
        self.ignore_range: Callable[[Record], bool] | None = None
        """tests: answer these requests with the whole file (200), as a server that does not
        do ranges would."""
        """set when the server stops: stalled handlers then give up (and close)."""
        self._meta: dict[tuple[str, int, int], FileMeta] = {}

    def meta(self, path: Path) -> FileMeta:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        cached = self._meta.get(key)
        if cached is not None:
            return cached
        lfs = path.name.endswith(LFS_SUFFIXES) or st.st_size >= LFS_MIN_SIZE
        if lfs:
            if st.st_size <= REAL_SHA256_LIMIT:
                h = hashlib.sha256()
                with path.open("rb") as f:
                    while chunk := f.read(SEND_CHUNK):
                        h.update(chunk)
                sha256 = h.hexdigest()
            else:
                sha256 = hashlib.sha256(
                    f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()
                ).hexdigest()
            meta = FileMeta(
                st.st_size, True, _git_blob_sha1(_lfs_pointer(sha256, st.st_size)), sha256
            )
        else:
            meta = FileMeta(st.st_size, False, _git_blob_sha1(path.read_bytes()), None)
        self._meta[key] = meta
        return meta

    def sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), "sha256").hexdigest()[:32]


def _files(folder: Path) -> list[str]:
    """Repo-relative paths of every file under ``folder`` (posix separators), sorted."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        rel = Path(root).relative_to(folder)
        out += [(rel / n).as_posix() for n in names]
    return sorted(out)


def _safe_relpath(path: str) -> str | None:
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or path.startswith("/"):
        return None
    return path


def _kind(seg: list[str]) -> str:
    if len(seg) >= 4 and seg[0] == "api" and seg[1] == "models":
        return "api"
    if len(seg) >= 5 and seg[2] == "resolve":
        return "resolve"
    if len(seg) >= 2 and seg[0] == "cdn":
        return "cdn"
    return "control" if seg[:1] == ["_stats"] else "other"


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``bytes=a-b`` -> [start, end); None for no (or an unusable) header; 'unsatisfiable'."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size) if n > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, min(end, size)


# ---------------------------------------------------------------------------------------------
# the handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY every small keep-alive
    # response waits ~40 ms on the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def state(self) -> HubState:
        return self.server.state

    def _start(self) -> tuple[Record, list[str], dict[str, list[str]]]:
        url = urlsplit(self.path)
        raw_segments = url.path.split("/")[1:]
        record = Record(
            method=self.command,
            host=self.headers.get("Host", ""),
            path=unquote(url.path),
            query=url.query,
            range=self.headers.get("Range"),
            kind=_kind(raw_segments),
        )
        with self.state.lock:
            self.state.log.append(record)
        return record, raw_segments, parse_qs(url.query)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    def _send(
        self,
        record: Record,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            # Counted before the write: once the client holds the bytes, the log says so.
            record.body_bytes = len(body)
            try:
                self.wfile.write(body)
            except OSError:
                record.body_bytes = 0
                raise

    def _json(self, record: Record, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(record, 200, json.dumps(value).encode(), headers)

    def _error(
        self,
        record: Record,
        status: int,
        code: str | None,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        extra = {"X-Error-Message": message, **(headers or {})}
        if code:
            extra["X-Error-Code"] = code
        self._send(record, status, json.dumps({"error": message}).encode(), extra)

    def _access(self, record: Record, repo_id: str, *, files: bool) -> Repo | None:
        """The repo if this request may see it; else answers the error and returns None."""
        token = self._token()
        repo = self.state.repos.get(repo_id)
        record.repo = repo_id
        allowed = repo is not None and token is not None and token in repo.tokens
        record.authorized = allowed
        if repo is None or (repo.private and not allowed):
            self._error(
                record,
                404 if token else 401,
                "RepoNotFound",
                "Repository not found",
            )
            return None
        if repo.gated and files and not allowed:
            if token is None:
                message = (
                    f"Access to model {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                self._error(record, 401, "GatedRepo", message)
            else:
                message = (
                    f"Access to model {repo_id} is restricted and you are not in the authorized "
                    "list. Visit https://huggingface.co/{repo_id} to ask for access."
                )
                self._error(record, 403, "GatedRepo", message)
            return None
        return repo

    def _revision(self, record: Record, repo: Repo, revision: str) -> tuple[str, Path] | None:
        found = repo.resolve(revision)
        if found is None:
            self._error(record, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return found

    # --- verbs ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        record, seg, query = self._start()
        if self.server.latency and record.kind != "control":
            time.sleep(self.server.latency)  # a network's round trip, per request
        stall = self.state.stall(record) if self.state.stall else None
        if stall == "silent":
            self.state.release.wait(STALL_LIMIT)
            self.close_connection = True
            return
        fault = self.state.fault(record) if self.state.fault else None
        if fault is not None:
            self._error(record, fault, None, "Injected failure")
            return
        try:
            if self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode()) if length else {}
            else:
                form = {}
            if record.kind == "api":
                self._api(record, [unquote(s) for s in seg[2:4]], seg[4:], query, form)
            elif record.kind == "resolve":
                self._resolve(record, f"{unquote(seg[0])}/{unquote(seg[1])}", seg[3:])
            elif record.kind == "cdn":
                self._cdn(record, seg[1:], query)
            elif record.kind == "control":
                self._stats(record, reset=self.command == "POST")
            else:
                self._error(record, 404, None, "Sorry, we can't find the page you are looking for.")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- /_stats (GET: counters; POST: clear the log), for a server in another process -----

    def _stats(self, record: Record, reset: bool) -> None:
        with self.state.lock:
            log = [r for r in self.state.log if r.kind != "control"]
            if reset:
                self.state.log.clear()
        by_kind: dict[str, int] = {}
        for r in log:
            by_kind[r.kind] = by_kind.get(r.kind, 0) + r.body_bytes
        weights = [r for r in log if r.file and r.file.endswith(LFS_SUFFIXES) and r.span]
        self._json(
            record,
            {
                "requests": len(log),
                "bytes": sum(r.body_bytes for r in log),
                "bytes_by_kind": by_kind,
                "file_bytes": sum(r.body_bytes for r in log if r.file and r.span),
                "weight_bytes": sum(r.body_bytes for r in weights),
                "weight_requests": len(weights),
                "weight_files": len({(r.repo, r.file) for r in weights}),
            },
        )

    # --- /api/models/{org}/{name}[/revision/{rev} | /tree/{rev}[/{path}] | /paths-info/{rev}]

    def _api(
        self,
        record: Record,
        org_name: list[str],
        rest: list[str],
        query: dict[str, list[str]],
        form: dict[str, list[str]],
    ) -> None:
        repo_id = "/".join(org_name)
        repo = self._access(record, repo_id, files=False)
        if repo is None:
            return
        if not rest and self.command == "GET":
            return self._model_info(record, repo, "main", query)
        if len(rest) == 2 and rest[0] == "revision" and self.command == "GET":
            return self._model_info(record, repo, unquote(rest[1]), query)
        if len(rest) >= 2 and rest[0] == "tree" and self.command == "GET":
            path = unquote("/".join(rest[2:]))
            return self._tree(record, repo, unquote(rest[1]), path, query)
        if len(rest) == 2 and rest[0] == "paths-info" and self.command == "POST":
            return self._paths_info(record, repo, unquote(rest[1]), form)
        self._error(record, 404, None, "Not found")

    def _entry(self, folder: Path, rel: str, expand: bool) -> dict[str, Any]:
        path = folder / rel
        if path.is_dir():
            return {
                "type": "directory",
                "oid": hashlib.sha1(rel.encode()).hexdigest(),
                "path": rel,
            }
        meta = self.state.meta(path)
        out: dict[str, Any] = {"type": "file", "oid": meta.blob_id, "size": meta.size, "path": rel}
        if meta.lfs:
            pointer = _lfs_pointer(meta.sha256 or "", meta.size)
            out["lfs"] = {"oid": meta.sha256, "size": meta.size, "pointerSize": len(pointer)}
        if expand:
            out["lastCommit"] = {
                "id": "0" * 40,
                "title": "initial commit",
                "date": "2026-01-01T00:00:00.000Z",
            }
        return out

    def _model_info(
        self, record: Record, repo: Repo, revision: str, query: dict[str, list[str]]
    ) -> None:
        found = self._revision(record, repo, revision)
        if found is None:
            return
        sha, folder = found
        blobs = query.get("blobs", ["False"])[0].lower() == "true"
        siblings = []
        for rel in _files(folder):
            sibling: dict[str, Any] = {"rfilename": rel}
            if blobs:
                entry = self._entry(folder, rel, False)
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if "lfs" in entry:
                    sibling["lfs"] = {
                        "size": entry["lfs"]["size"],
                        "sha256": entry["lfs"]["oid"],
                        "pointerSize": entry["lfs"]["pointerSize"],
                    }
            siblings.append(sibling)
        self._json(
            record,
            {
                "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": sha,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "private": repo.private,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": ["safetensors"],
                "library_name": "transformers",
                "siblings": siblings,
            },
        )

    def _tree(
        self,
        record: Record,
        repo: Repo,
        revision: str,
        path: str,
        query: dict[str, list[str]],
    ) -> None:
        found = self._revision(record, repo, revision)
        if found is None:
            return
        sha, folder = found
        path = path.strip("/")
        target = folder / path if path else folder
        if path and (_safe_relpath(path) is None or not target.is_dir()):
            self._error(
                record,
                404,
                "EntryNotFound",
                f"{path} does not exist on {revision!r}",
                {"X-Repo-Commit": sha},
            )
            return
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        expand = query.get("expand", ["False"])[0].lower() == "true"
        prefix = f"{path}/" if path else ""
        entries: list[str] = []
        for root, dirs, names in os.walk(target):
            dirs.sort()
            rel_root = Path(root).relative_to(folder).as_posix()
            rel_root = "" if rel_root == "." else rel_root + "/"
            entries += [rel_root + d for d in dirs if d != ".git"]
            entries += [rel_root + n for n in sorted(names)]
            if not recursive:
                break
            dirs[:] = [d for d in dirs if d != ".git"]
        entries = [e for e in entries if e.startswith(prefix)]
        cursor = int(query.get("cursor", ["0"])[0])
        page_size = self.state.page_size if not expand else min(self.state.page_size, 50)
        page = entries[cursor : cursor + page_size]
        headers = {"X-Repo-Commit": sha}
        if cursor + page_size < len(entries):
            params = {k: v[0] for k, v in query.items()}
            params["cursor"] = str(cursor + page_size)
            host = self.headers.get("Host", "127.0.0.1")
            raw_path = urlsplit(self.path).path
            headers["Link"] = f'<http://{host}{raw_path}?{urlencode(params)}>; rel="next"'
        self._json(record, [self._entry(folder, e, expand) for e in page], headers)

    def _paths_info(
        self, record: Record, repo: Repo, revision: str, form: dict[str, list[str]]
    ) -> None:
        found = self._revision(record, repo, revision)
        if found is None:
            return
        _, folder = found
        expand = form.get("expand", ["False"])[0].lower() == "true"
        out = []
        for path in form.get("paths", []):
            rel = _safe_relpath(path.strip("/"))
            if rel is not None and (folder / rel).exists():
                out.append(self._entry(folder, rel, expand))
        self._json(record, out)

    # --- /{org}/{name}/resolve/{rev}/{path} ---------------------------------------------------

    def _resolve(self, record: Record, repo_id: str, rest: list[str]) -> None:
        if self.command not in ("GET", "HEAD"):
            return self._error(record, 405, None, "Method not allowed")
        repo = self._access(record, repo_id, files=True)
        if repo is None:
            return
        revision = unquote(rest[0])
        found = self._revision(record, repo, revision)
        if found is None:
            return
        sha, folder = found
        rel = _safe_relpath(unquote("/".join(rest[1:])))
        path = folder / rel if rel else None
        if path is None or not path.is_file():
            self._error(
                record,
                404,
                "EntryNotFound",
                "Entry not found",
                {"X-Repo-Commit": sha},
            )
            return
        meta = self.state.meta(path)
        common = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if meta.lfs and self.server.lfs_redirect:
            target = f"{repo.repo_id}/{sha}/{rel}"
            location = (
                f"http://localhost:{self.server.server_address[1]}/cdn/"
                f"{quote(target)}?sig={self.state.sign(target)}"
            )
            headers = {
                **common,
                "ETag": f'"{meta.blob_id}"',
                "X-Linked-Etag": f'"{meta.sha256}"',
                "X-Linked-Size": str(meta.size),
                "Location": location,
            }
            self._send(record, 302, b"", headers, content_type="text/plain; charset=utf-8")
            return
        etag = meta.sha256 if meta.lfs else meta.blob_id
        headers = {**common, "ETag": f'"{etag}"'}
        if meta.lfs:
            headers.update({"X-Linked-Etag": f'"{meta.sha256}"', "X-Linked-Size": str(meta.size)})
        self._file(record, repo.repo_id, rel, path, meta.size, headers)

    # --- /cdn/{org}/{name}/{sha}/{path}?sig=... (the "other host" LFS files redirect to) ------

    def _cdn(self, record: Record, rest: list[str], query: dict[str, list[str]]) -> None:
        target = unquote("/".join(rest))
        sig = query.get("sig", [""])[0]
        if not hmac.compare_digest(sig, self.state.sign(target)):
            return self._error(record, 403, None, "Signature does not match")
        parts = target.split("/")
        if len(parts) < 4:
            return self._error(record, 404, None, "Not found")
        repo_id, sha, rel = "/".join(parts[:2]), parts[2], "/".join(parts[3:])
        repo = self.state.repos.get(repo_id)
        found = repo.resolve(sha) if repo else None
        if found is None or _safe_relpath(rel) is None or not (found[1] / rel).is_file():
            return self._error(record, 404, None, "Not found")
        path = found[1] / rel
        meta = self.state.meta(path)
        record.repo = repo_id
        self._file(record, repo_id, rel, path, meta.size, {"ETag": f'"{meta.sha256}"'})

    def _file(
        self,
        record: Record,
        repo_id: str,
        rel: str,
        path: Path,
        size: int,
        headers: dict[str, str],
    ) -> None:
        """Send a file or the byte range asked for, from disk (holes read as zeros)."""
        wanted = _parse_range(self.headers.get("Range"), size)
        if self.state.ignore_range and self.state.ignore_range(record):
            wanted = None
        if wanted == "unsatisfiable":
            self._error(
                record, 416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{size}"}
            )
            return
        start, end = wanted if isinstance(wanted, tuple) else (0, size)
        status = 206 if isinstance(wanted, tuple) else 200
        record.status, record.repo, record.file = status, repo_id, rel
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        record.span = (start, start)
        if self.state.stall and self.state.stall(record) == "body":
            # half of what was promised, then silence: the client waits for the rest
            half = (end - start) // 2
            with path.open("rb") as f:
                f.seek(start)
                self.wfile.write(f.read(half))
            self.wfile.flush()
            record.body_bytes, record.span = half, (start, start + half)
            self.state.release.wait(STALL_LIMIT)
            self.close_connection = True
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(SEND_CHUNK, end - pos), pos)
                if not chunk:
                    raise ConnectionResetError("file shrank while being served")
                # Counted before the write: once the client holds the bytes, the log says so.
                record.body_bytes, record.span = pos + len(chunk) - start, (start, pos + len(chunk))
                try:
                    self.wfile.write(chunk)
                except OSError:
                    record.body_bytes, record.span = pos - start, (start, pos)
                    raise
                pos += len(chunk)
        finally:
            os.close(fd)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, state: HubState, lfs_redirect: bool, latency: float = 0.0) -> None:
        self.state = state
        self.lfs_redirect = lfs_redirect
        self.latency = latency
        self.connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive client connections, so a stopped server really is unreachable."""
        with self._conn_lock:
            conns = list(self.connections)
            self.connections.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------------------------
# the public object


class HubServer:
    """A threaded Hub stand-in on 127.0.0.1, on a free port; ``stop()`` makes it unreachable."""

    def __init__(
        self, *, page_size: int = 1000, lfs_redirect: bool = True, latency: float = 0.0
    ) -> None:
        """``latency``: seconds every request waits before it is answered (a network RTT)."""
        self.state = HubState(page_size)
        self._lfs_redirect = lfs_redirect
        self._latency = latency
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # lifecycle
    def start(self) -> HubServer:
        self._server = _Server(self.state, self._lfs_redirect, self._latency)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.release.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}"

    # repos
    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        private: bool = False,
        gated: bool = False,
        tokens: set[str] | frozenset[str] = frozenset(),
        branches: dict[str, Path] | None = None,
    ) -> Repo:
        """Serve ``folder`` as branch ``main`` of ``repo_id`` (plus any other ``branches``)."""
        all_branches = {"main": Path(folder), **(branches or {})}
        repo = Repo(repo_id, all_branches, private, gated, frozenset(tokens))
        repo.commits = {
            name: hashlib.sha1(f"{repo_id}@{name}".encode()).hexdigest() for name in all_branches
        }
        self.state.repos[repo_id] = repo
        return repo

    def commit(self, repo_id: str, branch: str = "main") -> str:
        return self.state.repos[repo_id].commits[branch]

    def move_branch(self, repo_id: str, folder: Path, branch: str = "main") -> str:
        """Point ``branch`` at a new commit holding ``folder``'s files (a push); its sha."""
        repo = self.state.repos[repo_id]
        repo.history[repo.commits[branch]] = repo.branches[branch]
        sha = hashlib.sha1(f"{repo_id}@{branch}:{folder}".encode()).hexdigest()
        repo.branches[branch], repo.commits[branch] = Path(folder), sha
        return sha

    # the log
    @property
    def log(self) -> list[Record]:
        with self.state.lock:
            return list(self.state.log)

    def clear_log(self) -> None:
        with self.state.lock:
            self.state.log.clear()

    def file_reads(self, repo_id: str | None = None) -> list[Record]:
        """GETs that sent file bytes (resolve or cdn), in order."""
        return [
            r
            for r in self.log
            if r.file is not None
            and r.method == "GET"
            and r.span is not None
            and (repo_id is None or r.repo == repo_id)
        ]

    def bytes_sent(self, kind: str | None = None) -> int:
        """Body bytes of every response (of one ``kind`` when given)."""
        return sum(r.body_bytes for r in self.log if kind is None or r.kind == kind)

    def file_bytes_sent(self, repo_id: str | None = None) -> int:
        return sum(r.body_bytes for r in self.file_reads(repo_id))

    def summary(self) -> str:
        lines = []
        for r in self.log:
            lines.append(
                f"{r.method:4} {r.status} {r.kind:7} {r.path} range={r.range} bytes={r.body_bytes}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# keeping every connection on loopback


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class NonLoopbackConnection(AssertionError):
    pass


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Fail any connect() or name lookup that would leave 127.0.0.0/8 / ::1 (this process)."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(str(address[0])):
            raise NonLoopbackConnection(f"test tried to connect to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return original_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host is not None and not _is_loopback(str(host)):
            raise NonLoopbackConnection(f"test tried to resolve {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = original_getaddrinfo  # type: ignore[assignment]


_PROCESS_GUARD: list[contextlib.AbstractContextManager[None]] = []


def install_loopback_guard() -> None:
    """For child processes (via a ``sitecustomize``): the guard for the whole process."""
    guard = loopback_only()
    guard.__enter__()
    _PROCESS_GUARD.append(guard)  # a collected generator would run its ``finally`` and undo it


def hub_environment(endpoint: str, home: Path) -> dict[str, str]:
    """Environment variables that point ``huggingface_hub`` at ``endpoint`` with an isolated
    cache and no token, proxy or telemetry; for child processes and ``monkeypatch.setenv``."""
    return {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


UNSET_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_OIDC_RESOURCE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "_HF_DEFAULT_STAGING",
    "HUGGINGFACE_CO_STAGING",
)


def wait_until_unreachable(port: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.02)
