"""The webhook intake's three storage calls without the SDK's pipeline: table insert, table
point read, queue put.

A delivery makes these three calls and little else; through azure-core each cost about
2.5 ms of CPU, most of it the pipeline (a dozen policies: headers, user agent, request
id, retry, redirect, logging, tracing, response hooks) and ``http.client`` with its
email-module header parsing, not the call itself. Here each is one pre-built request on a
kept-alive socket, parsed as far as the answer needs.

What stays the SDK's own: the SharedKey signature (the tables' and the queue's own
credential policies sign an ``azure.core.rest.HttpRequest``), the entity's JSON with its
``@odata.type`` annotations (``_add_entity_properties``) and the entity read back
(``_convert_to_entity``, etag and timestamp included). Errors are raised as the SDK's
exception types with its ``error_code`` (409 ``ResourceExistsError``, 404
``ResourceNotFoundError``, others ``HttpResponseError``, no answer
``ServiceRequestError``/``ServiceResponseError``), so the adapters' handling (a vanished
table or queue created again, ``StorageError``) is the same on both paths.

Retries: a call is retried up to ``RETRIES`` times, after 0.2, 0.4, 0.8 s, when the
request could not be sent, when the answer broke off, and on 500/503/504 (and on 408,
429, 502 for a read), as azure-core's retry policy does for these methods. A reused
keep-alive connection that fails before any byte of the answer is retried at once on a
new one (the server closed it idle; it never acted on the request).

Used only with a shared key (a connection string); a token credential, a proxy in the
environment or a custom transport keeps the SDK path.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.data.tables._authentication import SharedKeyCredentialPolicy as TableKeyPolicy
from azure.data.tables._deserialize import _convert_to_entity
from azure.data.tables._serialize import _add_entity_properties
from azure.storage.queue._shared.authentication import SharedKeyCredentialPolicy as QueueKeyPolicy

from .. import timeline

#: seconds to connect, and to wait for each read of an answer (as ``LeanTransport``)
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 20.0, 60.0
RETRIES, BACKOFF_S = 3, 0.2
POOL_SIZE = 16
#: a kept-alive connection idle this long is closed, not reused: servers close idle ones
#: (Node's http server, so Azurite, after 5 s), and a request written as they do is lost
IDLE_S = 4.0
RETRY_STATUS = {"GET": {408, 429, 500, 502, 503, 504}, "POST": {500, 503, 504}}
TABLES_VERSION, QUEUE_VERSION = "2019-02-02", "2026-10-06"  # what the pinned SDKs send
_MESSAGE_ID = re.compile(rb"<MessageId>([^<]*)</MessageId>")
_Answer = tuple[int, dict[str, str], bytes]


class _NotStarted(Exception):
    """The connection ended before any byte of the answer."""


class Wire:
    """Kept-alive HTTP/1.1 connections to one endpoint; one request at a time on each."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.pool_size = pool_size
        #: idle connections with when each was last used, the newest last
        self._idle: list[tuple[socket.socket, float]] = []
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context() if self.tls else None
        # Idle sockets are closed when the wire is dropped without close().
        weakref.finalize(self, _close_idle, self._idle, self._lock)

    def exchange(self, raw: bytes, read_s: float = READ_TIMEOUT_S) -> _Answer:
        """Send one request; (status, lower-cased headers, body)."""
        for attempt in (1, 2):
            # The retry of a stale connection goes on a new one: the next idle one may have
            # been closed by the server just the same (it would then wait out a back-off).
            sock, reused = self._checkout(fresh=attempt == 2)
            sock.settimeout(read_s)
            sent = False
            try:
                sock.sendall(raw)
                sent = True
                status, headers, body, keep = _read_answer(sock)
            except (_NotStarted, OSError) as exc:
                sock.close()
                # Only before any byte of the answer (once one came, the server acted on
                # the request, and a put or an insert must not be sent twice).
                stale = isinstance(exc, _NotStarted) or not sent
                if reused and attempt == 1 and stale and not isinstance(exc, TimeoutError):
                    timeline.mark("stale", timeline.request(), repr(exc))
                    continue  # closed while idle: it never saw the request
                if isinstance(exc, _NotStarted):
                    raise ServiceResponseError(f"no answer from {self.host_header}") from exc
                raise ServiceResponseError(f"{self.host_header}: {exc}", error=exc) from exc
            except ValueError as exc:  # a malformed answer
                sock.close()
                raise ServiceResponseError(f"{self.host_header}: {exc}", error=exc) from exc
            self._checkin(sock, keep)
            return status, headers, body
        raise AssertionError("unreachable")

    def _checkout(self, fresh: bool = False) -> tuple[socket.socket, bool]:
        """A kept-alive connection idle for less than ``IDLE_S`` (the newest first), else a
        new one; always a new one when ``fresh``."""
        expired: list[socket.socket] = []
        found: socket.socket | None = None
        if not fresh:
            now = time.monotonic()
            with self._lock:
                while self._idle and found is None:
                    sock, since = self._idle.pop()
                    if now - since < IDLE_S:
                        found = sock
                    else:
                        expired.append(sock)  # the server may be closing it right now
        for sock in expired:
            sock.close()
        if found is not None:
            return found, True
        timeline.mark("connect", timeline.request(), self.host_header)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            raise ServiceRequestError(f"cannot connect to {self.host_header}: {exc}") from exc
        return sock, False

    def _checkin(self, sock: socket.socket, keep: bool) -> None:
        if keep:
            with self._lock:
                if len(self._idle) < self.pool_size:
                    self._idle.append((sock, time.monotonic()))
                    return
            timeline.mark("discard", timeline.request(), self.host_header)  # the pool is full
        sock.close()

    def close(self) -> None:
        """Close the idle connections (a later call opens new ones)."""
        _close_idle(self._idle, self._lock)


