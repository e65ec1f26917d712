"""Azure Storage Queues (azure-storage-queue): the sync-job queue and its poison queue.

Messages are base64 text, as the Functions queue trigger expects
(``messageEncoding: base64`` in host.json). SDK errors become ``StorageError``;
a queue that vanished is created again by the first call that finds it missing.
With a shared key and no custom transport, ``send`` (the webhook intake's call) goes
through ``storage_hot.HotQueue``, which raises the same SDK exceptions.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import HttpTransport
from azure.storage.queue import (
    ExponentialRetry,
    QueueClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from ..core.errors import StorageError
from ..core.redact import redact
from .http_transport import LeanTransport
from .storage_hot import HotQueue

log = logging.getLogger("gitops_sync")
T = TypeVar("T")
POISON_SUFFIX = "-poison"  # the Functions host's name for a queue's poison queue


class QuickRetry(ExponentialRetry):
    """The storage SDK's retry policy with back-off 0.2, 0.4, 0.8 s, as the lean path's.

    The queue SDK ignores azure-core's ``retry_backoff_factor``: its own
    ``ExponentialRetry`` waits 15 s (+-3) before the first retry and 18 s before the
    second, which would hold a call far past a webhook's deadline."""

    def __init__(self, retry_total: int = 3, backoff_s: float = 0.2) -> None:
        super().__init__(initial_backoff=0, retry_total=retry_total, random_jitter_range=0)
        self.backoff_s = backoff_s

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return float(self.backoff_s * 2 ** (settings["count"] - 1))  # count: 1 on the first retry


def queue_missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "QueueNotFound" or "QueueNotFound" in str(exc)


