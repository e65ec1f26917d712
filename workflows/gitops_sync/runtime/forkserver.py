"""The fork server: one warm interpreter per Python runtime that forks workers on request.

A worker forked from it skips interpreter start-up and the stdlib imports (the cold start is the
handler's own import). It runs bootstrap.py in isolated mode like any worker; it is told over a
SOCK_SEQPACKET socket what to start, with the worker's pipes passed as file descriptors.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import WorkerStartError

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")


def interpreter_argv(executable: str, pycache: Path) -> list[str]:
    """Isolated mode (-I: no user site, no PYTHON* variables), no site-packages (-S)."""
    return [executable, "-I", "-S", "-X", f"pycache_prefix={pycache}", str(BOOTSTRAP)]


class ForkServer:
    """A running fork server process; ``spawn`` is thread-safe."""

    def __init__(self, executable: str, pycache: Path, env: Mapping[str, str]) -> None:
        self.executable = executable
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [
                    *interpreter_argv(executable, pycache),
                    json.dumps({"control_fd": theirs.fileno()}),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            self._sock.close()
            raise WorkerStartError(502, f"{executable} could not be started: {exc}") from exc
        finally:
            theirs.close()
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, request: Mapping[str, Any], fds: Sequence[int], timeout: float) -> int:
        """Forks a worker with ``fds`` (request, response, lifeline, log); returns its pid."""
        with self._lock:
            self._sock.settimeout(timeout)
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], list(fds))
                reply = self._sock.recv(65536)
            except OSError as exc:
                raise WorkerStartError(502, f"the fork server failed: {exc}") from exc
        if not reply:
            raise WorkerStartError(502, "the fork server exited")
        return int(json.loads(reply)["pid"])

    def close(self) -> None:
        """Stops the fork server (its workers have their own lifelines to the server)."""
        self._sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.alive else []


def close_quietly(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
