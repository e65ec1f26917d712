"""Real Azurite processes (blob, queue, table) on loopback, for tests and ``gitops-sync dev``.

Each service runs as its own process (``azurite-blob``, ``azurite-queue``,
``azurite-table``, shipped in the same npm package): Azurite serves all requests
on one Node.js thread, and with the three services in one process a webhook's
queue put waited behind every table call of the deliveries around it (measured:
README, "Capacity, measured"). Where those commands are missing, one ``azurite``
process serves all three.

Blob and queue are asked for port 0 and report the ports they got, so two stacks
(or test sessions) never race for them; ``azurite-table`` does not report the
port it got, so it is given a free one, and another is tried if that was taken
meanwhile. Data lives in memory, or in ``location`` on disk (then a restart on
the same ``ports`` finds it again: each service keeps its own files there, the
same files the single process keeps).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from ..core.errors import StorageError, UsageError
from ..settings import azurite_connection_string

log = logging.getLogger("gitops_sync")

# "is successfully listening at": one process for all; "successfully listens on" (blob,
# queue) and "successfully started on" (table): a service on its own.
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service (?:is successfully listening at"
    r"|successfully listens on|successfully started on) \S+:(\d+)"
)
SERVICES = ("blob", "queue", "table")
_TABLE_PORT_TRIES = 5
_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_azurite() -> str:
    """The ``azurite`` executable: the project's npm install first, then PATH."""
    for base in (_REPO_ROOT, Path.cwd()):
        candidate = base / "node_modules" / ".bin" / "azurite"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("azurite")
    if found:
        return found
    raise UsageError("Azurite is not installed: run `npm ci` in the repository (or `make install`)")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Azurite:
    """Start with ``start()`` or ``with Azurite() as az:``; ``az.connection_string`` then works."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        location: Path | None = None,
        ports: dict[str, int] | None = None,
        split: bool = True,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.location = location
        self.fixed_ports = dict(ports or {})
        self.split = split
        self.ports: dict[str, int] = {}
        self._procs: list[subprocess.Popen[str]] = []
        self._ready = threading.Event()
        self._output: list[str] = []
        self._readers: dict[int, threading.Thread] = {}

    @property
    def connection_string(self) -> str:
        if not self._ready.is_set():
            raise StorageError("Azurite is not running")
        return azurite_connection_string(
            self.host, self.ports["blob"], self.ports["queue"], self.ports["table"]
        )

    @property
    def pids(self) -> list[int]:
        """The running processes' ids; each leads its own session (its process group)."""
        return [p.pid for p in self._procs]

    def start(self) -> Azurite:
        if self._procs:
            return self
        self.ports = {}
        self._output = []
        whole = find_azurite()
        apart = {svc: f"{whole}-{svc}" for svc in SERVICES}
        deadline = time.monotonic() + self.startup_timeout
        if self.split and all(os.access(exe, os.X_OK) for exe in apart.values()):
            for svc in SERVICES:
                self._start_service(apart[svc], svc, deadline)
        else:
            port = {k: str(self.fixed_ports.get(k, 0)) for k in SERVICES}
            self._spawn(
                [
                    whole,
                    *("--blobHost", self.host, "--queueHost", self.host, "--tableHost", self.host),
                    *("--blobPort", port["blob"], "--queuePort", port["queue"]),
                    *("--tablePort", port["table"]),
                ]
            )
            if not self._wait(lambda: len(self.ports) == 3, deadline, self._procs):
                self._fail()
        self._ready.set()
        log.debug("azurite listening on %s", self.ports)
        return self

    def _common(self) -> list[str]:
        keep = ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        return [
            *keep,
            "--skipApiVersionCheck",  # the newest SDKs speak API versions Azurite lags behind
            "--loose",
            "--disableTelemetry",
            "--silent",
        ]

    def _start_service(self, exe: str, svc: str, deadline: float) -> None:
        fixed = self.fixed_ports.get(svc)
        for _ in range(_TABLE_PORT_TRIES if svc == "table" and not fixed else 1):
            port = fixed or (_free_port(self.host) if svc == "table" else 0)
            proc = self._spawn([exe, f"--{svc}Host", self.host, f"--{svc}Port", str(port)])
            if self._wait(lambda: svc in self.ports, deadline, [proc]):
                return
            if proc.poll() is None or time.monotonic() > deadline:
                break  # still starting at the deadline: no use trying another port
            self._procs.remove(proc)  # exited: the port was taken meanwhile, try another
            self._reap(proc)
        self._fail()

    def _spawn(self, args: list[str]) -> subprocess.Popen[str]:
        # Its own session, so stop() can end it (and any child node spawns) as a group.
        proc = subprocess.Popen(
            [*args, *self._common()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._procs.append(proc)
        reader = threading.Thread(
            target=self._read_output, args=(proc,), name="azurite-output", daemon=True
        )
        reader.start()
        self._readers[proc.pid] = reader
        return proc

    def _wait(
        self, done: Callable[[], bool], deadline: float, procs: list[subprocess.Popen[str]]
    ) -> bool:
        """Whether DONE came true before the deadline and while PROCS ran."""
        while not done():
            if any(p.poll() is not None for p in procs):
                time.sleep(0.05)  # its last lines
                return done()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _fail(self) -> NoReturn:
        tail = " | ".join(self._output[-5:])
        self.stop()
        raise StorageError(f"Azurite did not start: {tail or 'no output'}")

    def _read_output(self, proc: subprocess.Popen[str]) -> None:
        # Drained for the process's whole life, so a full pipe can never block Azurite.
        assert proc.stdout is not None
        for line in proc.stdout:
            if not self._ready.is_set():
                self._output.append(line.strip())
                m = _LISTENING.search(line)
                if m:
                    self.ports[m.group(1).lower()] = int(m.group(2))

    def stop(self) -> None:
        procs, self._procs = self._procs, []
        self._ready.clear()
        for proc in procs:
            try:
                if proc.poll() is None:  # SIGINT: azurite-table saves its data on SIGINT only
                    os.killpg(proc.pid, signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in procs:
            self._reap(proc)

    def _reap(self, proc: subprocess.Popen[str]) -> None:
        """Wait for PROC (SIGKILL after 10 s), then its output reader; close its pipe."""
        try:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        reader = self._readers.pop(proc.pid, None)
        if reader is not None:
            reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
