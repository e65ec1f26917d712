"""The HTTP half of the local stack: the Starlette app under uvicorn on 127.0.0.1:PORT.

The socket is bound up front, so a taken port fails at once with one clear line
and ``--port 0`` gets a free one; stopping is the stack's job, not uvicorn's.

HTTP is parsed by httptools and the stack's event loop is uvloop's (both C; uvicorn's
pure-Python defaults, h11 on asyncio's loop, cost about twice the CPU per webhook
delivery in the serving process). ``GITOPS_SYNC_PURE_HTTP=1`` selects h11 and asyncio's
loop instead (for comparisons, or a platform without their wheels).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from ..core.errors import UsageError

log = logging.getLogger("gitops_sync")

LOOPBACK = "127.0.0.1"


def pure_python() -> bool:
    """True when ``GITOPS_SYNC_PURE_HTTP`` asks for h11 and asyncio's own loop."""
    return os.environ.get("GITOPS_SYNC_PURE_HTTP", "").strip() not in ("", "0")


def http_impl() -> str:
    """uvicorn's HTTP/1.1 protocol: httptools (C) unless pure Python is asked for."""
    if pure_python():
        return "h11"
    import httptools  # noqa: F401  (a pinned dependency: fail here, not inside uvicorn)

    return "httptools"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop, or None (asyncio's) when pure Python is asked for."""
    if pure_python():
        return None
    import uvloop

    return uvloop.new_event_loop


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM/SIGINT to the stack.

    uvicorn's own handlers re-raise the signal after shutdown, which would end
    the process "killed by SIGTERM" instead of exiting 0 after a clean stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(port: int, host: str = LOOPBACK) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free one)."""
    # proto given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is
    # IPPROTO_TCP, and without it a keep-alive client waits ~40 ms (Nagle + delayed ACK)
    # for every response sent as headers then body.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use (try --port)") from exc
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class LocalServer:
    """uvicorn serving ``app`` on an already bound loopback socket.

    The app may be given later (``set_app``): the port is claimed before the
    slower parts of the stack (Azurite, storage clients) start.
    """

    def __init__(self, app: Any = None, port: int = 7071, host: str = LOOPBACK) -> None:
        self.host = host
        self.app = app
        self._sock = bind(port, host)
        self.port: int = self._sock.getsockname()[1]
        self._server: _QuietServer | None = None
        self._stopping = False

    def set_app(self, app: Any) -> None:
        self.app = app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def started(self) -> bool:
        return self._server is not None and bool(self._server.started)

    async def serve(self) -> None:
        """Serve until ``stop()``; in-flight requests finish first."""
        if self.app is None:
            raise RuntimeError("LocalServer.serve() without an app")
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            http=http_impl(),
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        self._server = _QuietServer(config)
        self._server.should_exit = self._stopping
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True

    def close(self) -> None:
        """Release the socket of a server that will not serve."""
        self._sock.close()
