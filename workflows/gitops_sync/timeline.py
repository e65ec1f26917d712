"""An opt-in timeline of the webhook path, to find where slow answers spend their time.

``GITOPS_SYNC_TIMELINE=<file>`` makes the serving process record, in memory, one event per
step of each webhook delivery (handler start, body read, intake start and end, every
storage call's start and end, answer), every garbage collection of this interpreter
(``gc.callbacks``), and the event loop's lag (a 10 ms tick, how late it woke). The
events are written to ``<file>`` as JSON lines when the process exits. Times are
``time.monotonic_ns()`` (CLOCK_MONOTONIC), the clock of every process on the machine
(Node's ``process.hrtime`` too), so other sides' timelines line up with this one.

A request is named by its ``X-Request-Id`` header (the benchmark sends one); storage
calls are named by the intake thread's current request. Off (the default) every hook is
a single ``is None`` test. On, the events stay in memory until exit: for benchmarks, not
for a long-running server.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import threading
import time
from typing import Any

#: the event loop's probe interval
TICK_S = 0.01

#: (monotonic ns, event, request id or "", detail); None when the timeline is off
_events: list[tuple[int, str, str, str]] | None = None
_local = threading.local()


def start(path: str) -> bool:
    """Start recording if ``path`` names a file (the local stack passes
    ``GITOPS_SYNC_TIMELINE``); True if on."""
    global _events
    path = path.strip()
    if not path or _events is not None:
        return _events is not None
    _events = []
    gc.callbacks.append(_on_gc)
    atexit.register(write, path)
    return True


def stop() -> None:
    """Stop recording and drop the events (nothing is written)."""
    global _events
    if _events is None:
        return
    _events = None
    gc.callbacks.remove(_on_gc)
    atexit.unregister(write)


def on() -> bool:
    return _events is not None


def mark(event: str, request: str = "", detail: str = "") -> None:
    """Record ``event`` now (list.append is atomic: any thread may call this)."""
    if _events is not None:
        _events.append((time.monotonic_ns(), event, request, detail))


def set_request(request: str) -> None:
    """Name the request this thread works for (its storage calls are marked with it)."""
    _local.request = request


def request() -> str:
    return str(getattr(_local, "request", ""))


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if _events is not None:
        _events.append((time.monotonic_ns(), "gc_" + phase, "", str(info.get("generation"))))


async def loop_probe() -> None:
    """Record how late each ``TICK_S`` sleep of the running loop woke (until cancelled)."""
    if _events is None:
        return
    while True:
        before = time.monotonic_ns()
        await asyncio.sleep(TICK_S)
        late = time.monotonic_ns() - before - int(TICK_S * 1e9)
        _events.append((before, "loop_lag", "", str(max(late, 0))))


def write(path: str) -> None:
    """Write the events as JSON lines (``[ns, event, request, detail]``)."""
    if _events is None:
        return
    with open(path, "w", encoding="utf-8") as out:
        for ev in list(_events):
            out.write(json.dumps(ev) + "\n")
