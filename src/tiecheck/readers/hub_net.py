"""The network side of Hub sources: a time limit on every request, offline runs that make none,
and byte ranges read with the library's own HTTP session.

Why a guard and not only ``timeout=`` arguments: huggingface_hub's shared client is built with
``timeout=None``. Most library calls pass a timeout of their own, some do not (listing pages),
and a timed-out request is retried: ``hf_hub_download`` repeats a failed metadata ``HEAD`` with a
60 s timeout and five backed-off retries, and resumes a stalled download five times. A Hub that
accepts connections and never answers then holds a run for minutes, or forever.

So while tiecheck talks to the Hub (inside ``limited``), every request made through the
library's session is capped at the time limit, and a timeout is raised as ``HubTimeout``: a
``SourceError`` that no retry loop of the library catches (they catch ``httpx2`` errors). A stall
therefore ends the run after one time limit: no request that got nothing for ``seconds`` is
retried. The guard is a transport wrapped around the ones the library's client factory builds,
installed with ``set_client_factory`` (the library's hook for configuring its HTTP client);
outside ``limited`` it passes every request through untouched.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tiecheck.errors import SourceError

DEFAULT_TIMEOUT = 30.0
"""Seconds a Hub request may go without any answer (connecting, or between received bytes)."""
TIMEOUT_ENV = "TIECHECK_HUB_TIMEOUT"
_PHASES = ("connect", "read", "write", "pool")
_ERROR_BODY_LIMIT = 1 << 20
"""An error response larger than this is not read (its message is not worth the memory)."""


def hub_timeout(seconds: float | None = None) -> float:
    """The time limit: ``seconds`` when given, else ``TIECHECK_HUB_TIMEOUT``, else 30 s."""
    origin = "--timeout"
    if seconds is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_TIMEOUT
        origin = TIMEOUT_ENV
        try:
            seconds = float(raw)
        except ValueError:
            raise SourceError(f"{TIMEOUT_ENV}={raw!r}: not a number of seconds") from None
    if not (math.isfinite(seconds) and 0 < seconds <= 86400):
        raise SourceError(f"{origin}: {seconds:g} is not a time limit (give 0 < seconds <= 86400)")
    return float(seconds)


class HubTimeout(SourceError):
    """A Hub request got no answer within the time limit; the run stops (exit 2)."""

    def __init__(self, label: str, host: str, seconds: float, phase: str) -> None:
        if phase == "connect":
            what = f"cannot connect to {host}: no answer within {seconds:g} s"
        else:
            what = f"{host} stopped answering: nothing received for {seconds:g} s"
        super().__init__(f"{label}: {what} (time limit: --timeout or {TIMEOUT_ENV})")
        self.host, self.seconds, self.phase = host, seconds, phase


@dataclass(frozen=True)
class Limit:
    """What applies to the requests of one run."""

    label: str
    """what is being read (the repo reference), the first word of every message."""
    seconds: float
    offline: bool = False
    """no request at all: the guard refuses any that a code path would still make."""


_ACTIVE: ContextVar[Limit | None] = ContextVar("tiecheck_hub_limit", default=None)
_INSTALL = threading.Lock()


@contextmanager
def limited(limit: Limit) -> Iterator[None]:
    """Apply ``limit`` to every huggingface_hub request made in this thread meanwhile."""
    _install_guard()
    token = _ACTIVE.set(limit)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _host(url: Any) -> str:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.host}:{port}"


def _timeout_error(limit: Limit, url: Any, timeouts: dict[str, float], error: Exception) -> Any:
    import httpx2

    phase = "read"
    if isinstance(error, httpx2.ConnectTimeout):
        phase = "connect"
    elif isinstance(error, httpx2.PoolTimeout):
        phase = "pool"
    elif isinstance(error, httpx2.WriteTimeout):
        phase = "write"
    return HubTimeout(limit.label, _host(url), timeouts[phase], phase)


def _guarded_transport(inner: Any) -> Any:
    import httpx2

    class GuardedStream(httpx2.SyncByteStream):
        def __init__(self, stream: Any, limit: Limit, url: Any, timeouts: dict[str, float]):
            self._stream, self._limit, self._url, self._timeouts = stream, limit, url, timeouts

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self._stream
            except httpx2.TimeoutException as e:  # stalled mid-body
                raise _timeout_error(self._limit, self._url, self._timeouts, e) from e

        def close(self) -> None:
            self._stream.close()

    class Guard(httpx2.BaseTransport):
        tiecheck_guard = True

        def __init__(self, inner: httpx2.BaseTransport) -> None:
            self._inner = inner

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            limit = _ACTIVE.get()
            if limit is None:
                return self._inner.handle_request(request)
            if limit.offline:
                raise SourceError(
                    f"{limit.label}: offline, so {_host(request.url)} is not asked; "
                    "the Hugging Face cache does not answer this"
                )
            asked = request.extensions.get("timeout") or {}
            timeouts = {
                phase: min(asked.get(phase) or limit.seconds, limit.seconds) for phase in _PHASES
            }
            request.extensions["timeout"] = timeouts
            try:
                response = self._inner.handle_request(request)
            except httpx2.TimeoutException as e:
                raise _timeout_error(limit, request.url, timeouts, e) from e
            response.stream = GuardedStream(response.stream, limit, request.url, timeouts)
            return response

        def close(self) -> None:
            self._inner.close()

    return Guard(inner)


def _guard_client(client: Any) -> Any:
    """Wrap the transports of a client the library's factory built. httpx2 has no public way
    to wrap the transports a client chose for itself (passing ``transport=`` would turn off
    its proxy settings from the environment), hence its two attributes; if they are ever
    missing, requests go unguarded and only tiecheck's own ``timeout=`` arguments apply."""
    transport = getattr(client, "_transport", None)
    if transport is not None and not getattr(transport, "tiecheck_guard", False):
        client._transport = _guarded_transport(transport)
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, dict):
        for pattern, mounted in list(mounts.items()):
            if mounted is not None and not getattr(mounted, "tiecheck_guard", False):
                mounts[pattern] = _guarded_transport(mounted)
    return client


