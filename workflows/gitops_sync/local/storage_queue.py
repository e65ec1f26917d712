"""The poller's ``LeaseQueue`` over Azure Storage Queues (Azurite locally).

Bodies are base64 as the Functions queue trigger expects; SDK errors become
``StorageError`` here, so the poller only ever sees the project's own errors.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from ..core.errors import StorageError
from ..core.redact import redact_url
from .poller import LeasedMessage


def _decode(content: Any) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return text  # not ours (plain text): the handler judges it


def _encode(body: str) -> str:
    return base64.b64encode(body.encode("utf-8")).decode("ascii")


def _storage_error(action: str, exc: AzureError) -> StorageError:
    return StorageError(f"queue {action} failed: {redact_url(str(exc).splitlines()[0])}")


class StorageLeaseQueue:
    """Queue ``name`` and its ``<name>-poison`` queue, from a connection string."""

    def __init__(self, connection_string: str, name: str) -> None:
        self.name = name
        self._client = QueueClient.from_connection_string(connection_string, name)
        self._poison = QueueClient.from_connection_string(connection_string, f"{name}-poison")
        self._poison_ready = False

    def ensure(self) -> None:
        """Create the queue when missing (the webhook side may not have run yet)."""
        try:
            self._client.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise _storage_error("create", exc) from exc

    def send(self, body: str) -> None:
        try:
            self._client.send_message(_encode(body))
        except AzureError as exc:
            raise _storage_error("send", exc) from exc

    def receive(self, max_messages: int, lease_s: int) -> list[LeasedMessage]:
        try:
            got = self._client.receive_messages(
                messages_per_page=max_messages,
                max_messages=max_messages,
                visibility_timeout=lease_s,
            )
            return [
                LeasedMessage(
                    m.id, m.pop_receipt or "", int(m.dequeue_count or 1), _decode(m.content)
                )
                for m in got
            ]
        except ResourceNotFoundError:
            self.ensure()
            return []
        except AzureError as exc:
            raise _storage_error("receive", exc) from exc

    def renew(self, msg: LeasedMessage, lease_s: int) -> LeasedMessage:
        try:
            updated = self._client.update_message(
                msg.id, msg.pop_receipt, visibility_timeout=lease_s
            )
        except AzureError as exc:
            raise _storage_error("lease renewal", exc) from exc
        return LeasedMessage(
            msg.id, updated.pop_receipt or msg.pop_receipt, msg.dequeue_count, msg.body
        )

    def delete(self, msg: LeasedMessage) -> None:
        try:
            self._client.delete_message(msg.id, msg.pop_receipt)
        except ResourceNotFoundError:
            pass  # already gone
        except AzureError as exc:
            raise _storage_error("delete", exc) from exc

    def release(self, msg: LeasedMessage, delay_s: int) -> None:
        try:
            self._client.update_message(msg.id, msg.pop_receipt, visibility_timeout=max(0, delay_s))
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _storage_error("release", exc) from exc

    def dead_letter(self, msg: LeasedMessage) -> None:
        # Copy first, then delete: a crash in between duplicates, never loses.
        try:
            if not self._poison_ready:
                with contextlib.suppress(ResourceExistsError):
                    self._poison.create_queue()
                self._poison_ready = True
            self._poison.send_message(_encode(msg.body))
        except AzureError as exc:
            raise _storage_error("poison move", exc) from exc
        self.delete(msg)

    def close(self) -> None:
        self._client.close()
        self._poison.close()
