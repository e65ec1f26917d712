"""The worker half of the local stack: a queue poller with the Functions queue trigger's rules.

A message is leased (received invisible) and its lease renewed while the handler
runs; success deletes it, a raised error leaves it to reappear after host.json's
``visibilityTimeout``, and past ``maxDequeueCount`` it moves to ``<queue>-poison``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..adapters.queues import QueuedMessage
from ..core.errors import GitopsSyncError
from ..core.redact import redact

log = logging.getLogger("gitops_sync")
T = TypeVar("T")

#: workflows/host.json, next to the package (the Functions app root)
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """host.json ``extensions.queues``, with the Functions host's defaults."""

    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0  # delay before a failed message is tried again
    batch_size: int = 16
    max_polling_interval_s: float = 60.0

    @classmethod
    def from_host_json(cls, path: Path = HOST_JSON) -> QueueOptions:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise GitopsSyncError(f"cannot read {path}: {exc}") from exc
        queues = (doc.get("extensions") or {}).get("queues") or {}
        base = cls()
        return cls(
            max_dequeue_count=int(queues.get("maxDequeueCount", base.max_dequeue_count)),
            visibility_timeout_s=_seconds(queues.get("visibilityTimeout"), 0.0, unit=1.0),
            batch_size=int(queues.get("batchSize", base.batch_size)),
            max_polling_interval_s=_seconds(
                queues.get("maxPollingInterval"), base.max_polling_interval_s, unit=0.001
            ),
        )


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)$")


def _seconds(value: Any, default: float, *, unit: float) -> float:
    """A host.json duration: a "[d.]hh:mm:ss" timespan, or a number in ``unit`` seconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value) * unit
    m = _TIMESPAN.match(str(value).strip())
    if not m:
        raise GitopsSyncError(f"host.json: {value!r} is not a duration (hh:mm:ss)")
    days, hours, minutes, secs = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)


# A received message: ``pop_receipt`` proves the lease and changes when it is renewed.
LeasedMessage = QueuedMessage


class LeaseQueue(Protocol):
    """What the poller needs from a queue (``adapters.queues.JobQueue`` for Azure Storage)."""

    name: str

    def receive(self, max_messages: int, lease_s: int) -> list[LeasedMessage]: ...
    def renew(self, msg: LeasedMessage, lease_s: int) -> LeasedMessage: ...
    def delete(self, msg: LeasedMessage) -> None: ...
    def release(self, msg: LeasedMessage, delay_s: int) -> None: ...
    def dead_letter(self, msg: LeasedMessage) -> None: ...


Handler = Callable[[str, "int | None"], None]


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a daemon thread: a stop that gives up on it never waits at exit.

    (``asyncio.to_thread`` threads are joined at interpreter exit, so one stuck
    sync would keep a stopped worker alive.)
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, name="gitops-sync-worker", daemon=True).start()
    return await fut


class QueuePoller:
    """Feed ``handle(body, dequeue_count)`` from ``queue``, at most ``concurrency`` at a time."""

    def __init__(
        self,
        queue: LeaseQueue,
        handle: Handler,
        options: QueueOptions | None = None,
        *,
        concurrency: int = 2,
        lease_s: int = 30,
        min_poll_s: float = 0.1,
        secrets: list[str] | None = None,
    ) -> None:
        self.queue = queue
        self.handle = handle
        self.options = options or QueueOptions.from_host_json()
        self.concurrency = max(1, min(concurrency, self.options.batch_size))
        self.lease_s = max(1, lease_s)
        self.min_poll_s = min_poll_s
        self.secrets = secrets or []
        self.processed = 0  # handled successfully and deleted
        self.failed = 0  # raised; left to reappear or moved to the poison queue
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, grace_s: float = 30.0) -> None:
        """Poll until ``stop()``, then give in-flight messages ``grace_s`` to finish."""
        idle_s = self.min_poll_s
        while not self._stop.is_set():
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                await self._wait_any(None)
                continue
            try:
                batch = await in_daemon_thread(self.queue.receive, free, self.lease_s)
            except Exception as exc:
                log.warning("queue %s: receive failed: %s", self.queue.name, self._say(exc))
                batch = []
            if not batch:
                # Empty or failing queue: back off exponentially, as the host does.
                await self._wait_any(idle_s)
                idle_s = min(idle_s * 2, max(self.options.max_polling_interval_s, self.min_poll_s))
                continue
            idle_s = self.min_poll_s
            for msg in batch:
                task = asyncio.create_task(self._process(msg))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            log.info("worker stopping: waiting for %d message(s)", len(self._in_flight))
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=grace_s)
            if pending:
                # Not deleted, so each reappears after its lease: the sync is crash-safe.
                log.warning("worker stopped with %d message(s) unfinished", len(pending))

    async def _wait_any(self, timeout: float | None) -> None:
        """Sleep until a message finishes, ``stop()`` is called, or ``timeout`` passes."""
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait(
                {stop, *self._in_flight}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()

    async def _process(self, msg: LeasedMessage) -> None:
        limit = self.options.max_dequeue_count
        if msg.dequeue_count > limit:
            # Leased more often than allowed without a verdict (workers died mid-run).
            await self._settle(self.queue.dead_letter, msg, "moved to poison (dequeue count %d)")
            return
        lease = _Lease(msg)
        renewer = asyncio.create_task(self._renew(lease))
        error: Exception | None = None
        try:
            await in_daemon_thread(self.handle, msg.body, msg.dequeue_count)
        except Exception as exc:
            error = exc
        finally:
            lease.done.set()
            await renewer  # ends at once, or after the renewal under way (its receipt counts)
        if error is None:
            self.processed += 1
            await self._settle(self.queue.delete, lease.msg, "")
            return
        self.failed += 1
        log.warning(
            "message %s failed (attempt %d of %d): %s",
            msg.id,
            msg.dequeue_count,
            limit,
            self._say(error),
        )
        if msg.dequeue_count >= limit:
            await self._settle(self.queue.dead_letter, lease.msg, "moved to poison (attempt %d)")
        else:
            delay = int(self.options.visibility_timeout_s)
            await self._settle(lambda m: self.queue.release(m, delay), lease.msg, "")

    async def _renew(self, lease: _Lease) -> None:
        # Like the host, keep the message invisible while the handler runs, so a
        # long sync is not handed to a second worker; a dead worker stops renewing.
        while True:
            try:
                await asyncio.wait_for(lease.done.wait(), self.lease_s / 3)
                return
            except TimeoutError:
                pass
            try:
                lease.msg = await in_daemon_thread(self.queue.renew, lease.msg, self.lease_s)
            except Exception as exc:
                log.warning("message %s: lease renewal failed: %s", lease.msg.id, self._say(exc))

    async def _settle(
        self, act: Callable[[LeasedMessage], None], msg: LeasedMessage, note: str
    ) -> None:
        try:
            await in_daemon_thread(act, msg)
        except Exception as exc:
            # The lease lapses and the message comes back: at-least-once, as in Azure.
            log.warning("message %s: could not settle: %s", msg.id, self._say(exc))
            return
        if note:
            log.warning("message %s " + note, msg.id, msg.dequeue_count)

    def _say(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc), self.secrets)


class _Lease:
    """The current pop receipt of one in-flight message (renewal replaces it)."""

    __slots__ = ("done", "msg")

    def __init__(self, msg: LeasedMessage) -> None:
        self.msg = msg
        self.done = asyncio.Event()
