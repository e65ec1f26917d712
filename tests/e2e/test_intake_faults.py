"""The webhook when storage fails midway, vanishes, or stalls, and when bodies are hostile.

Faults come from a real proxy in front of Azurite's table endpoint
(``tests/storage_proxy.py``) or from deleting the real tables and queue.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from gitops_sync.core.webhook import sign
from gitops_sync.http import webhook as webhook_route
from gitops_sync.http.app import create_app
from gitops_sync.jobs import SUCCEEDED, SUPERSEDED
from tests.e2e.local_stack_support import serving as serve_app
from tests.pipeline_support import (
    SECRET,
    Client,
    Stack,
    delivery_headers,
    make_stack,
    push_payload,
)
from tests.storage_proxy import StorageProxy, storage_proxy

pytestmark = pytest.mark.azurite
WEBHOOK = "/api/github/webhook"


def _via_proxy(storage: str, proxy: StorageProxy) -> str:
    return re.sub(r"TableEndpoint=http://[^/;]+/", f"TableEndpoint={proxy.url}/", storage)


@pytest.fixture()
def proxy(storage: str) -> Iterator[StorageProxy]:
    table = re.search(r"TableEndpoint=(http://[^/;]+)/", storage)
    assert table is not None
    with storage_proxy(table.group(1)) as p:
        yield p


@pytest.fixture()
def stack(storage: str, proxy: StorageProxy, tmp_path: Path) -> Stack:
    return make_stack(_via_proxy(storage, proxy), tmp_path)


def app_client(stack: Stack) -> Client:
    """In-process requests to the local server's app (exceptions become answers there)."""
    c = Client(stack.ctx)
    c.app = create_app(stack.ctx)
    return c


@pytest.fixture()
def http(stack: Stack) -> Client:
    return app_client(stack)


def _push(stack: Stack, text: str) -> tuple[bytes, str]:
    stack.repo.write("site/index.html", text)
    commit = stack.repo.commit(text)
    return push_payload(commit), commit


def _jobs_writes(stack: Stack) -> re.Pattern[str]:
    return re.compile(rf"/{stack.ctx.tables.table_name('jobs')}\b")


def test_a_redelivery_after_the_job_record_failed_queues_that_job(
    stack: Stack, http: Client, proxy: StorageProxy
):
    """A delivery whose job record could not be written gets 503; its redelivery then
    names a job that exists (never a phantom), and the workspace ends at that commit."""
    body_a, _ = _push(stack, "a")
    first = http.post(WEBHOOK, content=body_a, headers=delivery_headers(body_a))
    assert first.status_code == 202
    body_b, commit_b = _push(stack, "b")
    headers_b = delivery_headers(body_b, delivery="delivery-b")
    jobs = _jobs_writes(stack)
    proxy.fail_when(lambda method, path: method != "GET" and bool(jobs.search(path)))
    failed = http.post(WEBHOOK, content=body_b, headers=headers_b)
    proxy.heal()
    assert (503, "5") == (failed.status_code, failed.headers.get("retry-after"))
    assert proxy.failed  # the fault really hit the jobs table

    again = http.post(WEBHOOK, content=body_b, headers=headers_b)
    assert again.status_code in (200, 202), again.text
    job = stack.ctx.jobs.get(again.json()["job_id"])
    assert job is not None and job.commit == commit_b
    stack.run_queue()
    assert (stack.workspace / "site/index.html").read_text() == "b"
    final = stack.ctx.jobs.get(job.job_id)
    assert final is not None and final.status == SUCCEEDED
    older = stack.ctx.jobs.get(first.json()["job_id"])
    assert older is not None and older.status in (SUCCEEDED, SUPERSEDED)
    assert older.superseded_by in (None, job.job_id)


def test_a_failed_record_write_still_leaves_a_job_the_worker_runs(
    stack: Stack, http: Client, proxy: StorageProxy
):
    """When only the job record's write failed, the message already sent carries the job:
    the worker records it and syncs, with no redelivery at all."""
    body, commit = _push(stack, "only-the-message")
    jobs = _jobs_writes(stack)
    proxy.fail_when(lambda method, path: method == "POST" and bool(jobs.search(path)))
    assert http.post(WEBHOOK, content=body, headers=delivery_headers(body)).status_code == 503
    proxy.heal()
    handled = stack.run_queue()
    assert len(handled) == 1
    job = stack.ctx.jobs.get(json.loads(handled[0])["job_id"])
    assert job is not None and (job.status, job.commit) == (SUCCEEDED, commit)
    assert (stack.workspace / "site/index.html").read_text() == "only-the-message"


def _delete_everything(storage: str, stack: Stack) -> None:
    service = TableServiceClient.from_connection_string(storage)
    for role in ("jobs", "markers", "state", "connections"):
        service.delete_table(stack.ctx.tables.table_name(role))
    QueueClient.from_connection_string(storage, stack.ctx.queue.name).delete_queue()


