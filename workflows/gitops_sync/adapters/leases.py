"""Workspace locks as blob leases: one sync at a time per workspace, across machines.

A lease lasts ``duration`` seconds and is renewed while the holder works, so a
crashed worker (kill -9) frees the workspace within one lease period. A holder
whose lease could not be renewed in time is told so by ``HeldLease.check()``,
which the worker's store guard (``gitops_sync.lease_guard``) calls before every write.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import stamina
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from ..core.errors import ConflictError, StorageError
from ..core.redact import redact

log = logging.getLogger("gitops_sync")


class LeaseLost(ConflictError):
    """The workspace's lease lapsed or was taken: the holder must not write any more."""


class HeldLease:
    """One held lease, as the ``hold`` block sees it.

    ``check()`` raises ``LeaseLost`` once a renewal was refused, or once the last
    confirmed renewal is so old that the lease may lapse within ``margin`` seconds.
    """

    def __init__(self, key: str, duration: float, margin: float, taken_at: float) -> None:
        self.key = key
        self.duration = duration
        self.margin = margin
        self._valid_until = taken_at + duration
        self._why: str | None = None

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` (monotonic) succeeded: the lease runs from then."""
        self._valid_until = sent_at + self.duration

    def lose(self, why: str) -> None:
        if self._why is None:
            self._why = why
            log.warning("lost the lock on workspace %s: %s", self.key, why)

    def seconds_left(self) -> float:
        """Seconds the holder may still write for (0 once lost)."""
        if self._why is not None:
            return 0.0
        return max(0.0, self._valid_until - self.margin - time.monotonic())

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is surely still ours for a while."""
        if self._why is None and self.seconds_left() <= 0:
            self.lose("it was not renewed in time")
        if self._why is not None:
            raise LeaseLost(f"lost the lock on workspace {self.key} ({self._why}); stopped")


class WorkspaceLeases:
    """``with leases.hold(key) as held:`` holds the lock for ``key`` or raises ``ConflictError``."""

    def __init__(
        self, container: ContainerClient, *, duration: int = 60, renew_every: float | None = None
    ) -> None:
        if not 15 <= duration <= 60:
            raise ValueError("blob leases last 15 to 60 seconds")
        self.container = container
        self.duration = duration
        # Renew at a third of the duration: failed renewals are retried until the
        # lease is about to lapse, and only then does the holder stop writing.
        self.renew_every = renew_every or duration / 3
        self.margin = duration / 6
        # One renewal attempt is short and never retried by the SDK (whose backoff
        # starts at 15 s): stamina retries it, bounded by what is left of the lease.
        self._call: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": self.margin,
            "read_timeout": self.margin,
        }
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
    def hold(self, key: str, *, wait: float = 0.0, poll: float = 0.5) -> Iterator[HeldLease]:
        """Hold ``key``'s lease for the block, waiting up to ``wait`` s for it."""
        deadline = time.monotonic() + wait
        taken_at = time.monotonic()
        lease = self.try_acquire(key)
        while lease is None:
            if time.monotonic() >= deadline:
                raise ConflictError(f"another sync holds workspace {key}")
            time.sleep(poll)
            taken_at = time.monotonic()
            lease = self.try_acquire(key)
        held = HeldLease(key, self.duration, self.margin, taken_at)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(lease, held, stop), name=f"lease-{key}", daemon=True
        )
        renewer.start()
        try:
            yield held
        finally:
            stop.set()
            renewer.join()
            with contextlib.suppress(AzureError):
                lease.release(**self._call)  # else it lapses on its own

    def _renew(self, lease: BlobLeaseClient, held: HeldLease, stop: threading.Event) -> None:
        while not stop.wait(self.renew_every):
            try:
                # A storage hiccup is retried (with backoff) while the lease still runs;
                # a refusal (409: broken, or taken by another holder) is final.
                left = held.seconds_left()
                if left <= 0:
                    held.lose("it was not renewed in time")
                    return
                for attempt in stamina.retry_context(
                    on=_transient, attempts=None, timeout=left, wait_max=1.0
                ):
                    with attempt:
                        if stop.is_set():
                            return
                        sent = time.monotonic()
                        lease.renew(**self._call)
                held.renewed(sent)
            except AzureError as exc:
                held.lose(f"renewing it failed: {_first(exc)}")
                return


def _transient(exc: Exception) -> bool:
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return exc.status_code >= 500 or exc.status_code in (408, 429)
    return isinstance(exc, AzureError)


def _first(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(str(text)).splitlines()[0]