class _LenientBase64DecodePolicy(TextBase64DecodePolicy):
    """Base64 as the Functions trigger writes it; a plain-text message (not ours)
    is passed through as it is, for the handler to judge, instead of failing the receive."""

    def decode(self, content: str, response: Any) -> str:
        # Not super().decode: on bad input the SDK builds a DecodeError that itself
        # fails (AttributeError on the response), so the receive would crash.
        try:
            return base64.b64decode(content.encode("utf-8"), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return content


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    id: str
    pop_receipt: str
    body: str
    dequeue_count: int


def _fail(exc: AzureError, what: str) -> StorageError:
    message = getattr(exc, "message", None) or str(exc)
    first = redact(str(message)).splitlines()[0] if message else type(exc).__name__
    return StorageError(f"queue storage: {what} failed: {first}")


class JobQueue:
    """One queue; ``poison()`` gives its poison queue."""

    def __init__(
        self,
        client: QueueClient,
        transport: HttpTransport | None = None,
        hot: HotQueue | None = None,
    ) -> None:
        self.client = client
        self.hot = hot  # the lean path of send (see the module docstring)
        self._transport = transport  # the client's, shared with the poison queue's
        self.name = client.queue_name
        self._created = False
        self._lock = threading.Lock()
        self._poison: JobQueue | None = None

    @staticmethod
    def _policies(transport: HttpTransport | None = None) -> dict[str, Any]:
        return {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": _LenientBase64DecodePolicy(),
            "transport": transport or LeanTransport(),
            "retry_policy": QuickRetry(),  # 3 retries of one call (see adapters/tables.py)
        }

    @classmethod
    def from_connection_string(
        cls, conn: str, name: str, transport: HttpTransport | None = None
    ) -> JobQueue:
        """``transport``: the HTTP transport (default: ``LeanTransport``, see http_transport)."""
        options = cls._policies(transport)
        client = QueueClient.from_connection_string(conn, name, **options)
        hot = HotQueue.for_client(client) if transport is None else None
        return cls(client, options["transport"], hot)

    @classmethod
    def from_account(cls, account: str, credential: Any, name: str) -> JobQueue:
        url = f"https://{account}.queue.core.windows.net"
        options = cls._policies()
        return cls(QueueClient(url, name, credential=credential, **options), options["transport"])

    def poison(self) -> JobQueue:
        c = self.client
        options = self._policies(self._transport)  # one connection pool for both queues
        url = c.url.rsplit("/", 1)[0]
        client = QueueClient(url, self.name + POISON_SUFFIX, credential=c.credential, **options)
        return JobQueue(client, options["transport"])

    def ensure(self) -> None:
        if self._created:
            return
        with self._lock:
            if self._created:
                return
            try:
                self.client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise _fail(exc, f"creating queue {self.name}") from exc
            self._created = True

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, again once after creating the queue anew if it had vanished."""
        self.ensure()
        try:
            return fn()
        except ResourceNotFoundError as exc:
            if not queue_missing(exc):
                raise _fail(exc, what) from exc
            with self._lock:
                self._created = False
            log.warning("queue storage: queue %s was missing; creating it again", self.name)
            self.ensure()
        except AzureError as exc:
            raise _fail(exc, what) from exc
        try:
            return fn()
        except AzureError as exc:
            raise _fail(exc, what) from exc

    def check(self) -> None:
        """Raise ``StorageError`` unless the queue exists (a missing one is created)."""
        try:
            self.client.get_queue_properties(retry_total=0, connection_timeout=5, read_timeout=5)
            return
        except ResourceNotFoundError as exc:
            if not queue_missing(exc):
                raise _fail(exc, f"reading {self.name}") from exc
        except AzureError as exc:
            raise _fail(exc, f"reaching queue {self.name}") from exc
        with self._lock:
            self._created = False
        log.warning("queue storage: queue %s was missing; creating it", self.name)
        self.ensure()

    def send(self, body: str, delay: int = 0) -> str:
        """Queue ``body``, visible after ``delay`` seconds; returns the message id."""
        hot = self.hot
        if hot is not None:
            return self._call(f"sending to {self.name}", lambda: hot.send(body, delay))
        return self._call(
            f"sending to {self.name}",
            lambda: str(self.client.send_message(body, visibility_timeout=delay or None).id),
        )

    def receive(self, max_messages: int = 1, visibility_timeout: int = 300) -> list[QueuedMessage]:
        """Up to ``max_messages``, hidden from other receivers for ``visibility_timeout`` s."""

        def get() -> list[QueuedMessage]:
            got = self.client.receive_messages(
                messages_per_page=max_messages,
                visibility_timeout=visibility_timeout,
                max_messages=max_messages,
            )
            return [
                QueuedMessage(m.id, m.pop_receipt or "", str(m.content), int(m.dequeue_count or 1))
                for m in got
            ]

        return self._call(f"receiving from {self.name}", get)

    def delete(self, message: QueuedMessage) -> None:
        """Delete after processing; succeeds when already gone."""
        try:
            self.client.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _fail(exc, f"deleting from {self.name}") from exc

    def release(self, message: QueuedMessage, delay: int = 0) -> None:
        """Make a message visible again after ``delay`` s (a retry)."""
        try:
            self.client.update_message(message.id, message.pop_receipt, visibility_timeout=delay)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _fail(exc, f"releasing a message of {self.name}") from exc

    def renew(self, message: QueuedMessage, visibility_timeout: int) -> QueuedMessage:
        """Extend a received message's invisibility; the new pop receipt proves the lease."""
        try:
            updated = self.client.update_message(
                message.id, message.pop_receipt, visibility_timeout=visibility_timeout
            )
        except AzureError as exc:
            raise _fail(exc, f"renewing a message of {self.name}") from exc
        receipt = updated.pop_receipt or message.pop_receipt
        return QueuedMessage(message.id, receipt, message.body, message.dequeue_count)

    def dead_letter(self, message: QueuedMessage) -> None:
        """Move a message to the poison queue: copy first, then delete, so a crash in
        between duplicates it and never loses it."""
        if self._poison is None:
            self._poison = self.poison()
        self._poison.send(message.body)
        self.delete(message)

    def close(self) -> None:
        self.client.close()
        if self.hot is not None:
            self.hot.close()
        if self._poison is not None:
            self._poison.client.close()
