"""``POST /api/github/webhook``: refuse what is unsigned, cap and time the body, shed load.

A missing or malformed signature is refused before one byte of the body is read.
The body is hashed as it streams in, counted against one bound for all requests,
and must arrive in time. Then the intake runs on a bounded pool (threads, or worker
processes with ``IntakePool.use_processes``); a delivery that cannot be acknowledged
within ``ACK_DEADLINE_S`` gets 503 with ``Retry-After`` (GitHub gives up after 10 s, so
a fast 503 beats a late 202). Past capacity the pool sheds at once: while the oldest
waiting delivery has waited ``SHED_WAIT_S`` or more, a new one is answered 503 before
its body is read, so the deliveries let in stay fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import intake, timeline
from ..core import webhook as wh
from ..core.webhook import MAX_BODY, TOO_LARGE, Answer
from .routing import ApiRoute

if TYPE_CHECKING:
    from ..context import AppContext
    from ..settings import Settings

log = logging.getLogger("gitops_sync")

#: bytes of webhook bodies held at once, across all requests; past it, 503
BODY_BUDGET = 64 * 1024 * 1024
#: the whole body must arrive within this long (GitHub waits 10 s for the answer)
BODY_DEADLINE_S = 10.0
#: deliveries acknowledged at once (threads doing storage calls; most of their time is
#: spent waiting on storage, and a racing duplicate may wait up to intake.SETTLE_S)
INTAKE_SLOTS = 32
#: deliveries waiting for a slot; more are refused at once
INTAKE_BACKLOG = 32
#: while the oldest waiting delivery has waited this long, new ones are refused at once
SHED_WAIT_S = 0.1
#: a delivery not acknowledged this long after its body arrived gets 503
ACK_DEADLINE_S = 2.0
RETRY_AFTER_S = "5"

BUSY = Answer(503, {"error": "too many deliveries at once, retry later"})
SLOW_BODY = Answer(408, {"error": "the request body arrived too slowly"})


class ByteBudget:
    """A count of bytes held, shared by every request of the process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class IntakePool:
    """At most ``slots`` intakes at once, ``backlog`` more waiting; none started late.

    Threads of this process by default (each call gets the caller's context). After
    ``use_processes(n, ctx)``: ``n`` worker processes, each with its own context built
    from ``ctx``'s settings, so intakes run on every core.
    """

    def __init__(
        self, slots: int, backlog: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.slots, self.backlog = slots, backlog
        self._executor: concurrent.futures.Executor | None = None
        self._settings: Settings | None = None
        self._setup: Callable[[], None] | None = None
        self._prefix = ""
        #: submitted and not done, oldest first, with when each was submitted
        self._pending: dict[int, float] = {}
        self._serial = 0
        self._clock = clock
        self._lock = threading.Lock()
        #: deliveries refused because the pool was full or its queue too old
        self.shed = 0

    @property
    def processes(self) -> int:
        return self.slots if self._settings is not None else 0

    def use_processes(
        self, n: int, ctx: AppContext, setup: Callable[[], None] | None = None
    ) -> None:
        """Run every later intake in one of ``n`` processes (started now, so the first
        deliveries do not wait for their imports). Each builds its context from ``ctx``'s
        settings and table prefix, after calling ``setup`` (logging)."""
        self.shutdown()
        with self._lock:
            self.slots, self._settings, self._setup = n, ctx.settings, setup
            self._prefix = ctx.tables.prefix
            self._executor = self._new_executor()
        warm = [self._executor.submit(_ready) for _ in range(n)]
        concurrent.futures.wait(warm, timeout=60)

    def _new_executor(self) -> concurrent.futures.Executor:
        if self._settings is None:
            return concurrent.futures.ThreadPoolExecutor(self.slots, thread_name_prefix="intake")
        return concurrent.futures.ProcessPoolExecutor(
            self.slots,
            # spawn, not fork: this process has threads (a fork could copy a held lock)
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_process,
            # this process's id, not the child's getppid() then: a child that starts after
            # the server died would take its new parent (init) for the server, forever
            initargs=(self._settings, self._prefix, self._setup, os.getpid()),
        )

    def receive(
        self, ctx: AppContext, headers: dict[str, str], body: bytes | bytearray, digests: wh.Digests
    ) -> concurrent.futures.Future[Answer] | None:
        """``intake.receive`` on the pool; None when it is full (the caller sheds)."""
        if self._settings is None:
            if timeline.on():
                rid = headers.get("x-request-id", "")
                return self._submit(_timed_receive, rid, ctx, headers, body, digests)
            return self._submit(intake.receive, ctx, headers, body, digests)
        return self._submit(_receive_in_process, headers, bytes(body), dict(digests))

    def waited_s(self) -> float:
        """How long the oldest delivery still waiting for a slot has waited (0: none waits).

        The executor starts work in submission order, so the ``slots`` oldest pending
        deliveries are the running ones and the next one is the oldest waiting."""
        with self._lock:
            return self._waited_s()

    def _waited_s(self) -> float:
        if len(self._pending) <= self.slots:
            return 0.0
        since = next(itertools.islice(self._pending.values(), self.slots, None))
        return self._clock() - since

    def overloaded(self) -> bool:
        """True when a new delivery would be refused (full, or its queue too old)."""
        with self._lock:
            return self._overloaded()

    def _overloaded(self) -> bool:
        full = len(self._pending) >= self.slots + self.backlog
        return full or self._waited_s() >= SHED_WAIT_S

    def _submit(
        self, fn: Callable[..., Answer], *args: Any
    ) -> concurrent.futures.Future[Answer] | None:
        with self._lock:
            if self._overloaded():
                self.shed += 1
                return None
            if self._executor is None:
                self._executor = self._new_executor()
            executor = self._executor
            self._serial += 1
            ticket = self._serial
            self._pending[ticket] = self._clock()
        done = functools.partial(self._done, ticket)
        try:
            try:
                future = executor.submit(fn, *args)
            except BrokenProcessPool:
                # A worker process died (killed, out of memory): start a new pool.
                log.warning("webhook: an intake process died; starting new ones")
                with self._lock:
                    if self._executor is executor:
                        self._executor = self._new_executor()
                    executor = self._executor
                future = executor.submit(fn, *args)
        except BaseException:
            done(None)
            raise
        future.add_done_callback(done)
        return future

    def _done(self, ticket: int, _: concurrent.futures.Future[Answer] | None) -> None:
        with self._lock:
            self._pending.pop(ticket, None)

    def shutdown(self) -> None:
        """Stop the workers (waiting intakes are cancelled, running ones finish); back to
        threads."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._settings = self._setup = None
            self.slots = INTAKE_SLOTS
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


#: an intake process's own context (see ``IntakePool.use_processes``)
_PROCESS_CTX: AppContext | None = None


def _start_process(
    settings: Settings, prefix: str, setup: Callable[[], None] | None, parent: int
) -> None:
    global _PROCESS_CTX
    from ..context import AppContext

    if setup is not None:
        setup()
    # The serving process stops its workers itself (a Ctrl-C reaches the whole group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _PROCESS_CTX = AppContext.from_settings(settings, prefix=prefix)


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """End this intake process once its server is gone (killed -9, its pool never shut
    down): the pool's pipes stay open in the process itself, so it would wait forever."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)


def _ready() -> bool:
    return _PROCESS_CTX is not None


def _timed_receive(
    rid: str, ctx: AppContext, headers: dict[str, str], body: bytes, digests: wh.Digests
) -> Answer:
    """``intake.receive`` with its start and end on the timeline (see ``timeline``)."""
    timeline.set_request(rid)
    timeline.mark("intake_start", rid)
    try:
        return intake.receive(ctx, headers, body, digests)
    finally:
        timeline.mark("intake_end", rid)
        timeline.set_request("")


def _receive_in_process(headers: dict[str, str], body: bytes, digests: wh.Digests) -> Answer:
    assert _PROCESS_CTX is not None, "an intake process runs _start_process first"
    return intake.receive(_PROCESS_CTX, headers, body, digests)


BUDGET = ByteBudget(BODY_BUDGET)
POOL = IntakePool(INTAKE_SLOTS, INTAKE_BACKLOG)


def to_response(answer: Answer) -> Response:
    headers = {"Retry-After": RETRY_AFTER_S} if answer.status == 503 else None
    if answer.body is None:
        return Response(status_code=answer.status, headers=headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


async def read_body(
    request: Request, signer: wh.StreamSigner, budget: ByteBudget
) -> tuple[bytearray | None, Answer | None, int]:
    """(body, None, bytes taken from ``budget``) or (None, the refusal, bytes taken).

    The caller gives the taken bytes back once nothing holds the body any more.
    """
    declared = request.headers.get("content-length", "").strip()
    size = int(declared) if declared.isdigit() else None
    if size is not None and size > MAX_BODY:
        return None, TOO_LARGE, 0
    taken = size or 0
    if not budget.take(taken):
        return None, BUSY, 0
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_DEADLINE_S):
            async for chunk in request.stream():
                if len(body) + len(chunk) > MAX_BODY:
                    return None, TOO_LARGE, taken
                grow = len(body) + len(chunk) - taken
                if grow > 0:
                    if not budget.take(grow):
                        return None, BUSY, taken
                    taken += grow
                body += chunk
                signer.update(chunk)
    except TimeoutError:
        return None, SLOW_BODY, taken
    return body, None, taken


async def github_webhook(request: Request, ctx: AppContext) -> Response:
    headers = dict(request.headers)
    if timeline.on():
        rid = headers.get("x-request-id", "")
        timeline.mark("handler", rid)
        response = await _github_webhook(request, ctx, headers)
        timeline.mark("answer", rid, str(response.status_code))
        return response
    return await _github_webhook(request, ctx, headers)


async def _github_webhook(request: Request, ctx: AppContext, headers: dict[str, str]) -> Response:
    if not wh.signature_well_formed(headers.get("x-hub-signature-256")):
        return to_response(wh.UNAUTHORIZED)  # the body is never read
    if POOL.overloaded():
        return to_response(BUSY)  # shed before reading (and hashing) the body
    signer = wh.StreamSigner([ctx.settings.webhook_secret])
    budget = BUDGET
    body, refusal, taken = await read_body(request, signer, budget)
    if body is None:
        budget.give(taken)
        return to_response(refusal or BUSY)
    if timeline.on():
        timeline.mark("body", headers.get("x-request-id", ""))
    # Table and queue calls block: a bounded pool runs them, off the event loop.
    future = POOL.receive(ctx, headers, body, signer.digests())
    if future is None:
        budget.give(taken)
        return to_response(BUSY)
    future.add_done_callback(lambda _: budget.give(taken))
    try:
        answer = await asyncio.wait_for(asyncio.wrap_future(future), ACK_DEADLINE_S)
    except BrokenProcessPool:
        # Its intake process died (the next delivery gets new ones); the markers it may
        # have written make GitHub's redelivery name its job or adopt it.
        return to_response(BUSY)
    except TimeoutError:
        # Not started yet: it never will be. Running: it finishes on its own (its
        # markers make GitHub's redelivery name its job, or adopt it).
        future.cancel()
        log.warning("webhook: delivery not acknowledged within %.0f s: 503", ACK_DEADLINE_S)
        return to_response(BUSY)
    return to_response(answer)


ROUTES = [
    ApiRoute("github_webhook", "/api/github/webhook", ("POST",), github_webhook, auth="hmac"),
]
