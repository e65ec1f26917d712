"""A lean HTTP transport for the Azure SDK clients: stdlib ``http.client`` with keep-alive.

Most of the webhook intake's CPU went to the SDK's default transport (requests,
urllib3 and their adapters), not to our code or the storage calls themselves. This
implements azure-core's ``HttpTransport`` contract (``send`` gets an
``azure.core.rest.HttpRequest`` and returns an ``azure.core.rest.HttpResponse``) on
``http.client``: a pool of idle keep-alive connections per host, Content-Length and
chunked answers, ``stream=True``, and separate connect and read timeouts.

A request is sent once, except that a *reused* connection that fails before any byte
of the answer arrived (the server closed an idle keep-alive connection) is retried
once on a new connection: the server cannot have acted on a request it never
answered on a connection it had closed. A request whose answer had started is never
sent again here (the pipeline's retry policy decides that).

Anything unusual goes to the SDK's default transport, so nothing regresses: a proxy
(argument or environment), a multipart or batch request, a streamed request body,
legacy ``pipeline.transport`` requests, TLS options other than the defaults, or any
keyword this transport does not know.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
import weakref
import zlib
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

#: seconds to open a connection, and to wait for each read of an answer
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 20.0, 60.0
#: idle keep-alive connections kept per host (more may be open at once; the rest close)
POOL_SIZE = 10
BLOCK_SIZE = 64 * 1024
#: keywords a send may carry that this transport honours (a known value), see ``_unusual``
_KNOWN = {
    "stream",
    "connection_timeout",
    "read_timeout",
    "connection_verify",
    "connection_cert",
    "proxies",
}
_DECODED = {"identity", "gzip", "deflate"}  # answer encodings this transport decodes
_Key = tuple[str, str, int]


class _NotStarted(Exception):
    """The connection failed before any byte of the answer arrived."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Answer(http.client.HTTPResponse):
    """``HTTPResponse`` that tells "no answer at all" apart from "an answer broke off"."""

    def begin(self) -> None:
        try:
            first = self.fp.peek(1)  # a BufferedReader: waits for the first byte
        except TimeoutError:
            raise
        except OSError as exc:
            raise _NotStarted(exc) from exc
        if not first:
            raise _NotStarted(http.client.RemoteDisconnected("closed without an answer"))
        super().begin()


class _Connection(http.client.HTTPConnection):
    """Headers and a bytes body in one ``send`` (``http.client`` writes them separately:
    two packets, and two reads on the server's side, for every small request)."""

    response_class = _Answer
    _buffer: list[bytes]

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        if not isinstance(message_body, bytes):
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]
            return
        self._buffer.extend((b"", b""))
        head = b"\r\n".join(self._buffer)
        del self._buffer[:]
        self.send(head + message_body)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    pass


