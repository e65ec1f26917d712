"""Workspace locks as blob leases: one sync at a time per workspace, across machines.

A lease lasts ``duration`` seconds and is renewed while the holder works, so a
crashed worker (kill -9) frees the workspace within one lease period.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from ..core.errors import ConflictError, StorageError
from ..core.redact import redact

log = logging.getLogger("gitops_sync")


class WorkspaceLeases:
    """``with leases.hold(key):`` holds the lock for ``key`` or raises ``ConflictError``."""

    def __init__(self, container: ContainerClient, *, duration: int = 60) -> None:
        if not 15 <= duration <= 60:
            raise ValueError("blob leases last 15 to 60 seconds")
        self.container = container
        self.duration = duration
        self._created = False

    @classmethod
    def from_connection_string(cls, conn: str, container: str, **kw: Any) -> WorkspaceLeases:
        service = BlobServiceClient.from_connection_string(conn)
        return cls(service.get_container_client(container), **kw)

    @classmethod
    def from_account(
        cls, account: str, credential: Any, container: str, **kw: Any
    ) -> WorkspaceLeases:
        service = BlobServiceClient(f"https://{account}.blob.core.windows.net", credential)
        return cls(service.get_container_client(container), **kw)

    def _ensure(self, key: str) -> BlobLeaseClient:
        blob = self.container.get_blob_client(f"{key}.lock")
        try:
            if not self._created:
                with contextlib.suppress(ResourceExistsError):
                    self.container.create_container()
                self._created = True
            with contextlib.suppress(ResourceExistsError, HttpResponseError):
                # An existing (possibly leased) blob is fine: only the lease matters.
                blob.upload_blob(b"", overwrite=False)
        except AzureError as exc:
            raise StorageError(f"blob storage: preparing the lock failed: {_first(exc)}") from exc
        return BlobLeaseClient(blob)

    def try_acquire(self, key: str) -> BlobLeaseClient | None:
        """The lease, or None when someone else holds it."""
        lease = self._ensure(key)
        try:
            lease.acquire(lease_duration=self.duration)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                return None
            raise StorageError(f"blob storage: taking the lock failed: {_first(exc)}") from exc
        except AzureError as exc:
            raise StorageError(f"blob storage: taking the lock failed: {_first(exc)}") from exc
        return lease

    @contextlib.contextmanager
    def hold(self, key: str, *, wait: float = 0.0, poll: float = 0.5) -> Iterator[None]:
        """Hold ``key``'s lease for the block, waiting up to ``wait`` s for it."""
        deadline = time.monotonic() + wait
        lease = self.try_acquire(key)
        while lease is None:
            if time.monotonic() >= deadline:
                raise ConflictError(f"another sync holds workspace {key}")
            time.sleep(poll)
            lease = self.try_acquire(key)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lease, stop, key), name=f"lease-{key}", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(AzureError):
                lease.release()

    def _renew(self, lease: BlobLeaseClient, stop: threading.Event, key: str) -> None:
        # Renew at a third of the duration: two renewals may fail before the lease lapses.
        while not stop.wait(self.duration / 3):
            try:
                lease.renew()
            except AzureError as exc:
                log.warning("could not renew the lock on workspace %s: %s", key, _first(exc))


def _first(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(str(text)).splitlines()[0]
