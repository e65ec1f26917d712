"""One worker process seen from the server: start it, send it one invocation, kill it and its group.

The worker runs bootstrap.py under the runtime's interpreter in isolated mode, in its own session
(process group), with an environment built from scratch. Its stdout/stderr are read by a thread
that logs every line to ``gitops_sync.functions``, tagged with function, version and invocation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import FUNCTIONS_LOGGER, WorkerLost, WorkerStartError, WorkerTimedOut

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
HEADER = struct.Struct(">II")
LOG_MARK = b"\x1e"
log = logging.getLogger(FUNCTIONS_LOGGER)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start a worker of one version."""

    function: str
    version: int
    executable: str
    root: Path
    handler: str
    memory_mb: int
    env: Mapping[str, str]
    pycache: Path
    start_timeout: float = 60.0


class Worker:
    """A running worker process; ``invoke`` is called by one thread at a time."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.invocation = ""
        self.idle_since = time.monotonic()
        self.base_bytes = 0
        self._dead = False
        self._kill_lock = threading.Lock()
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        life_r, self._life_w = os.pipe()
        log_r, log_w = os.pipe()
        config = {
            "function": spec.function,
            "version": spec.version,
            "handler": spec.handler,
            "root": str(spec.root),
            "memory_mb": spec.memory_mb,
            "req_fd": req_r,
            "resp_fd": resp_w,
            "life_fd": life_r,
        }
        argv = [spec.executable, "-I", "-S", "-X", f"pycache_prefix={spec.pycache}"]
        try:
            self.proc = subprocess.Popen(
                [*argv, str(BOOTSTRAP), json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=log_w,
                stderr=log_w,
                pass_fds=(req_r, resp_w, life_r),
                cwd=spec.root,
                env=dict(spec.env),
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (req_r, self._req_w, self._resp_r, resp_w, life_r, self._life_w, log_r):
                os.close(fd)
            raise WorkerStartError(502, f"worker could not be started: {exc}") from exc
        finally:
            os.close(log_w)
        for fd in (req_r, resp_w, life_r):
            os.close(fd)
        self.pid = self.proc.pid
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

    @property
    def alive(self) -> bool:
        return not self._dead and self.proc.poll() is None

    def invoke(
        self, invocation_id: str, payload: bytes, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        """Runs one invocation; raises WorkerTimedOut (worker killed) or WorkerLost."""
        self.invocation = invocation_id
        deadline = time.monotonic() + timeout
        meta = json.dumps({"id": invocation_id, "timeout": timeout}).encode()
        try:
            _write_all(self._req_w, HEADER.pack(len(meta), len(payload)) + meta + payload)
        except OSError:
            raise WorkerLost(self._death_reason()) from None
        try:
            return self._read_frame(deadline)
        finally:
            self.invocation = ""

    def _read_frame(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        head = self._read_exact(HEADER.size, deadline)
        meta_len, payload_len = HEADER.unpack(head)
        meta = json.loads(self._read_exact(meta_len, deadline)) if meta_len else {}
        payload = self._read_exact(payload_len, deadline) if payload_len else b""
        return meta, payload

    def _read_exact(self, size: int, deadline: float) -> bytes:
        chunks = []
        while size:
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([self._resp_r], [], [], remaining)[0]
            if not ready:
                self.kill()
                raise WorkerTimedOut()
            chunk = os.read(self._resp_r, min(size, 1 << 20))
            if not chunk:
                raise WorkerLost(self._death_reason())
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _death_reason(self) -> str:
        self.kill()
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"worker process was killed by {name}"
        return f"worker process exited with code {code}"

    def signal_kill(self) -> None:
        """SIGKILL the worker's process group; safe from any thread (the pipes stay open)."""
        if self.proc.returncode is None:
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
        self.proc.wait()
        for fd in (self._req_w, self._resp_r, self._life_w):
            with contextlib.suppress(OSError):
                os.close(fd)

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
