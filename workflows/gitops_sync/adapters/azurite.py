"""A real Azurite process (blob, queue, table) on loopback, for tests and ``gitops-sync dev``.

Azurite is asked for port 0 on each service and reports the ports it got, so
two stacks (or test sessions) never race for a port. Data lives in memory, or in
``location`` on disk (then a restart on the same ``ports`` finds it again).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

from ..core.errors import StorageError, UsageError
from ..settings import azurite_connection_string

log = logging.getLogger("gitops_sync")

_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)"
)
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


class Azurite:
    """Start with ``start()`` or ``with Azurite() as az:``; ``az.connection_string`` then works."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 30.0,
        location: Path | None = None,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.location = location
        self.fixed_ports = dict(ports or {})
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        if not self._ready.is_set():
            raise StorageError("Azurite is not running")
        return azurite_connection_string(
            self.host, self.ports["blob"], self.ports["queue"], self.ports["table"]
        )

    def start(self) -> Azurite:
        if self._proc is not None:
            return self
        port = {k: str(self.fixed_ports.get(k, 0)) for k in ("blob", "queue", "table")}
        keep = ("--location", str(self.location)) if self.location else ("--inMemoryPersistence",)
        self.ports = {}
        args = [
            find_azurite(),
            *("--blobHost", self.host, "--queueHost", self.host, "--tableHost", self.host),
            *("--blobPort", port["blob"], "--queuePort", port["queue"]),
            *("--tablePort", port["table"]),
            *keep,
            "--skipApiVersionCheck",  # the newest SDKs speak API versions Azurite lags behind
            "--loose",
            "--disableTelemetry",
            "--silent",
        ]
        # Its own session, so stop() can end it (and any child node spawns) as a group.
        self._proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read_output, name="azurite-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(self._output[-5:])
                self.stop()
                raise StorageError(f"Azurite did not start: {tail or 'no output'}")
        log.debug("azurite listening on %s", self.ports)
        return self

    def _read_output(self) -> None:
        # Drained for the process's whole life, so a full pipe can never block Azurite.
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            if not self._ready.is_set():
                self._output.append(line.strip())
                m = _LISTENING.search(line)
                if m:
                    self.ports[m.group(1).lower()] = int(m.group(2))
                    if len(self.ports) == 3:
                        self._ready.set()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._ready.clear()
        if proc is None:
            return
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
                    proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        finally:
            if self._reader is not None:
                self._reader.join(timeout=5)
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
