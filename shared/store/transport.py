"""An azure-core transport for Table Storage on the standard library's ``http.client``.

Why: azure-data-tables over ``requests`` spends ~1.2-1.4 ms of CPU per call in requests/urllib3 (session
merging, adapters, header and cookie objects); a RegisterAttendee message makes three calls. Table Storage
needs none of that: no proxies, no cookies, no redirects, whole small JSON bodies. This transport sends each
request on a kept-alive ``http.client`` connection from a per-host pool and answers with azure-core's own
response type, so the SDK's policies (auth, retry, error mapping) run unchanged. Measured CPU per call:
~0.6 ms against ~1.3 ms (see README, *Performance*).

Errors keep azure-core's meaning: no connection -> ``ServiceRequestError``; the connection failed after the
request was sent, or timed out waiting -> ``ServiceResponseError`` (the SDK's retry policy treats both as it
does for requests). One case is handled here, as urllib3 does: a pooled connection the server has closed is
dropped before use when its socket shows the close; in the narrow race where the close arrives while the
request is being sent (no byte of an answer yet), the request is sent once more on a new connection. Once the
status line has arrived, nothing is resent here, whatever happens to the rest of the answer.

``_Response`` builds on ``azure.core.rest._http_response_impl.HttpResponseImpl``, a private module: the public
``HttpResponse`` is a protocol with no constructor. ``azure-core`` is therefore pinned in requirements.txt, and
tests/unit/test_table_transport.py checks the constructor and the attributes this module relies on, so an
upgrade that changes them fails the suite instead of production.
"""

from __future__ import annotations

import http.client
import queue
import select
import ssl
import threading
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 30.0  # Table Storage itself gives up on an operation after 30 s
POOL_SIZE = 32  # idle connections kept per host; more than maxConcurrentCalls (16) so none is re-opened

_Key = tuple[str, str, int]


class _Response(HttpResponseImpl):
    """A whole, already read answer: the Table SDK asks for small JSON or multipart bodies only."""

    def __init__(self, request: Any, status: int, reason: str, headers: Any, body: bytes) -> None:
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            headers=headers,
            reason=reason,
            content_type=headers.get("content-type"),
            stream_download_generator=None,
        )
        self._content = body
        self._is_stream_consumed = True

    def read(self) -> bytes:
        return self._content or b""

    def body(self) -> bytes:
        return self._content or b""

    def iter_bytes(self, **kwargs: Any) -> Any:
        yield self._content or b""

    def iter_raw(self, **kwargs: Any) -> Any:
        yield self._content or b""


class HttpClientTransport(HttpTransport):  # type: ignore[type-arg]
    """Keep-alive ``http.client`` connections, one LIFO pool per (scheme, host, port), shared by all threads."""

    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        pool_size: int = POOL_SIZE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_size = pool_size
        self._ssl = ssl_context or ssl.create_default_context()
        self._pools: dict[_Key, queue.LifoQueue[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> HttpClientTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:  # azure-core's pipeline calls it with no arguments when the client closes
        self.close()

    def open(self) -> None:
        """Connections open on demand."""

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            while True:
                try:
                    pool.get_nowait().close()
                except queue.Empty:
                    break

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        key = (scheme, host, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = _body_of(request)
        connect_timeout = _seconds(kwargs.get("connection_timeout"), self._connect_timeout)
        read_timeout = _seconds(kwargs.get("read_timeout"), self._read_timeout)
        pool = self._pool(key)
        for attempt in (1, 2):
            conn, reused = self._take(pool, key, connect_timeout)
            try:
                if conn.sock is None:
                    conn.connect()
                conn.sock.settimeout(read_timeout)
            except TimeoutError as exc:
                conn.close()
                raise ServiceRequestTimeoutError(f"connecting to {host} timed out", error=exc) from exc
            except OSError as exc:
                conn.close()
                raise ServiceRequestError(f"could not connect to {host}: {exc}", error=exc) from exc
            try:
                conn.request(request.method, target, body=body, headers=dict(request.headers))
            except (BrokenPipeError, ConnectionResetError) as exc:
                conn.close()  # nothing of an answer has been read: the send itself failed
                if reused and attempt == 1:
                    continue  # the server closed this kept-alive connection just as it was reused
                raise ServiceResponseError(f"{host} closed the connection: {exc}", error=exc) from exc
            except TimeoutError as exc:
                conn.close()
                raise ServiceResponseTimeoutError(
                    f"{host} did not take the request in {read_timeout} s", error=exc
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ServiceResponseError(f"the exchange with {host} failed: {exc}", error=exc) from exc
            try:
                answer = conn.getresponse()
            except http.client.RemoteDisconnected as exc:
                conn.close()  # closed before the first byte of a status line (http.client's own guarantee)
                if reused and attempt == 1:
                    continue
                raise ServiceResponseError(f"{host} closed the connection: {exc}", error=exc) from exc
            except TimeoutError as exc:
                conn.close()
                raise ServiceResponseTimeoutError(f"{host} did not answer in {read_timeout} s", error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()  # a reset may come after part of the status line: not resent
                raise ServiceResponseError(f"the exchange with {host} failed: {exc}", error=exc) from exc
            # The status line has arrived: the server has the request. Whatever fails from here on is never resent
            # by this transport (the SDK's retry policy decides, as it does for requests).
            try:
                data = answer.read()
            except TimeoutError as exc:
                conn.close()
                raise ServiceResponseTimeoutError(f"{host} stopped answering for {read_timeout} s", error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ServiceResponseError(f"{host} broke off its answer: {exc}", error=exc) from exc
            headers = case_insensitive_dict(answer.getheaders())
            if answer.will_close:
                conn.close()
            else:
                self._give_back(pool, conn)
            return _Response(request, answer.status, answer.reason, headers, data)
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _pool(self, key: _Key) -> queue.LifoQueue[http.client.HTTPConnection]:
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(key, queue.LifoQueue())
        return pool

    def _take(
        self, pool: queue.LifoQueue[http.client.HTTPConnection], key: _Key, timeout: float
    ) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            try:
                conn = pool.get_nowait()
            except queue.Empty:
                break
            if _still_open(conn):
                return conn, True
            conn.close()
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout, context=self._ssl), False
        return http.client.HTTPConnection(host, port, timeout=timeout), False

    def _give_back(self, pool: queue.LifoQueue[http.client.HTTPConnection], conn: http.client.HTTPConnection) -> None:
        if pool.qsize() >= self._pool_size:
            conn.close()
        else:
            pool.put(conn)


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read has been closed (EOF or reset) by the server: do not reuse it."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _body_of(request: Any) -> bytes | None:
    """The request body as bytes (azure-core's REST request keeps it in ``content``, the legacy one in ``data``)."""
    body = getattr(request, "content", None)
    if body is None:
        body = getattr(request, "data", None)
    if isinstance(body, str):
        return body.encode("utf-8")
    if body is None or isinstance(body, bytes):
        return body
    return bytes(body)


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else default