def _idle_but_closed(conn: http.client.HTTPConnection) -> bool:
    """True if an idle connection's socket is readable: the server closed it (or sent
    something unasked); either way it cannot carry the next request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class LeanTransport(HttpTransport):
    """``HttpTransport`` on ``http.client`` with a keep-alive pool; thread-safe."""

    def __init__(
        self,
        *,
        connection_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        pool_size: int = POOL_SIZE,
        use_env_settings: bool = True,
    ) -> None:
        self.connection_timeout = connection_timeout
        self.read_timeout = read_timeout
        self.pool_size = pool_size
        self._env_proxies = urllib.request.getproxies() if use_env_settings else {}
        self._pools: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._fallback: RequestsTransport | None = None
        #: requests sent by the default transport instead (for tests and diagnostics)
        self.fallbacks = 0
        # Idle sockets are closed when the transport is dropped without close().
        weakref.finalize(self, _close_idle, self._pools, self._lock)

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> LeanTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def open(self) -> None:
        return None

    def close(self) -> None:
        """Close idle connections (the transport stays usable: a later send opens new ones)."""
        _close_idle(self._pools, self._lock)
        with self._lock:
            fallback, self._fallback = self._fallback, None
        if fallback is not None:
            fallback.close()

    # ------------------------------------------------------------------ send
    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        if self._unusual(request, parts.scheme, parts.hostname or "", kwargs):
            return self._default().send(request, **kwargs)
        body = request.data
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = dict(request.headers)
        for name in [k for k in headers if k.lower() == "content-length"]:
            del headers[name]
        if body:
            headers["Content-Length"] = str(len(body))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key: _Key = (parts.scheme, parts.hostname or "", port)
        connect_s = float(kwargs.get("connection_timeout") or self.connection_timeout)
        read_s = float(kwargs.get("read_timeout") or self.read_timeout)
        conn, answer = self._exchange(key, request.method, target, body, headers, connect_s, read_s)
        response = LeanResponse(self, key, conn, request, answer)
        if not kwargs.get("stream"):
            response.read()  # reads, returns the connection to the pool, closes
        return response

    def _unusual(self, request: Any, scheme: str, host: str, kwargs: dict[str, Any]) -> bool:
        """True for what the default transport should send (see the module docstring)."""
        if scheme not in ("http", "https") or not host:
            return True
        if not hasattr(request, "is_stream_consumed") and not hasattr(request, "content"):
            return True  # a legacy pipeline.transport request: its response type differs
        if getattr(request, "multipart_mixed_info", None) or getattr(request, "files", None):
            return True
        if not isinstance(request.data, str | bytes | None):
            return True  # a streamed or form body
        if set(kwargs) - _KNOWN or kwargs.get("proxies"):
            return True
        if kwargs.get("connection_verify", True) is not True or kwargs.get("connection_cert"):
            return True
        accept = request.headers.get("Accept-Encoding")
        if accept and not set(accept.replace(" ", "").split(",")) <= _DECODED:
            return True
        return scheme in self._env_proxies and not urllib.request.proxy_bypass(host)

    def _default(self) -> RequestsTransport:
        with self._lock:
            self.fallbacks += 1
            if self._fallback is None:
                self._fallback = RequestsTransport(
                    connection_timeout=self.connection_timeout, read_timeout=self.read_timeout
                )
            return self._fallback

    def _exchange(
        self,
        key: _Key,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        connect_s: float,
        read_s: float,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send and read the status and headers; once more on a fresh connection if a
        reused one failed before any byte of the answer."""
        for attempt in (1, 2):
            conn, reused = self._checkout(key, connect_s)
            retry = reused and attempt == 1
            sock = conn.sock
            if sock is not None:
                sock.settimeout(read_s)
            try:
                conn.request(method, target, body=body, headers=headers)
            except TimeoutError as exc:
                conn.close()
                raise ServiceRequestTimeoutError(exc, error=exc) from exc
            except OSError as exc:  # the request did not go out whole: it was not acted on
                conn.close()
                if retry:
                    continue
                raise ServiceRequestError(exc, error=exc) from exc
            try:
                return conn, conn.getresponse()
            except _NotStarted as exc:
                conn.close()
                if retry:
                    continue
                raise ServiceResponseError(exc.cause, error=exc.cause) from exc
            except TimeoutError as exc:
                conn.close()
                raise ServiceResponseTimeoutError(exc, error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise ServiceResponseError(exc, error=exc) from exc
        raise AssertionError("unreachable")

    def _checkout(self, key: _Key, connect_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle pooled connection (reused=True), or a new connected one."""
        while True:
            with self._lock:
                idle = self._pools.get(key)
                pooled = idle.pop() if idle else None
            if pooled is None:
                break
            if not _idle_but_closed(pooled):
                return pooled, True
            pooled.close()
        scheme, host, port = key
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            conn: http.client.HTTPConnection = _TLSConnection(
                host, port, timeout=connect_s, context=self._ssl
            )
        else:
            conn = _Connection(host, port, timeout=connect_s)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except OSError as exc:
            conn.close()
            raise ServiceRequestError(exc, error=exc) from exc
        if conn.sock is not None:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _checkin(self, key: _Key, conn: http.client.HTTPConnection, reusable: bool) -> None:
        if reusable and conn.sock is not None:
            with self._lock:
                idle = self._pools.setdefault(key, [])
                if len(idle) < self.pool_size:
                    idle.append(conn)
                    return
        conn.close()

    def idle_connections(self) -> int:
        """How many idle keep-alive connections are pooled (all hosts)."""
        with self._lock:
            return sum(len(v) for v in self._pools.values())


class LeanResponse(HttpResponseImpl):
    """An ``azure.core.rest.HttpResponse`` over an ``http.client`` answer; closing it
    returns the connection to the pool when the answer was read to its end."""

    def __init__(
        self,
        transport: LeanTransport,
        key: _Key,
        conn: http.client.HTTPConnection,
        request: Any,
        answer: http.client.HTTPResponse,
    ) -> None:
        headers: MutableMapping[str, str] = case_insensitive_dict(answer.getheaders())
        super().__init__(
            request=request,
            internal_response=answer,
            status_code=answer.status,
            reason=answer.reason,
            headers=headers,
            content_type=headers.get("Content-Type"),
            block_size=BLOCK_SIZE,
            stream_download_generator=_stream_download,
        )
        self._lease: tuple[LeanTransport, _Key, http.client.HTTPConnection] | None = (
            transport,
            key,
            conn,
        )

    def close(self) -> None:
        if not self.is_closed:
            self._is_closed = True
            self._release(done=False)

    def _release(self, done: bool) -> None:
        """Give the connection back (``done``: the answer was read to its end) or close it."""
        lease, self._lease = self._lease, None
        if lease is None:
            return
        transport, key, conn = lease
        answer: http.client.HTTPResponse = self._internal_response
        reusable = done and answer.isclosed() and not answer.will_close
        if not reusable:
            answer.close()
        transport._checkin(key, conn, reusable)

    def chunks(self, decompress: bool = True) -> Iterator[bytes]:
        """The body, block by block; the connection goes back to the pool at its end."""
        answer: http.client.HTTPResponse = self._internal_response
        decoder = _decoder(self.headers.get("Content-Encoding")) if decompress else None
        try:
            while True:
                block = answer.read(self._block_size)
                if not block:
                    if answer.length:  # read(n) at an early EOF returns b"", not an error
                        raise http.client.IncompleteRead(b"", answer.length)
                    break
                out = decoder.decompress(block) if decoder else block
                if out:
                    yield out
            if decoder is not None and (tail := decoder.flush()):
                yield tail
        except TimeoutError as exc:
            self._release(done=False)
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except http.client.IncompleteRead as exc:
            self._release(done=False)
            raise IncompleteReadError(exc, error=exc) from exc
        except (OSError, http.client.HTTPException, zlib.error) as exc:
            self._release(done=False)
            raise ServiceResponseError(exc, error=exc) from exc
        self._release(done=True)


def _close_idle(pools: dict[_Key, list[http.client.HTTPConnection]], lock: threading.Lock) -> None:
    with lock:
        idle = [conn for conns in pools.values() for conn in conns]
        pools.clear()
    for conn in idle:
        conn.close()


def _stream_download(pipeline: Any, response: LeanResponse, **kwargs: Any) -> Iterator[bytes]:
    """The stream-download generator the rest response and ``stream_download`` call."""
    return response.chunks(decompress=kwargs.get("decompress", True))


def _decoder(encoding: str | None) -> Any:
    kind = (encoding or "").strip().lower()
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)  # zlib-wrapped, as HTTP's "deflate" is
    return None
