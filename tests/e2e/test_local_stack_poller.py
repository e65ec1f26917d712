"""The local queue poller against a real Azurite: the Functions queue trigger's rules."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from gitops_sync.adapters.queues import JobQueue
from gitops_sync.core.errors import StorageError
from gitops_sync.local.poller import QueueOptions, QueuePoller

pytestmark = pytest.mark.azurite

FAST = QueueOptions(max_dequeue_count=3, visibility_timeout_s=0, max_polling_interval_s=0.2)


def _queue(storage: str) -> tuple[JobQueue, QueueClient, QueueClient]:
    name = f"q{uuid.uuid4().hex[:12]}"
    lease_queue = JobQueue.from_connection_string(storage, name)
    lease_queue.ensure()
    raw = QueueClient.from_connection_string(storage, name)
    poison = QueueClient.from_connection_string(storage, f"{name}-poison")
    poison.create_queue()  # so that peeking it before the first poison message works
    return lease_queue, raw, poison


def _bodies(client: QueueClient) -> list[str]:
    """Peek every visible message's decoded body (without leasing); a failed peek raises."""
    return [base64.b64decode(m.content).decode() for m in client.peek_messages(32)]


class CountingQueue(JobQueue):
    """The real queue, counting lease renewals: ``renewed`` is set after ``wanted`` of them."""

    def __init__(self, queue: JobQueue, wanted: int) -> None:
        super().__init__(queue.client)
        self.wanted, self.renewals = wanted, 0
        self.renewed = threading.Event()

    def renew(self, message, visibility_timeout):  # type: ignore[no-untyped-def]
        renewed = super().renew(message, visibility_timeout)
        self.renewals += 1
        if self.renewals >= self.wanted:
            self.renewed.set()
        return renewed


def _run_until(poller: QueuePoller, done: Callable[[], bool], timeout: float = 20.0) -> None:
    """Run ``poller`` in an event loop until ``done()`` holds, then stop it gracefully."""

    async def main() -> None:
        task = asyncio.create_task(poller.run(grace_s=10))
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        poller.stop()
        await task

    asyncio.run(main())


def test_success_passes_body_and_dequeue_count_then_deletes(storage: str) -> None:
    """A handled message reaches the handler decoded, with dequeue count 1, and is deleted."""
    queue, raw, _ = _queue(storage)
    body = json.dumps({"commit": "a" * 40, "note": "ünïcode"})
    queue.send(body)
    seen: list[tuple[str, int | None]] = []
    poller = QueuePoller(queue, lambda b, n: seen.append((b, n)), FAST, lease_s=5)
    _run_until(poller, lambda: poller.processed == 1)
    assert [(body, 1)] == seen
    assert [] == _bodies(raw)


def test_failure_reappears_then_moves_to_poison_after_max_dequeue_count(storage: str) -> None:
    """A handler that keeps raising sees dequeue counts 1..max, then the body sits in -poison."""
    queue, raw, poison = _queue(storage)
    queue.send("always fails")
    counts: list[int | None] = []

    def handle(body: str, count: int | None) -> None:
        counts.append(count)
        raise StorageError("table busy")

    poller = QueuePoller(queue, handle, FAST, lease_s=5)
    _run_until(poller, lambda: bool(_bodies(poison)))
    assert [1, 2, 3] == counts
    assert ["always fails"] == _bodies(poison)
    assert [] == _bodies(raw)


def test_transient_failure_is_retried_until_it_succeeds(storage: str) -> None:
    """A message that fails once is delivered again (count 2) and then deleted."""
    queue, raw, poison = _queue(storage)
    queue.send("flaky")
    counts: list[int | None] = []

    def handle(body: str, count: int | None) -> None:
        counts.append(count)
        if count == 1:
            raise StorageError("try again")

    poller = QueuePoller(queue, handle, FAST, lease_s=5)
    _run_until(poller, lambda: poller.processed == 1)
    assert [1, 2] == counts
    assert [] == _bodies(raw)
    assert [] == _bodies(poison)


def test_message_leased_too_often_without_verdict_goes_to_poison_unhandled(storage: str) -> None:
    """A message whose dequeue count already exceeds the limit (dead workers) is not handled."""
    queue, raw, poison = _queue(storage)
    queue.send("crashed workers")
    for _ in range(FAST.max_dequeue_count):  # leases that lapse, as after kill -9
        got = list(raw.receive_messages(visibility_timeout=1))
        assert 1 == len(got)
        raw.update_message(got[0].id, got[0].pop_receipt, visibility_timeout=0)
    handled: list[str] = []
    poller = QueuePoller(queue, lambda b, n: handled.append(b), FAST, lease_s=5)
    _run_until(poller, lambda: bool(_bodies(poison)))
    assert [] == handled
    assert ["crashed workers"] == _bodies(poison)


