"""The intake's lean storage path (``adapters/storage_hot.py``): its HTTP client against a
scripted loopback server, and its answers against the SDK's on Azurite."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableServiceClient

from gitops_sync.adapters import storage_hot
from gitops_sync.adapters.queues import JobQueue
from gitops_sync.adapters.storage_hot import HotQueue, HotTables, Wire
from gitops_sync.adapters.tables import Tables

OK = b"HTTP/1.1 204 No Content\r\n\r\n"
BUSY = b"HTTP/1.1 503 Server Busy\r\nContent-Length: 0\r\n\r\n"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
)


class Scripted:
    """A loopback server answering request i with ``answers[i]`` (bytes, or "drop": read
    the request and close without a byte, or "half": close after the status line);
    counts connections and requests."""

    def __init__(self, answers: list[bytes | str]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n")
                     if h.lower().startswith(b"content-length:")), 0)  # fmt: skip
                while len(buf) < length:
                    buf += conn.recv(65536)
                self.requests.append(head)
                buf = buf[length:]
                answer = self.answers.pop(0) if self.answers else OK
                if answer == "drop":
                    return
                if answer == "half":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    return
                assert isinstance(answer, bytes)
                conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def scripted() -> Iterator[type[Scripted]]:
    made: list[Scripted] = []

    def make(answers: list[bytes | str]) -> Scripted:
        server = Scripted(answers)
        made.append(server)
        return server

    yield make  # type: ignore[misc]
    for server in made:
        server.close()


def _hot(url: str) -> HotTables:
    return HotTables(url, AzureNamedKeyCredential("acct", "a2V5"))


def test_keep_alive_chunked_answers_and_one_connection(scripted):
    server = scripted([CHUNKED, CHUNKED, OK])
    wire = Wire(server.url)
    raw = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    assert wire.exchange(raw)[::2] == (200, b"hello world")
    assert wire.exchange(raw)[::2] == (200, b"hello world")
    assert wire.exchange(raw)[::2] == (204, b"")
    assert (server.connections, len(server.requests)) == (1, 3)
    wire.close()


def test_a_stale_reused_connection_is_retried_once_on_a_new_one(scripted):
    server = scripted([OK, "drop", OK])
    wire = Wire(server.url)
    raw = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    wire.exchange(raw)
    assert wire.exchange(raw)[0] == 204  # the reused one was dropped: a new one carried it
    assert (server.connections, len(server.requests)) == (2, 3)
    wire.close()


def test_the_retry_of_a_stale_connection_goes_on_a_new_one_not_another_idle_one(
    scripted, monkeypatch
):
    """Two idle connections the server has dropped: the request is retried once, on a new
    connection, and at once (taking the second dead idle one made it wait out a 0.2 s
    back-off: the ~200 ms answers in the benchmark's timeline)."""
    slept: list[float] = []
    monkeypatch.setattr(storage_hot.time, "sleep", slept.append)
    server = scripted([OK])
    hot = HotTables(server.url, AzureNamedKeyCredential("acct", "a2V5"))
    wire = hot._signed.wire
    with socket.create_server(("127.0.0.1", 0)) as gone:  # closes both as Node does idle ones
        dead = [socket.create_connection(gone.getsockname()) for _ in range(2)]
        for _ in dead:
            gone.accept()[0].close()
    for sock in dead:
        wire._checkin(sock, keep=True)
    hot.insert("t", {"PartitionKey": "p", "RowKey": "r"})
    assert slept == []  # no back-off
    assert (server.connections, len(server.requests)) == (1, 1)
    wire.close()


def test_a_connection_idle_too_long_is_not_reused(scripted, monkeypatch):
    """The server may be closing it right now (Node's, so Azurite's, after 5 s idle)."""
    server = scripted([OK, OK, OK])
    wire = Wire(server.url)
    raw = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    wire.exchange(raw)
    wire.exchange(raw)
    assert server.connections == 1  # reused while fresh
    monkeypatch.setattr(storage_hot, "IDLE_S", 0.0)
    wire.exchange(raw)
    assert server.connections == 2  # idle too long: a new one
    wire.close()


def test_a_reused_connection_closed_mid_answer_is_an_error_not_resent(scripted):
    """Once a byte of the answer came, the server acted on the request: a queue put or an
    insert sent again could be done twice. Only a connection that failed before any
    answer byte is retried."""
    server = scripted([OK, "half", OK])
    wire = Wire(server.url)
    raw = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
    wire.exchange(raw)
    with pytest.raises(ServiceResponseError):
        wire.exchange(raw)
    assert (server.connections, len(server.requests)) == (1, 2)
    wire.close()


def test_a_new_connection_without_an_answer_is_an_error_not_resent(scripted, monkeypatch):
    monkeypatch.setattr(storage_hot, "RETRIES", 0)
    server = scripted(["drop"])
    with pytest.raises(ServiceResponseError):
        Wire(server.url).exchange(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert len(server.requests) == 1


def test_busy_answers_are_retried_with_back_off_then_given_up(scripted, monkeypatch):
    monkeypatch.setattr(storage_hot, "BACKOFF_S", 0.0)
    server = scripted([BUSY, BUSY, OK])
    _hot(server.url).insert("t", {"PartitionKey": "p", "RowKey": "r"})  # the third try
    assert len(server.requests) == 3
    server = scripted([BUSY] * 4)
    with pytest.raises(HttpResponseError) as caught:
        _hot(server.url).insert("t", {"PartitionKey": "p", "RowKey": "r"})
    assert (caught.value.status_code, len(server.requests)) == (503, 4)  # 1 + RETRIES


def test_a_refused_connection_is_a_request_error(monkeypatch):
    monkeypatch.setattr(storage_hot, "BACKOFF_S", 0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens once closed
    with pytest.raises(ServiceRequestError):
        _hot(f"http://127.0.0.1:{port}").get("t", "p", "r")


def test_errors_are_the_sdks_types_with_its_error_code(scripted):
    empty = b"\r\nContent-Length: 0\r\n\r\n"
    exists = b"HTTP/1.1 409 Conflict\r\nx-ms-error-code: EntityAlreadyExists" + empty
    gone = b"HTTP/1.1 404 Not Found\r\nx-ms-error-code: TableNotFound" + empty
    server = scripted([exists, gone])
    hot = _hot(server.url)
    with pytest.raises(ResourceExistsError):
        hot.insert("t", {"PartitionKey": "p", "RowKey": "r"})
    with pytest.raises(ResourceNotFoundError) as caught:
        hot.get("t", "p", "r")
    assert caught.value.error_code == "TableNotFound"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- on Azurite
@pytest.mark.azurite
def test_the_lean_path_reads_what_the_sdk_reads(storage: str):
    """Types, keys with quotes and slashes' neighbours, etag: the same as the SDK's."""
    prefix = f"h{uuid.uuid4().hex[:12]}"
    lean = Tables.from_connection_string(storage, prefix)
    assert lean.hot is not None
    sdk = Tables(TableServiceClient.from_connection_string(storage), prefix)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {"PartitionKey": "p'q", "RowKey": "c-a'b %+&=ü", "n": 7, "big": (2**40, "Edm.Int64"),
           "f": 1.5, "ok": True, "at": when, "text": "ünïcode"}  # fmt: skip
    assert lean.insert("markers", row)
    assert not lean.insert("markers", row)
    assert not sdk.insert("markers", row)
    got, etag = lean.get("markers", "p'q", "c-a'b %+&=ü") or ({}, "")
    want, sdk_etag = sdk.get("markers", "p'q", "c-a'b %+&=ü") or ({}, "")
    assert (got, etag) == (want, sdk_etag)
    assert (got["big"].value, got["at"], got["ok"]) == (2**40, when, True)
    assert lean.replace("markers", {**row, "n": 8}, etag=etag)  # the etag works for a guard
    assert lean.get("markers", "p'q", "nope") is None


@pytest.mark.azurite
def test_a_vanished_table_or_queue_is_created_again_on_the_lean_path(storage: str):
    prefix = f"h{uuid.uuid4().hex[:12]}"
    tables = Tables.from_connection_string(storage, prefix)
    assert tables.insert("jobs", {"PartitionKey": "p", "RowKey": "1"})
    tables.service.delete_table(tables.table_name("jobs"))
    assert tables.get("jobs", "p", "1") is None  # created again, empty
    assert tables.insert("jobs", {"PartitionKey": "p", "RowKey": "1"})
    queue = JobQueue.from_connection_string(storage, f"q{uuid.uuid4().hex[:16]}")
    assert isinstance(queue.hot, HotQueue)
    queue.send("one")
    queue.client.delete_queue()
    queue.send("two")
    assert [m.body for m in queue.receive(5)] == ["two"]
    queue.close()


@pytest.mark.azurite
def test_a_custom_transport_keeps_the_sdk_path(storage: str):
    from gitops_sync.adapters.http_transport import LeanTransport

    tables = Tables.from_connection_string(storage, "hcustom", transport=LeanTransport())
    queue = JobQueue.from_connection_string(storage, "hcustom", LeanTransport())
    assert (tables.hot, queue.hot) == (None, None)
