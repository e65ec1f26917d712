"""The workers of one function version: admission (max_concurrency), warm workers, reaping, drain.

An invocation is admitted while fewer than ``max_concurrency`` are in flight; an admitted one gets
an idle worker, starts a new one, or waits for one being started or released. Workers that
misbehaved are killed on check-in; the pool tops itself back up to its warm count in the background.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import Enum

from .model import FUNCTIONS_LOGGER, VersionRef, WorkerStartError
from .worker import Worker

log = logging.getLogger(FUNCTIONS_LOGGER)
SPAWN_RETRY_SECONDS = 30.0  # after a failed background start, wait this long before warming again


class Admission(Enum):
    ADMITTED = "admitted"
    BUSY = "busy"  # max_concurrency in flight: answer 429
    RETIRED = "retired"  # the pool is draining: look up the active version again


class Pool:
    """Workers of one version. Thread-safe."""

    def __init__(self, ref: VersionRef, start_worker: Callable[[], Worker]) -> None:
        self.ref = ref
        self.max_concurrency = int(ref.config.get("max_concurrency", 10))
        self.warm_workers = int(ref.config.get("warm_workers", 1))
        self._start_worker = start_worker
        self._cond = threading.Condition()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self._inflight = 0
        self._waiting = 0  # admitted invocations waiting for a warm worker being started
        self._warming = 0  # workers being started in the background (they go to idle)
        self._retired = False
        self._spawn_failed_at = -SPAWN_RETRY_SECONDS
        self.last_used = time.monotonic()
        self.limit = ""  # the memory limit in force, as the last started worker reported it

    # -- invocations --------------------------------------------------------------------------
    def admit(self) -> Admission:
        with self._cond:
            if self._retired:
                return Admission.RETIRED
            if self._inflight >= self.max_concurrency:
                return Admission.BUSY
            self._inflight += 1
            self.last_used = time.monotonic()
            return Admission.ADMITTED

    def checkout(self, wait_seconds: float) -> Worker:
        """A worker for an admitted invocation, or WorkerStartError (then call ``leave``)."""
        deadline = time.monotonic() + wait_seconds
        with self._cond:
            while True:
                if self._idle:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker
                if self._warming > self._waiting:  # a warm worker on its way: wait for it
                    self._waiting += 1
                    try:
                        self._cond.wait(max(0.0, deadline - time.monotonic()))
                    finally:
                        self._waiting -= 1
                    if time.monotonic() >= deadline:
                        raise WorkerStartError(502, "no worker became free in time")
                    continue
                if self._count() < self.max_concurrency:
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerStartError(502, "no worker became free in time")
                self._cond.wait(remaining)
        try:
            worker = self._start_worker()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            self._busy.add(worker)
            self.limit = worker.limit
        return worker

    def checkin(self, worker: Worker, *, healthy: bool) -> None:
        """Takes a worker back after an invocation; an unhealthy one is killed and replaced."""
        with self._cond:
            self._busy.discard(worker)
            self._inflight -= 1
            keep = healthy and worker.alive and not self._retired
            if keep:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
            self._cond.notify_all()
        if not keep:
            worker.kill()
            self.warm_up()

    def leave(self) -> None:
        """An admitted invocation that got no worker."""
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    # -- warm workers, idle reaping, drain ----------------------------------------------------
    def warm_up(self) -> None:
        """Starts workers in the background until ``warm_workers`` exist (not when retired)."""
        with self._cond:
            if self._retired or time.monotonic() - self._spawn_failed_at < SPAWN_RETRY_SECONDS:
                return
            missing = max(0, min(self.warm_workers, self.max_concurrency) - self._count())
            self._starting += missing
            self._warming += missing
        for _ in range(missing):
            threading.Thread(target=self._start_idle, daemon=True).start()

    def _start_idle(self) -> None:
        try:
            worker = self._start_worker()
        except Exception as exc:
            log.warning("function=%s version=%s warm worker failed: %s", *self._who(), exc)
            with self._cond:
                self._starting -= 1
                self._warming -= 1
                self._spawn_failed_at = time.monotonic()
                self._cond.notify_all()
            return
        with self._cond:
            self._starting -= 1
            self._warming -= 1
            self.limit = worker.limit
            stale = self._retired
            if not stale:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
            self._cond.notify_all()
        if stale:
            worker.kill()

    def reap(self, keep_warm: int, idle_seconds: float) -> None:
        """Stops idle workers beyond ``keep_warm`` that have been idle for ``idle_seconds``."""
        now = time.monotonic()
        with self._cond:
            self._idle.sort(key=lambda w: w.idle_since)  # oldest first
            excess = len(self._idle) - (0 if self._retired else keep_warm)
            victims = [
                w for w in self._idle[: max(0, excess)] if now - w.idle_since >= idle_seconds
            ]
            if self._retired:
                victims = list(self._idle)
            for worker in victims:
                self._idle.remove(worker)
        for worker in victims:
            worker.kill()

    def retire(self) -> None:
        """Stops idle workers now; busy ones finish their invocation and are stopped on check-in."""
        with self._cond:
            self._retired = True
            victims, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in victims:
            worker.kill()

    def close(self) -> None:
        """Kills every worker, busy ones included (server shutdown)."""
        with self._cond:
            self._retired = True
            idle, busy = self._idle, list(self._busy)
            self._idle = []
            self._cond.notify_all()
        for worker in idle:
            worker.kill()
        for worker in busy:  # its invoking thread sees EOF, answers 502 and releases the worker
            worker.signal_kill()

    @property
    def retired(self) -> bool:
        return self._retired

    @property
    def idle(self) -> bool:
        """No worker and nothing in flight."""
        with self._cond:
            return self._count() == 0 and self._inflight == 0

    @property
    def drained(self) -> bool:
        with self._cond:
            return self._retired and self._count() == 0 and self._inflight == 0

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {
                "warm": len(self._idle),
                "busy": len(self._busy),
                "starting": self._starting,
                "in_flight": self._inflight,
            }

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in (*self._idle, *self._busy)]

    def _count(self) -> int:
        return len(self._idle) + len(self._busy) + self._starting

    def _who(self) -> tuple[str, int]:
        return self.ref.name, self.ref.version
