"""LeanTransport against a real loopback HTTP server it can be made to misbehave with,
and the storage adapters' contract on Azurite over both it and the SDK's default transport.
"""

from __future__ import annotations

import gzip
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import (
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest as LegacyRequest
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from azure.core.rest import HttpRequest

from gitops_sync.adapters.http_transport import LeanTransport
from gitops_sync.adapters.queues import JobQueue
from gitops_sync.adapters.tables import Tables


@dataclass
class Seen:
    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    """What the server does, request by request: "ok" unless a mode was queued."""

    modes: list[str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    connections: int = 0


def _answer(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", "Content-Type: text/plain", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Handler(socketserver.StreamRequestHandler):
    script: Script

    def handle(self) -> None:
        script = self.server.script  # type: ignore[attr-defined]
        script.connections += 1
        number = script.connections
        while True:
            try:
                line = self.rfile.readline()
            except OSError:  # the client closed or reset the connection: done
                return
            parts = line.decode("latin-1").split(" ", 2)
            if len(parts) != 3:  # end of the connection (or not HTTP): done
                return
            method, path, _ = parts
            headers: dict[str, str] = {}
            while (h := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length") or 0))
            script.seen.append(Seen(number, method, path, headers, body))
            mode = script.modes.pop(0) if script.modes else "ok"
            if mode == "drop":  # read the request, then close without a byte of answer
                return
            if mode == "partial":  # the answer starts, then the connection breaks
                self.wfile.write(b"HTTP/1.1 2")
                return
            if mode == "truncated":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                return
            if mode == "slow":
                script.release.wait(30)
            if mode == "chunked":
                parts = [b"chunk-one;", b"chunk-two"]
                raw = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + raw)
                continue
            if mode == "gzip":
                self.wfile.write(_answer(gzip.compress(b"unzipped"), "Content-Encoding: gzip"))
                continue
            if mode == "big":
                self.wfile.write(_answer(b"x" * 300_000))
                continue
            self.wfile.write(_answer(b"echo:" + body if body else b"hello"))


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.script = script  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", script
    finally:
        script.release.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture()
def lean() -> Iterator[LeanTransport]:
    with LeanTransport() as transport:
        yield transport


def _get(transport: LeanTransport, url: str, **kw: object) -> bytes:
    response = transport.send(HttpRequest("GET", url), **kw)
    assert response.status_code == 200
    return bytes(response.content)


def test_connections_are_kept_alive_and_reused(server, lean: LeanTransport):
    url, script = server
    assert [_get(lean, f"{url}/{i}") for i in range(3)] == [b"hello"] * 3
    assert {s.connection for s in script.seen} == {1}
    assert lean.idle_connections() == 1


def test_a_body_goes_with_its_content_length(server, lean: LeanTransport):
    url, script = server
    response = lean.send(HttpRequest("POST", f"{url}/p", content='{"é": 1}'))
    assert response.content == b"echo:" + '{"é": 1}'.encode()
    assert script.seen[0].headers["content-length"] == str(len('{"é": 1}'.encode()))


def test_a_stale_reused_connection_is_retried_once_on_a_new_one(server, lean: LeanTransport):
    url, script = server
    _get(lean, f"{url}/first")
    script.modes[:] = ["drop"]  # the server closes as the next request arrives
    assert _get(lean, f"{url}/second") == b"hello"
    assert [(s.connection, s.path) for s in script.seen] == [
        (1, "/first"),
        (1, "/second"),
        (2, "/second"),
    ]


def test_the_retry_is_made_only_once(server, lean: LeanTransport):
    url, script = server
    _get(lean, f"{url}/first")
    script.modes[:] = ["drop", "drop"]
    with pytest.raises(ServiceResponseError):
        _get(lean, f"{url}/second")
    assert [s.path for s in script.seen].count("/second") == 2


def test_a_new_connection_that_fails_is_not_retried(server, lean: LeanTransport):
    url, script = server
    script.modes[:] = ["drop"]
    with pytest.raises(ServiceResponseError):
        _get(lean, f"{url}/once")
    assert [s.path for s in script.seen] == ["/once"]


def test_a_request_whose_answer_had_started_is_never_sent_again(server, lean: LeanTransport):
    url, script = server
    _get(lean, f"{url}/first")
    script.modes[:] = ["partial"]
    with pytest.raises(ServiceResponseError):
        lean.send(HttpRequest("POST", f"{url}/insert", content=b"{}"))
    assert [s.path for s in script.seen] == ["/first", "/insert"]


def test_a_truncated_body_is_an_error_and_not_sent_again(server, lean: LeanTransport):
    url, script = server
    _get(lean, f"{url}/first")
    script.modes[:] = ["truncated"]
    with pytest.raises(IncompleteReadError):
        lean.send(HttpRequest("POST", f"{url}/insert", content=b"{}"))
    assert [s.path for s in script.seen] == ["/first", "/insert"]
    assert _get(lean, f"{url}/next") == b"hello"


def test_chunked_and_gzip_answers_are_decoded_and_the_connection_reused(server, lean):
    url, script = server
    script.modes[:] = ["chunked", "gzip"]
    assert _get(lean, f"{url}/c") == b"chunk-one;chunk-two"
    assert _get(lean, f"{url}/g") == b"unzipped"
    assert _get(lean, f"{url}/after") == b"hello"
    assert {s.connection for s in script.seen} == {1}


def test_a_read_timeout_is_a_response_timeout(server, lean: LeanTransport):
    url, script = server
    script.modes[:] = ["slow"]
    with pytest.raises(ServiceResponseTimeoutError):
        _get(lean, f"{url}/slow", read_timeout=0.2)
    script.release.set()
    assert [s.path for s in script.seen] == ["/slow"]  # not sent again
    assert _get(lean, f"{url}/next") == b"hello"


def test_a_refused_connection_is_a_request_error(lean: LeanTransport):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServiceRequestError):
        _get(lean, f"http://127.0.0.1:{port}/")


def test_stream_true_reads_on_demand_and_returns_the_connection_at_the_end(server, lean):
    url, script = server
    script.modes[:] = ["big", "big"]
    response = lean.send(HttpRequest("GET", f"{url}/big"), stream=True)
    assert lean.idle_connections() == 0  # still reading it
    blocks = list(response.iter_bytes())
    assert len(blocks) > 1 and b"".join(blocks) == b"x" * 300_000
    assert lean.idle_connections() == 1
    # closed before its end: that connection cannot be reused
    unread = lean.send(HttpRequest("GET", f"{url}/big"), stream=True)
    unread.close()
    assert _get(lean, f"{url}/after") == b"hello"
    assert [s.connection for s in script.seen] == [1, 1, 2]


def test_through_an_azure_pipeline(server, lean: LeanTransport):
    url, _ = server
    with PipelineClient(url, transport=lean) as client:
        response = client.send_request(HttpRequest("GET", f"{url}/x"))
        assert (response.status_code, response.text()) == (200, "hello")
        streamed = client.send_request(HttpRequest("GET", f"{url}/y"), stream=True)
        assert b"".join(streamed.iter_raw()) == b"hello"


@pytest.mark.parametrize(
    ("request_of", "kwargs"),
    [
        pytest.param(lambda url: LegacyRequest("GET", url), {}, id="legacy-request"),
        pytest.param(
            lambda url: HttpRequest("GET", url), {"connection_verify": False}, id="tls-option"
        ),
        pytest.param(
            lambda url: HttpRequest("POST", url, content=iter([b"a", b"b"])), {}, id="streamed"
        ),
        pytest.param(lambda url: HttpRequest("POST", url, files={"f": b"x"}), {}, id="multipart"),
        pytest.param(lambda url: HttpRequest("GET", url), {"proxies": {}}, id="no-proxies"),
    ],
)
def test_anything_unusual_goes_to_the_default_transport(server, lean, request_of, kwargs):
    url, _ = server
    expected = 0 if "proxies" in kwargs else 1  # an empty proxies mapping is usual
    response = lean.send(request_of(f"{url}/u"), **kwargs)
    assert response.status_code == 200
    assert lean.fallbacks == expected


def test_an_environment_proxy_goes_to_the_default_transport(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = LeanTransport()
    assert transport._unusual(HttpRequest("GET", "https://example.invalid/"), "https", "a.b", {})
    assert not transport._unusual(HttpRequest("GET", "http://x.invalid/"), "http", "x", {})
    transport.close()


# --------------------------------------------------- the adapters' contract, both transports
# None: no transport given, so insert/get/send take the lean path (adapters/storage_hot.py)
TRANSPORTS = [
    pytest.param(LeanTransport, id="lean"),
    pytest.param(RequestsTransport, id="sdk"),
    pytest.param(None, id="hot"),
]


@pytest.mark.azurite
@pytest.mark.parametrize("make", TRANSPORTS)
def test_table_contract_on_azurite(storage: str, make: type[HttpTransport] | None):
    transport = make() if make else None
    tables = Tables.from_connection_string(
        storage, f"t{uuid.uuid4().hex[:12]}", transport=transport
    )
    assert (tables.hot is not None) == (make is None)
    row = {"PartitionKey": "p", "RowKey": "r", "n": 1, "text": "ünïcode"}
    assert tables.insert("markers", row)
    assert not tables.insert("markers", {**row, "n": 2})  # insert-if-absent
    got = tables.get("markers", "p", "r")
    assert got is not None and (got[0]["n"], got[0]["text"]) == (1, "ünïcode")
    _entity, etag = got
    assert tables.replace("markers", {**row, "n": 3}, etag=etag)
    assert not tables.replace("markers", {**row, "n": 4}, etag=etag)  # changed meanwhile
    tables.merge("markers", {"PartitionKey": "p", "RowKey": "r", "extra": "x"})
    got = tables.get("markers", "p", "r")
    assert got is not None and (got[0]["n"], got[0]["extra"]) == (3, "x")
    for i in range(5):
        assert tables.insert("markers", {"PartitionKey": "q", "RowKey": f"{i}", "i": i})
    found = tables.query("markers", "PartitionKey eq @pk", page_size=2, pk="q")
    assert sorted(e["i"] for e in found) == list(range(5))  # across three pages
    tables.delete("markers", "p", "r")
    tables.delete("markers", "p", "r")  # already gone: fine
    assert tables.get("markers", "p", "r") is None
    tables.check()
    if isinstance(transport, LeanTransport):
        assert transport.fallbacks == 0
    if transport is not None:
        transport.close()
    if tables.hot is not None:
        tables.hot.close()


@pytest.mark.azurite
@pytest.mark.parametrize("make", TRANSPORTS)
def test_queue_contract_on_azurite(storage: str, make: type[HttpTransport] | None):
    transport = make() if make else None
    queue = JobQueue.from_connection_string(storage, f"q{uuid.uuid4().hex[:16]}", transport)
    assert (queue.hot is not None) == (make is None)
    queue.send('{"job_id": "a"}')
    queue.send('{"job_id": "b"}')
    got = queue.receive(1, visibility_timeout=30)
    assert [m.body for m in got] == ['{"job_id": "a"}']
    renewed = queue.renew(got[0], 60)
    queue.release(renewed)
    both = sorted(queue.receive(32, visibility_timeout=30), key=lambda m: m.body)
    assert [m.body for m in both] == ['{"job_id": "a"}', '{"job_id": "b"}']
    queue.dead_letter(both[0])
    queue.delete(both[1])
    assert [m.body for m in queue.poison().receive(5)] == [both[0].body]
    queue.check()
    if isinstance(transport, LeanTransport):
        assert transport.fallbacks == 0
    queue.close()