def _close_idle(idle: list[tuple[socket.socket, float]], lock: threading.Lock) -> None:
    with lock:
        socks = idle[:]
        idle.clear()
    for sock, _ in socks:
        sock.close()


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """One answer: status, headers, body (Content-Length, chunked, or up to close), and
    whether the connection may carry another request."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as exc:
            if not buf:
                raise _NotStarted() from exc  # reset before any byte of the answer
            raise
        if not chunk:
            if not buf:
                raise _NotStarted()
            raise ConnectionResetError("closed in the answer's headers")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("answer headers too long")
    status_line, *lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    rest = buf[end + 4 :]
    keep = headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, rest = _read_chunked(sock, rest)
    elif "content-length" in headers:
        size = int(headers["content-length"])
        while len(rest) < size:
            rest += _recv(sock)
        body, rest = bytes(rest[:size]), rest[size:]
    elif status in (204, 304) or status < 200:
        body = b""
    else:  # delimited by the close
        while chunk := sock.recv(65536):
            rest += chunk
        body, rest, keep = bytes(rest), bytearray(), False
    return status, headers, body, keep and not rest


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionResetError("closed in the answer's body")
    return chunk


def _read_chunked(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytearray]:
    body = bytearray()
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            buf += _recv(sock)
        size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
        del buf[: eol + 2]
        if size == 0:
            while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                buf += _recv(sock)  # trailers, if any, end with an empty line
            cut = 2 if buf.startswith(b"\r\n") else buf.find(b"\r\n\r\n") + 4
            return bytes(body), buf[cut:]
        while len(buf) < size + 2:
            buf += _recv(sock)
        body += buf[:size]
        del buf[: size + 2]


class _Signed:
    """Builds signed request bytes with an SDK credential policy."""

    def __init__(self, wire: Wire, sign: Callable[[PipelineRequest[Any]], None]) -> None:
        self.wire, self._sign = wire, sign
        self._date = (0, "")

    def _now(self) -> str:
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, formatdate(second, usegmt=True))
        return self._date[1]

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> bytes:
        headers["x-ms-date"] = self._now()
        if body:
            headers["Content-Length"] = str(len(body))
        req = HttpRequest(method, url, headers=headers)
        self._sign(PipelineRequest(req, PipelineContext(None)))
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.wire.host_header}"]
        lines += [f"{k}: {v}" for k, v in req.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def call(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> _Answer:
        """The answer, after the retries described in the module docstring."""
        if timeline.on():
            what = method + " " + urlsplit(url).path.rsplit("/", 1)[-1].split("(", 1)[0]
            timeline.mark("call_start", timeline.request(), what)
            try:
                return self._call(method, url, headers, body)
            finally:
                timeline.mark("call_end", timeline.request(), what)
        return self._call(method, url, headers, body)

    def _call(self, method: str, url: str, headers: dict[str, str], body: bytes) -> _Answer:
        retry_on = RETRY_STATUS[method]
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                answer = self.wire.exchange(self.request(method, url, dict(headers), body))
            except (ServiceRequestError, ServiceResponseError) as exc:
                if last:
                    raise
                timeline.mark("retry", timeline.request(), f"{type(exc).__name__}: {exc}")
            else:
                if answer[0] not in retry_on or last:
                    return answer
                timeline.mark("retry", timeline.request(), f"status {answer[0]}")
            time.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")


def _error(answer: _Answer, what: str) -> HttpResponseError:
    status, headers, _ = answer
    code = headers.get("x-ms-error-code", "")
    message = f"{what}: {status} {code}".rstrip()
    kind: type[HttpResponseError] = HttpResponseError
    if status == 404:
        kind = ResourceNotFoundError
    elif status == 409:
        kind = ResourceExistsError
    exc = kind(message=message)
    exc.status_code = status
    exc.error_code = code or None  # type: ignore[attr-defined]  # as the SDK's errors carry
    return exc


def _proxied(url: str) -> bool:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")


class HotTables:
    """Insert and point read on the tables of one account (``service_url``)."""

    def __init__(self, service_url: str, credential: AzureNamedKeyCredential) -> None:
        self.base = service_url.rstrip("/")
        policy = TableKeyPolicy(credential)
        self._signed = _Signed(Wire(self.base), policy.on_request)

    @classmethod
    def for_service(cls, service: Any) -> HotTables | None:
        """For a ``TableServiceClient`` with a shared key; None otherwise."""
        cred = getattr(service, "credential", None)
        if not isinstance(cred, AzureNamedKeyCredential) or _proxied(service.url):
            return None
        return cls(service.url, cred)

    def insert(self, table: str, entity: dict[str, Any]) -> None:
        """Create ``entity``; ``ResourceExistsError`` if one with its keys exists."""
        body = json.dumps(_add_entity_properties(entity)).encode()
        headers = {
            "Content-Type": "application/json;odata=nometadata",
            "Accept": "application/json;odata=minimalmetadata",
            "Prefer": "return-no-content",
            "DataServiceVersion": "3.0",
            "x-ms-version": TABLES_VERSION,
        }
        answer = self._signed.call("POST", f"{self.base}/{table}", headers, body)
        if answer[0] not in (201, 204):
            raise _error(answer, f"insert into {table}")

    def get(self, table: str, pk: str, rk: str) -> Any:
        """The entity (a ``TableEntity`` with its etag, as the SDK's ``get_entity``)."""
        keys = f"PartitionKey='{_key(pk)}',RowKey='{_key(rk)}'"
        headers = {
            "Accept": "application/json;odata=minimalmetadata",
            "DataServiceVersion": "3.0",
            "x-ms-version": TABLES_VERSION,
        }
        answer = self._signed.call("GET", f"{self.base}/{table}({keys})", headers)
        if answer[0] != 200:
            raise _error(answer, f"read from {table}")
        return _convert_to_entity(json.loads(answer[2]))

    def close(self) -> None:
        self._signed.wire.close()


def _key(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")  # as the SDK's _prepare_key + URL quoting


class HotQueue:
    """Put a message on one queue (``queue_url``), base64-encoded as the SDK's policy does."""

    def __init__(self, queue_url: str, policy: QueueKeyPolicy) -> None:
        self.url = queue_url.rstrip("/") + "/messages"
        self._signed = _Signed(Wire(queue_url), policy.on_request)

    @classmethod
    def for_client(cls, client: Any) -> HotQueue | None:
        """For a ``QueueClient`` with a shared key; None otherwise."""
        cred = getattr(client, "credential", None)
        if not isinstance(cred, QueueKeyPolicy) or _proxied(client.url):
            return None
        return cls(client.url, cred)

    def send(self, text: str, delay: int = 0) -> str:
        """The new message's id."""
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        body = (
            "<?xml version='1.0' encoding='utf-8'?>\n"
            f"<QueueMessage><MessageText>{encoded}</MessageText></QueueMessage>"
        ).encode()
        headers = {
            "Content-Type": "application/xml",
            "Accept": "application/xml",
            "x-ms-version": QUEUE_VERSION,
        }
        url = f"{self.url}?visibilitytimeout={delay}" if delay else self.url
        answer = self._signed.call("POST", url, headers, body)
        found = _MESSAGE_ID.search(answer[2]) if answer[0] == 201 else None
        if found is None:
            raise _error(answer, "put a message")
        return found.group(1).decode()

    def close(self) -> None:
        self._signed.wire.close()
