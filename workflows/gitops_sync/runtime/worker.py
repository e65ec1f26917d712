"""One worker process seen from the server: start it, send it one invocation, kill it and its group.

The worker is forked by the runtime's fork server (bootstrap.py, isolated mode) into its own
session (process group), with an environment built from scratch. Its stdout/stderr are read by a
thread that logs every line to ``gitops_sync.functions``, tagged with function, version, invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .forkserver import ForkServer, close_quietly
from .limits import CgroupMemory
from .model import FUNCTIONS_LOGGER, WorkerLost, WorkerStartError, WorkerTimedOut

HEADER = struct.Struct(">II")
LOG_MARK = b"\x1e"
log = logging.getLogger(FUNCTIONS_LOGGER)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start a worker of one version."""

    function: str
    version: int
    forkserver: ForkServer
    cgroup: CgroupMemory | None
    root: Path
    handler: str
    memory_mb: int
    env: Mapping[str, str]
    start_timeout: float = 60.0


class Worker:
    """A running worker process; ``invoke`` is called by one thread at a time."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.invocation = ""
        self.idle_since = time.monotonic()
        self.base_bytes = 0
        self._dead = False
        self._buf = bytearray()
        self._kill_lock = threading.Lock()
        req_r, self._req_w = os.pipe()
        os.set_blocking(self._req_w, False)
        self._resp_r, resp_w = os.pipe()
        life_r, self._life_w = os.pipe()
        log_r, log_w = os.pipe()
        self.cgroup_path: Path | None = None
        self.oom_killed = False
        self.limit = "rlimit"
        if spec.cgroup is not None:
            try:
                self.cgroup_path = spec.cgroup.create(spec.memory_mb)
            except OSError as exc:
                log.warning(
                    "no memory cgroup for a worker of %s (%s): RLIMIT_AS", spec.function, exc
                )
        request = {
            "config": {
                "cgroup_procs": str(self.cgroup_path / "cgroup.procs")
                if self.cgroup_path
                else None,
                "function": spec.function,
                "version": spec.version,
                "handler": spec.handler,
                "root": str(spec.root),
                "memory_mb": spec.memory_mb,
            },
            "env": dict(spec.env),
            "cwd": str(spec.root),
        }
        try:
            self.pid = spec.forkserver.spawn(
                request, (req_r, resp_w, life_r, log_w), spec.start_timeout
            )
        except WorkerStartError:
            close_quietly((self._req_w, self._resp_r, self._life_w, log_r))
            if spec.cgroup is not None and self.cgroup_path is not None:
                spec.cgroup.remove(self.cgroup_path)
            raise
        finally:
            close_quietly((req_r, resp_w, life_r, log_w))
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:  # already gone: its exit frame tells why
            self._pidfd = None
        self._log_thread = threading.Thread(
            target=self._forward_logs, args=(log_r,), name=f"fn-log-{self.pid}", daemon=True
        )
        self._log_thread.start()
        try:
            meta, _ = self._read_frame(time.monotonic() + spec.start_timeout)
        except WorkerTimedOut:
            raise WorkerStartError(
                502, f"worker did not start within {spec.start_timeout:g} s"
            ) from None
        except WorkerLost as exc:
            raise WorkerStartError(502, str(exc)) from None
        if meta.get("kind") == "load_error":
            self.kill()
            raise WorkerStartError(500, str(meta.get("message")))
        if meta.get("kind") != "ready":
            self.kill()
            raise WorkerStartError(502, f"worker sent {meta.get('kind')!r} instead of ready")
        self.base_bytes = int(meta.get("base_bytes", 0))
        if meta.get("limit") == "cgroup" and spec.cgroup is not None:
            self.limit = spec.cgroup.description
        else:
            self.limit = f"RLIMIT_AS (+{self.base_bytes / 2**20:.0f} MiB headroom)"

    @property
    def alive(self) -> bool:
        return not self._dead and not self._exited(0)

    def _exited(self, timeout: float) -> bool:
        if self._pidfd is None:
            return True
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def invoke(
        self, invocation_id: str, payload: bytes, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        """Runs one invocation; raises WorkerTimedOut (worker killed) or WorkerLost."""
        self.invocation = invocation_id
        deadline = time.monotonic() + timeout
        meta = json.dumps({"id": invocation_id, "timeout": timeout}).encode()
        try:
            self._send(HEADER.pack(len(meta), len(payload)) + meta + payload, deadline)
        except OSError:  # its request pipe is closed: it died; the exit frame says how
            return self._read_frame(deadline)
        try:
            return self._read_frame(deadline)
        finally:
            self.invocation = ""

    def _send(self, data: bytes, deadline: float) -> None:
        """Writes a request (the pipe is non-blocking: a worker that stops reading times out)."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._req_w, view) :]
                continue
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._req_w], [], remaining)[1]:
                self.kill()
                raise WorkerTimedOut()

    def _read_frame(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        self._fill(HEADER.size, deadline)
        meta_len, payload_len = HEADER.unpack_from(self._buf)
        end = HEADER.size + meta_len + payload_len
        self._fill(end, deadline)
        frame, self._buf = self._buf[:end], self._buf[end:]
        meta = json.loads(frame[HEADER.size : HEADER.size + meta_len]) if meta_len else {}
        payload = bytes(frame[HEADER.size + meta_len :])
        if meta.get("kind") == "exited":  # written by the fork server when the worker ended
            self.kill()
            raise WorkerLost(_exit_reason(meta.get("code")))
        return meta, payload

    def _fill(self, size: int, deadline: float) -> None:
        """Reads until the buffer holds ``size`` bytes (usually one read per frame)."""
        while len(self._buf) < size:
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([self._resp_r], [], [], remaining)[0]
            if not ready:
                self.kill()
                raise WorkerTimedOut()
            chunk = os.read(self._resp_r, max(size - len(self._buf), 1 << 16))
            if not chunk:
                self.kill()
                raise WorkerLost("worker process ended")
            self._buf += chunk

    def signal_kill(self) -> None:
        """SIGKILL the worker's process group; safe from any thread (the pipes stay open)."""
        if not self._dead:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the process group, reap it, close its pipes. Idempotent; called by its user."""
        with self._kill_lock:
            if self._dead:
                return
            self._dead = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._exited(10.0)  # the fork server reaps it; wait until it has ended
        close_quietly((self._req_w, self._resp_r, self._life_w))
        if self._pidfd is not None:
            close_quietly((self._pidfd,))
        cgroup = self.spec.cgroup
        if cgroup is not None and self.cgroup_path is not None:
            self.oom_killed = cgroup.oom_killed(self.cgroup_path)
            cgroup.remove(self.cgroup_path)

    def _forward_logs(self, fd: int) -> None:
        spec = self.spec
        with open(fd, "rb", buffering=65536) as stream:
            for raw in iter(lambda: stream.readline(65536), b""):
                line = raw.rstrip(b"\n").decode("utf-8", "replace")
                invocation, source = self.invocation, "output"
                if raw.startswith(LOG_MARK):
                    invocation, source, line = ([*line[1:].split("\t", 2), "", ""])[:3]
                log.info(
                    "function=%s version=%s invocation=%s %s: %s",
                    spec.function,
                    spec.version,
                    invocation or "-",
                    source,
                    line,
                    extra={
                        "function": spec.function,
                        "function_version": spec.version,
                        "invocation_id": invocation or None,
                    },
                )


def _exit_reason(code: Any) -> str:
    if isinstance(code, int) and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process was killed by {name}"
    return f"worker process exited with code {code}"
