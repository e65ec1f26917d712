"""One process running any part of the local stack: Azurite, the HTTP API, the queue worker.

``serve``, ``worker`` and ``dev`` are this with different parts switched on; SIGTERM
or SIGINT stops them in order (HTTP, then the worker's in-flight messages, then Azurite).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..core.errors import UsageError
from ..core.redact import redact
from ..settings import Settings
from .poller import QueueOptions, QueuePoller, in_daemon_thread
from .server import LocalServer, loop_factory

log = logging.getLogger("gitops_sync")


@dataclass(frozen=True, slots=True)
class StackOptions:
    http: bool = True
    worker: bool = True
    azurite: bool = False  # start a private Azurite and point the settings at it
    port: int = 7071
    concurrency: int = 2
    lease_s: int = 30
    grace_s: float = 30.0
    reconcile: bool = True  # the periodic reconcile timer (with the worker)
    stop_with_parent: bool = False  # stop when the parent process goes (`make dev` killed)


class Stack:
    """Build with settings and options; ``run()`` blocks until a signal or ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        options: StackOptions,
        on_ready: Callable[[Stack], None] | None = None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.on_ready = on_ready
        self.server: LocalServer | None = None
        self.poller: QueuePoller | None = None
        self.azurite: Any = None
        self.ctx: Any = None
        self.queue_options = QueueOptions.from_host_json()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str | None:
        return self.server.url if self.server else None

    def run(self) -> None:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(self._main())

    def stop(self) -> None:
        """Ask a running stack to stop (safe from any thread or signal)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        opts = self.options
        watcher = asyncio.create_task(self._watch_parent()) if opts.stop_with_parent else None
        try:
            # Bind first: a taken port fails at once, before Azurite spends seconds starting.
            if opts.http:
                self.server = LocalServer(None, opts.port)
            if opts.azurite:
                await in_daemon_thread(self._start_azurite)
            self.ctx = await in_daemon_thread(self._build_context)
            await self._serve_until_stopped()
        finally:
            if watcher is not None:
                watcher.cancel()
            if self.server is not None and not self.server.started:
                self.server.close()
            if self.ctx is not None:
                await in_daemon_thread(self.ctx.close)  # stops every function worker
            if self.azurite is not None:
                log.info("stopping Azurite")
                await in_daemon_thread(self.azurite.stop)

    async def _watch_parent(self, every_s: float = 0.5) -> None:
        """Stop when the parent process is gone (we are re-parented): a TERM sent to
        `make`'s PID alone reaches the shell it started, never this process."""
        assert self._stop is not None
        parent = os.getppid()
        while not self._stop.is_set():
            await asyncio.sleep(every_s)
            if os.getppid() != parent:
                log.info("the parent process %d is gone, stopping", parent)
                self._stop.set()
                return

    def _on_signal(self, sig: int) -> None:
        assert self._stop is not None
        if self._stop.is_set() and sig == signal.SIGINT:
            # A second Ctrl-C: stop waiting for in-flight work, but never leave Azurite behind.
            if self.azurite is not None:
                self.azurite.stop()
            raise KeyboardInterrupt
        log.info("received %s, stopping", signal.Signals(sig).name)
        self._stop.set()

    def _start_azurite(self) -> None:
        from ..adapters.azurite import Azurite

        self.azurite = Azurite().start()
        self.settings = dataclasses.replace(
            self.settings,
            storage_connection=self.azurite.connection_string,
            storage_account_name=None,
        )

    def _build_context(self) -> Any:
        from ..context import AppContext

        ctx = AppContext.from_settings(self.settings)
        ctx.enforce_keys = True  # no Functions host here to check function keys
        # The worker records a job failed on its last attempt: the same limit as the poller's.
        ctx.max_dequeue = self.queue_options.max_dequeue_count
        if not self.settings.workspace_share:
            # A folder on this machine: flock locks, which a killed worker frees at once
            # (a blob lease would hold the workspace up to a minute after a kill -9).
            from .file_leases import FileLeases

            root = str(self.settings.workspace_root.absolute())
            ctx.leases = cast(Any, FileLeases(self.settings.cache_dir.parent / "locks", root))
        return ctx

    async def _serve_until_stopped(self) -> None:
        assert self._stop is not None
        opts = self.options
        tasks: list[asyncio.Task[None]] = []
        probe: asyncio.Task[None] | None = None
        if self.server is not None:
            from .. import timeline
            from ..http.app import create_app

            self.server.set_app(create_app(self.ctx))
            tasks.append(asyncio.create_task(self.server.serve(), name="http"))
            if timeline.start(os.environ.get("GITOPS_SYNC_TIMELINE", "")):  # opt-in
                probe = asyncio.create_task(timeline.loop_probe(), name="timeline")
            # The runtime starts with the server: warm workers for the active versions are
            # loading while the first requests arrive (a storage hiccup here only delays it).
            _ = self.ctx.live
        if opts.worker:
            self.poller = self._build_poller()
            tasks.append(asyncio.create_task(self.poller.run(grace_s=opts.grace_s), name="worker"))
            if opts.reconcile and self.settings.reconcile_interval_s > 0:
                tasks.append(asyncio.create_task(self._reconcile_timer(), name="reconcile"))
        if self.server is not None:
            while not self.server.started and not self._stop.is_set():
                if tasks[0].done():
                    break
                await asyncio.sleep(0.02)
        ready = not self._stop.is_set() and not any(t.done() for t in tasks)
        if self.on_ready is not None and ready:
            self.on_ready(self)
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        # Stop order: no new requests, then no new messages (in-flight ones finish).
        if self.server is not None:
            self.server.stop()
        if self.poller is not None:
            self.poller.stop()
        self._stop.set()
        stopper.cancel()
        if probe is not None:
            probe.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for task, result in zip(tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                if isinstance(result, SystemExit | KeyboardInterrupt):
                    raise result
                raise UsageError(f"{task.get_name()} stopped: {self._say(result)}") from result

    def _build_poller(self) -> QueuePoller:
        from ..adapters.queues import JobQueue
        from ..context import storage_connection
        from ..worker import handle_message

        conn = storage_connection(self.settings)
        if not conn:
            raise UsageError(
                "the local worker needs AzureWebJobsStorage as a connection string"
                " (identity-based storage is for Azure)"
            )
        queue = JobQueue.from_connection_string(conn, self.settings.queue)
        return QueuePoller(
            queue,
            functools.partial(handle_message, self.ctx),
            self.queue_options,
            concurrency=self.options.concurrency,
            lease_s=self.options.lease_s,
            secrets=self.settings.secrets(),
        )

    async def _reconcile_timer(self) -> None:
        """The Functions timer trigger's local twin: ``reconcile(ctx)`` every interval."""
        from ..worker import reconcile

        assert self._stop is not None
        interval = self.settings.reconcile_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                await in_daemon_thread(reconcile, self.ctx)
            except Exception as exc:
                log.warning("reconcile failed: %s", self._say(exc))

    def _say(self, exc: BaseException) -> str:
        return redact(str(exc) or type(exc).__name__, self.settings.secrets())
