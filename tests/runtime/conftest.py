"""Fixtures for the function runtime: an in-memory package store and a runtime over a temp cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_sync.runtime import FunctionRuntime

from .packages import PackageStore

SERVER_ENVIRON = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "GITOPS_SYNC_API_KEY": "server-api-key-must-not-leak",
    "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=server-storage-key-must-not-leak",
}
SETTINGS = {"ORDERS_DB_URL": "postgres://orders-secret", "WEBHOOK_SECRET": "server-webhook-secret"}


@pytest.fixture()
def store() -> PackageStore:
    """Packages by (name, version), as the deploy side would load them."""
    return PackageStore()


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bytecode cache for the session, so each test's fork server does not recompile json."""
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture()
def runtime(tmp_path: Path, store: PackageStore, pycache: Path) -> Iterator[FunctionRuntime]:
    """A runtime with a private cache, short idle times, and a server environment with secrets."""
    rt = FunctionRuntime(
        cache_dir=tmp_path / "cache",
        load_package=store,
        lookup_setting=SETTINGS.get,
        idle_seconds=0.5,
        keep_previous_seconds=30.0,
        server_environ=SERVER_ENVIRON,
        pycache_dir=pycache,
    )
    yield rt
    rt.close()
