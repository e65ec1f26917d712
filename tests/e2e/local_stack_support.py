"""Real ``gitops-sync`` processes for local-stack tests: start, wait for a line, signal, kill."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from gitops_sync.local.server import LocalServer

#: what ``gitops-sync dev`` prints once it is up: its URL, and its emulator's ports
DEV_LISTENING = r"listening on (http://127\.0\.0\.1:(\d+))"
DEV_AZURITE = r"Azurite \(blob (\d+), queue (\d+), table (\d+)"
# The banner's last line: once it is out, the whole banner is.
DEV_BANNER_END = r"Ctrl-C stops everything"

GITOPS_SYNC = str(Path(sys.executable).parent / "gitops-sync")
_SCRUBBED = (
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__accountName",
    "GITHUB_WEBHOOK_SECRET",
    "SYNC_REPOSITORY",
    "SYNC_REPO_URL",
    "SYNC_BRANCH",
    "SYNC_QUEUE",
    "GIT_TOKEN",
    "WORKSPACE_ROOT",
    "WORKSPACE_SHARE",
    "GITOPS_SYNC_API_KEY",
    "GITOPS_SYNC_URL",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without any gitops-sync setting, caches under ``tmp``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        GITOPS_SYNC_CACHE_DIR=str(tmp / "cache" / "repos"),
        SYNC_RECONCILE_INTERVAL_SECONDS="3600",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class StackProcess:
    """``gitops-sync ARGS`` in its own process group, its output collected line by line."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [GITOPS_SYNC, *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join([*self.stdout, "--- stderr ---", *self.stderr])

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails with the output if none comes."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.stdout[seen:]:
                m = regex.search(line)
                if m:
                    return m
            seen = len(self.stdout)
            if self.proc.poll() is not None and seen == len(self.stdout):
                time.sleep(0.2)  # let the readers catch up once more
                if not any(regex.search(x) for x in self.stdout):
                    break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}:\n{self.output()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._close_pipes()
        return code

    def _close_pipes(self) -> None:
        for t in self._readers:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def kill9(self) -> None:
        """SIGKILL the whole process group (the worker and any git it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_pipes()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill9()
        else:
            self._close_pipes()


def wait_job(
    base_url: str, key: str, job_id: str, statuses: set[str], timeout: float = 60.0
) -> dict:
    """Poll ``GET /api/jobs/{id}`` with the key until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    doc: dict = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{base_url}/api/jobs/{job_id}", headers={"x-functions-key": key})
        if r.status_code == 200:
            doc = r.json()
            if doc["status"] in statuses:
                return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {doc}")


@contextlib.contextmanager
def serving(app: object, timeout: float = 30.0) -> Iterator[LocalServer]:
    """``app`` served by ``LocalServer`` on a free loopback port, in a thread; stopped after."""
    import asyncio

    server = LocalServer(app, port=0)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert server.started, "the test server did not start"
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=timeout)
        assert not thread.is_alive()


def server_env(storage: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A ``serve`` process's environment on ``storage``, with a queue of its own."""
    from tests.pipeline_support import REPOSITORY, SECRET

    return base_env(
        tmp_path,
        AzureWebJobsStorage=storage,
        SYNC_REPOSITORY=REPOSITORY,
        GITHUB_WEBHOOK_SECRET=SECRET,
        WORKSPACE_ROOT=str(tmp_path / "ws"),
        SYNC_QUEUE=f"q{uuid.uuid4().hex[:16]}",
        **extra,
    )