def _install_guard() -> None:
    """Wrap the library's client factory once (again if someone replaced it since)."""
    from huggingface_hub.utils import _http, set_client_factory

    with _INSTALL:
        current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None) or _http.default_client_factory
        if getattr(current, "tiecheck_guard", False):
            return

        def factory() -> Any:
            return _guard_client(current())

        factory.tiecheck_guard = True  # type: ignore[attr-defined]
        set_client_factory(factory)


def read_range(url: str, headers: dict[str, str], start: int, length: int, seconds: float) -> bytes:
    """``length`` bytes of a Hub file from ``start``: one ranged GET through the library's
    session (redirects to the storage host followed, the token dropped on the way, as
    ``HfFileSystem`` reads do), without the library's retries: a failure is reported, not
    repeated. Never reads more than ``length`` bytes, whatever the server sends."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    wanted = {**headers, "Range": f"bytes={start}-{start + length - 1}"}
    with get_session().stream("GET", url, headers=wanted, timeout=seconds) as response:
        if response.status_code >= 400:
            size = response.headers.get("Content-Length", "")
            if size.isdigit() and int(size) <= _ERROR_BODY_LIMIT:
                hf_raise_for_status(response)
            raise OSError(f"the Hub answered {response.status_code}")
        if response.status_code == 200 and start != 0:
            raise OSError("the server ignored the byte range asked for (answered 200, not 206)")
        if response.status_code not in (200, 206):
            raise OSError(f"the Hub answered {response.status_code} to a range request")
        answered = response.headers.get("Content-Range", "")
        if response.status_code == 206 and not answered.startswith(f"bytes {start}-"):
            raise OSError(f"asked for bytes from {start}, got {answered or 'no Content-Range'}")
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk[: length - len(data)]
            if len(data) >= length:
                break
    return bytes(data)
