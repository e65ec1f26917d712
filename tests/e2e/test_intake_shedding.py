"""Shedding past capacity: once the oldest delivery waiting for an intake slot has waited
``SHED_WAIT_S``, new deliveries get 503 with Retry-After at once (before their body is
read); the ones already let in still run. Time is a fake clock here, never a sleep."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_sync.core.webhook import Answer
from gitops_sync.http import webhook as webhook_route
from tests.e2e.local_stack_support import serving as serve_app
from tests.pipeline_support import make_stack

WEBHOOK = "/api/github/webhook"
DONE = Answer(202, {"status": "queued"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[Any]]]:
    """``intake.receive`` replaced by one that blocks until released; yields (release, started)."""
    release = threading.Event()
    started: list[Any] = []
    lock = threading.Lock()

    def receive(ctx: Any, headers: Any, body: Any, digests: Any = None) -> Answer:
        with lock:
            started.append(body)
        release.wait(30)
        return DONE

    monkeypatch.setattr(webhook_route.intake, "receive", receive)
    yield release, started
    release.set()


def _submit(pool: webhook_route.IntakePool, n: int) -> Any:
    return pool.receive(None, {}, b"%d" % n, {})  # type: ignore[arg-type]


def test_a_queue_older_than_the_shed_wait_refuses_new_deliveries_and_loses_none(held):
    release, started = held
    clock = Clock()
    pool = webhook_route.IntakePool(2, 10, clock=clock)
    try:
        running = [_submit(pool, i) for i in range(2)]  # both slots, held
        waiting = [_submit(pool, i) for i in range(2, 4)]  # queued behind them
        assert None not in running + waiting
        assert (pool.waited_s(), pool.overloaded()) == (0.0, False)
        clock.now += webhook_route.SHED_WAIT_S / 2
        assert not pool.overloaded()  # waiting, but not for long: let in
        late = _submit(pool, 4)
        assert late is not None
        clock.now += webhook_route.SHED_WAIT_S
        assert pool.overloaded()
        assert _submit(pool, 5) is None  # refused at once
        assert pool.shed == 1
        release.set()
        answers = [f.result(timeout=30) for f in [*running, *waiting, late]]
        assert answers == [DONE] * 5  # every delivery let in ran: none lost
        assert sorted(started) == [b"0", b"1", b"2", b"3", b"4"]
        assert (pool.waited_s(), pool.overloaded()) == (0.0, False)
        assert _submit(pool, 6) is not None  # the queue drained: let in again
    finally:
        release.set()
        pool.shutdown()


def test_a_full_backlog_refuses_at_once_whatever_the_wait(held):
    release, _ = held
    pool = webhook_route.IntakePool(1, 2, clock=Clock())
    try:
        let_in = [_submit(pool, i) for i in range(3)]
        assert None not in let_in
        assert _submit(pool, 3) is None
    finally:
        release.set()
        pool.shutdown()


@pytest.mark.azurite
def test_an_overloaded_pool_answers_503_before_the_body_is_read(
    storage: str, tmp_path: Path, held, monkeypatch: pytest.MonkeyPatch
):
    """A signed-looking post to an overloaded server is answered 503 with Retry-After
    before the client has sent one byte of its body."""
    from gitops_sync.http.app import create_app

    release, _ = held
    clock = Clock()
    pool = webhook_route.IntakePool(1, 10, clock=clock)
    monkeypatch.setattr(webhook_route, "POOL", pool)
    _submit(pool, 0)  # holds the slot
    _submit(pool, 1)  # waits
    clock.now += webhook_route.SHED_WAIT_S * 2
    stack = make_stack(storage, tmp_path)
    try:
        with serve_app(create_app(stack.ctx)) as server:
            head = (
                f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
                f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: 1000\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(head.encode())
                answer = sock.recv(4096)
    finally:
        release.set()
        pool.shutdown()
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"\r\nretry-after: 5\r\n" in answer.lower()