def test_vanished_tables_and_queue_are_created_again(storage: str, tmp_path: Path):
    """After the tables and the queue are deleted (a storage reset), the next delivery
    is queued (never a 500), the worker receives it, and health says ok."""
    stack = make_stack(storage, tmp_path)
    with app_client(stack) as http:
        body, commit = _push(stack, "before")
        assert http.post(WEBHOOK, content=body, headers=delivery_headers(body)).status_code == 202
        stack.drain()
        _delete_everything(storage, stack)
        body, commit = _push(stack, "after")
        answer = http.post(WEBHOOK, content=body, headers=delivery_headers(body))
        assert (202, commit) == (answer.status_code, answer.json().get("commit"))
        stack.run_queue()
        assert (stack.workspace / "site/index.html").read_text() == "after"
        _delete_everything(storage, stack)
        assert (200, {"status": "ok"}) == (
            (r := http.get("/api/health")).status_code,
            r.json(),
        )
        names = {t.name for t in TableServiceClient.from_connection_string(storage).list_tables()}
        assert stack.ctx.tables.table_name("markers") in names
        QueueClient.from_connection_string(storage, stack.ctx.queue.name).get_queue_properties()


def test_health_is_503_with_retry_after_when_storage_is_unreachable(tmp_path: Path):
    """Health answers 503 with Retry-After when nothing listens at the storage endpoints."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    from gitops_sync.settings import azurite_connection_string

    stack = make_stack(azurite_connection_string("127.0.0.1", port, port, port), tmp_path)
    with app_client(stack) as http:
        r = http.get("/api/health")
    assert (503, "5", {"status": "unavailable"}) == (
        r.status_code,
        r.headers.get("retry-after"),
        r.json(),
    )


def test_a_storage_stall_is_answered_503_within_the_ack_deadline(
    stack: Stack, http: Client, proxy: StorageProxy, monkeypatch: pytest.MonkeyPatch
):
    """When storage stops answering, a delivery gets 503 with Retry-After at the ack
    deadline instead of an answer GitHub would no longer wait for."""
    monkeypatch.setattr(webhook_route, "ACK_DEADLINE_S", 0.5)
    stalled = threading.Event()

    def stall(method: str, path: str) -> bool:
        stalled.wait(30)
        return True

    body, _ = _push(stack, "stalled")
    stack.ctx.tables.client("markers")  # created before the stall
    proxy.fail_when(stall)
    try:
        r = http.post(WEBHOOK, content=body, headers=delivery_headers(body))
    finally:
        stalled.set()
        proxy.heal()
    assert (503, "5") == (r.status_code, r.headers.get("retry-after"))


# ------------------------------------------------------------ bodies, over real HTTP
@contextmanager
def serving(stack: Stack) -> Iterator[tuple[str, int]]:
    with serve_app(create_app(stack.ctx)) as server:
        yield server.url, server.port


def _raw_request(port: int, head: str, body_parts: list[bytes], pause_s: float) -> bytes:
    """Send ``head``, then each part after ``pause_s``; return what came back (any time)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.settimeout(pause_s)
        got = b""
        for part in body_parts:
            with suppress(TimeoutError):
                got += sock.recv(65536)
            if got:
                return got
            try:
                sock.sendall(part)
            except OSError:
                break
        sock.settimeout(30)
        with suppress(TimeoutError, OSError):
            got += sock.recv(65536)
        return got


def test_an_unsigned_post_is_refused_before_its_body_is_read(stack: Stack):
    """A post declaring 25 MiB without a signature header is answered 401 at once,
    before the client has sent one byte of its body."""
    with serving(stack) as (_, port):
        head = (
            f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            f"Content-Length: {25 * 1024 * 1024}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head.encode())
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401")


def test_a_body_dripping_in_is_cut_off(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    """A signed-looking post whose body arrives a byte at a time is answered 408 at the
    body deadline, not held open for as long as the client likes."""
    monkeypatch.setattr(webhook_route, "BODY_DEADLINE_S", 1.0)
    with serving(stack) as (_, port):
        head = (
            f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: 100\r\n\r\n"
        )
        answer = _raw_request(port, head, [b"{"] * 20, pause_s=0.3)
    assert answer.startswith(b"HTTP/1.1 408")


def test_bodies_past_the_shared_bound_get_503(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    """A body that would take the bytes held by in-flight webhook bodies past the bound
    is refused with 503 and Retry-After, and the bound is given back afterwards."""
    budget = webhook_route.ByteBudget(10_000)
    monkeypatch.setattr(webhook_route, "BUDGET", budget)
    big = push_payload("a" * 40, padding="x" * 20_000)
    small = push_payload("b" * 40)
    with serving(stack) as (url, _):
        refused = httpx.post(url + WEBHOOK, content=big, headers=delivery_headers(big))
        fine = httpx.post(url + WEBHOOK, content=small, headers=delivery_headers(small))
    assert (503, "5") == (refused.status_code, refused.headers.get("retry-after"))
    assert fine.status_code == 202
    assert budget.held == 0


def test_a_signed_body_with_a_byte_order_mark_is_400(stack: Stack, http: Client):
    """A correctly signed body starting with a UTF-8 byte order mark is not JSON: 400."""
    body = b"\xef\xbb\xbf" + push_payload("c" * 40)
    headers = delivery_headers(body)
    assert headers["X-Hub-Signature-256"] == sign(SECRET, body)
    assert http.post(WEBHOOK, content=body, headers=headers).status_code == 400
