"""Test helpers for the workspace routes: a minimal context, and a real uvicorn server.

The server runs the routes of ``gitops_sync.http.workspace`` on 127.0.0.1 on a free
port, in a thread of the test process, and is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from gitops_sync.adapters.dir_store import DirectoryStore
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.http import workspace
from gitops_sync.http.app import create_app
from gitops_sync.sync import sync_workspace

API_KEY = "test-key-0123456789"


@dataclass
class Settings:
    api_key: str | None = API_KEY
    repository: str | None = "octo/demo-repo"

    def secrets(self) -> list[str]:
        return [self.api_key] if self.api_key else []


@dataclass
class Connection:
    id: str
    repository: str


@dataclass
class Connections:
    """Other connected repositories: id -> (repository, store)."""

    extra: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def get(self, conn_id: str) -> Connection | None:
        found = self.extra.get(conn_id)
        return Connection(conn_id, found[0]) if found else None


@dataclass
class Ctx:
    """The part of ``AppContext`` the workspace routes use."""

    store: Any
    settings: Settings = field(default_factory=Settings)
    enforce_keys: bool = True
    connections: Connections = field(default_factory=Connections)

    def workspace_store(self, connection_id: str | None = None) -> Any:
        if connection_id is None:
            return self.store
        return self.connections.extra[connection_id][1]


def make_app(ctx: Ctx) -> Starlette:
    """The real app (key check and error answers included) serving the workspace routes."""
    return create_app(ctx, workspace.ROUTES)  # type: ignore[arg-type]


@contextmanager
def live_server(ctx: Ctx) -> Iterator[str]:
    """Serve the workspace routes for ``ctx``; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(ctx), log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def sync(repo: Path, ref: str, workspace_dir: Path, cache: Path) -> str:
    """Sync ``ref`` of ``repo`` into a directory workspace with the real engine."""
    result = sync_workspace(
        GitSource(str(repo), cache_dir=cache), ref, DirectoryStore(workspace_dir)
    )
    return result.commit


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"x-functions-key": key}