def test_lease_is_renewed_while_a_long_handler_runs(storage: str) -> None:
    """A handler running longer than its message's lease (four renewals, every lease_s/3)
    keeps the message from other consumers all along."""
    plain, raw, _ = _queue(storage)
    queue = CountingQueue(plain, wanted=4)  # 4 renewals of a 3 s lease: >= 4 s > 3 s
    queue.send("long sync")
    running = threading.Event()
    stolen: list[str] = []

    def handle(body: str, count: int | None) -> None:
        running.set()
        deadline = time.monotonic() + 60
        # A second consumer keeps trying to take the message meanwhile.
        while not queue.renewed.wait(0.2) and time.monotonic() < deadline:
            stolen.extend(m.content for m in raw.receive_messages(visibility_timeout=1))
        stolen.extend(m.content for m in raw.receive_messages(visibility_timeout=1))

    poller = QueuePoller(queue, handle, FAST, lease_s=3)
    _run_until(poller, lambda: poller.processed == 1, timeout=60)
    assert running.is_set()
    assert queue.renewals >= 4
    assert [] == stolen
    assert [] == _bodies(raw)


def test_at_most_concurrency_messages_run_at_once(storage: str) -> None:
    """With concurrency 2 and six messages, handlers run two at a time, never more."""
    queue, _, _ = _queue(storage)
    for i in range(6):
        queue.send(f"m{i}")
    lock = threading.Lock()
    active = [0]
    peak = [0]
    seen: list[str] = []
    pair = threading.Barrier(2, timeout=30)  # passes only when two handlers overlap

    def handle(body: str, count: int | None) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        pair.wait()
        with lock:
            active[0] -= 1
            seen.append(body)

    poller = QueuePoller(queue, handle, FAST, concurrency=2, lease_s=60)
    _run_until(poller, lambda: poller.processed == 6, timeout=60)
    assert 2 == peak[0]
    assert sorted(f"m{i}" for i in range(6)) == sorted(seen)


def test_stop_lets_the_message_in_flight_finish(storage: str) -> None:
    """stop() while a handler runs waits for it, and its message is then deleted."""
    queue, raw, _ = _queue(storage)
    queue.send("in flight")
    started = threading.Event()
    stop_called = threading.Event()
    finished = threading.Event()

    def handle(body: str, count: int | None) -> None:
        started.set()
        assert stop_called.wait(30)  # still running when stop() is called
        finished.set()

    poller = QueuePoller(queue, handle, FAST, lease_s=5)
    stop = poller.stop

    def stop_and_tell() -> None:
        stop()
        stop_called.set()

    poller.stop = stop_and_tell  # type: ignore[method-assign]
    _run_until(poller, started.is_set)
    assert finished.is_set()
    assert 1 == poller.processed
    assert [] == _bodies(raw)


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        ({}, QueueOptions()),
        (
            {"maxDequeueCount": 2, "visibilityTimeout": "00:00:30", "maxPollingInterval": 2000},
            QueueOptions(max_dequeue_count=2, visibility_timeout_s=30, max_polling_interval_s=2),
        ),
        (
            {"batchSize": 4, "maxPollingInterval": "00:01:00", "visibilityTimeout": "1.00:00:01"},
            QueueOptions(batch_size=4, max_polling_interval_s=60, visibility_timeout_s=86401),
        ),
    ],
    ids=["defaults", "numbers-and-timespan", "days"],
)
def test_host_json_queue_options(tmp_path: Path, queues: dict, expected: QueueOptions) -> None:
    """host.json's extensions.queues is read with the Functions host's defaults and formats."""
    host = tmp_path / "host.json"
    host.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    assert expected == QueueOptions.from_host_json(host)


def test_a_plain_text_message_reaches_the_handler_instead_of_failing_receive(storage: str):
    """A message someone queued without base64 is handed over as it is, not a receive error."""
    queue, raw, _poison = _queue(storage)
    raw.send_message("not base64 at all!")  # the raw client sends text unencoded
    queue.send('{"job_id": "x"}')
    got = queue.receive(32, 30)
    assert {"not base64 at all!", '{"job_id": "x"}'} == {m.body for m in got}
